//! `cargo vm`: the epcmig test harness (host side).
//!
//! It installs what is missing, builds the patched kernel and CRIU
//! (cached), runs the host tests and boots the kernel under QEMU with
//! virtme-ng, where `epcmig-guest` (tests/guest) runs the suites. This
//! crate deliberately depends on nothing that needs libclang, so it builds
//! on a fresh machine before it has installed anything.

mod host;
mod paths;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo vm",
    about = "Build, boot and test epcmig's patched kernel and CRIU under QEMU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Host tests, then the in-guest suite (tests whose names contain FILTER).
    Test {
        filter: Option<String>,
        /// Skip `cargo test` on the host and go straight to the guest.
        #[arg(long)]
        guest_only: bool,
        /// Also build the patched kernel with KASAN and fault injection
        /// and run the fuzz loops and selftests on it, slab allocations
        /// failing at random in the fuzzed calls.
        #[arg(long)]
        hardened: bool,
    },
    /// The main job: migrate under traffic and print the figures.
    Demo,
    /// Benchmarks (figures with a baseline measured in the same run).
    Bench {
        name: Option<String>,
        /// Also write the figures as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Where the report goes: bench.json, bench.md (tables) and one
        /// SVG plot per group of scaling curves [default: target/bench].
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Measure on the test kernel (lockdep and object debugging on)
        /// instead of the `-bench` build of the same patched kernel.
        #[arg(long)]
        debug_kernel: bool,
    },
    /// Run one command in the guest and return its output and exit status.
    Exec {
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// An interactive shell in the guest.
    Shell,
    /// Only install prerequisites and build the kernel and CRIU.
    Build,
    /// The gates besides the tests: rustfmt, clippy (warnings are errors,
    /// SAFETY comments required) and checkpatch --strict over the kernel
    /// patches.
    Lint,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Test {
            filter,
            guest_only,
            hardened,
        } => host::test(filter.as_deref(), guest_only, hardened),
        Cmd::Demo => host::demo(),
        Cmd::Bench {
            name,
            json,
            out,
            debug_kernel,
        } => host::bench(
            name.as_deref(),
            json.as_deref(),
            out.as_deref(),
            debug_kernel,
        ),
        Cmd::Exec { cmd } => host::exec(&cmd),
        Cmd::Shell => host::shell(),
        Cmd::Build => host::build_all().map(|_| 0),
        Cmd::Lint => host::lint::run(),
    };
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
