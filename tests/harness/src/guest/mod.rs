//! In-guest side: the suites, run by `vm guest test|demo|bench` inside
//! QEMU on the patched kernel.

pub mod apps;
mod baseline;
pub mod bench;
mod criu;
mod net;
mod transfer;

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum GuestCmd {
    /// Run the guest tests whose names contain FILTER (all without one).
    Test { filter: Option<String> },
    /// The migration demo with its figures.
    Demo,
    /// Benchmarks whose names contain NAME.
    Bench { name: Option<String> },
}

type TestFn = fn() -> Result<()>;

/// Every in-guest test. Names are what `cargo vm test FILTER` matches.
const TESTS: &[(&str, TestFn)] = &[
    ("kernel_is_patched", kernel_is_patched),
    ("baseline_criu_check", baseline::criu_check),
    ("baseline_tcp_migrate", baseline::tcp_migrate),
];

/// The running kernel's release, e.g. `6.12.117-epcmig`.
pub fn uname_r() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn kernel_is_patched() -> Result<()> {
    let r = uname_r();
    println!("  uname -r: {r}");
    if !r.ends_with("-epcmig") {
        bail!("guest kernel {r} is not ours (LOCALVERSION -epcmig expected)");
    }
    Ok(())
}

pub fn main(cmd: GuestCmd) -> Result<u8> {
    match cmd {
        GuestCmd::Test { filter } => run_tests(filter.as_deref()),
        GuestCmd::Demo => baseline::demo().map(|_| 0),
        GuestCmd::Bench { name } => bench::run(name.as_deref()),
    }
}

fn run_tests(filter: Option<&str>) -> Result<u8> {
    println!("guest: kernel {}", uname_r());
    let chosen: Vec<&(&str, TestFn)> = TESTS
        .iter()
        .filter(|(n, _)| filter.map_or(true, |f| n.contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = TESTS.iter().map(|(n, _)| *n).collect();
        bail!(
            "no guest test matches {:?}; tests: {}",
            filter.unwrap_or(""),
            names.join(", ")
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in chosen {
        println!("test {name} ...");
        let t = Instant::now();
        let res = std::panic::catch_unwind(f);
        let secs = t.elapsed().as_secs_f64();
        match res {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok ({secs:.2}s)");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("test {name} ... FAILED ({secs:.2}s)\n  error: {e:#}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED ({secs:.2}s): panicked");
            }
        }
    }
    println!("guest: {passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}
