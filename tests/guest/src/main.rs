//! `epcmig-guest`: runs inside QEMU on the patched kernel, started by the
//! host harness (`cargo vm`). It runs the suites (`test`, `demo`, `bench`)
//! and the helper programs the suites start and migrate (`app`).

mod apps;
mod bench;
mod criu;
mod failslab;
mod hang;
mod net;
mod podman;
mod runc;
mod sctp_traffic;
mod suites;
mod tcp_repair;
mod timeline;
mod transfer;

use suites::{baseline, sctp_repair};

use std::time::Instant;

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "epcmig-guest",
    about = "epcmig's in-guest suites (run by `cargo vm`)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: GuestCmd,
}

#[derive(Subcommand)]
enum GuestCmd {
    /// Run the guest tests whose names contain FILTER (all without one).
    Test {
        filter: Option<String>,
        /// The suite for a kernel without our patches.
        #[arg(long)]
        stock: bool,
    },
    /// List the test names (used by the host harness).
    List {
        #[arg(long)]
        stock: bool,
    },
    /// The migration demo with its figures.
    Demo,
    /// Benchmarks whose names contain NAME.
    Bench { name: Option<String> },
    /// Helper programs the suites start and migrate.
    App {
        #[command(subcommand)]
        app: apps::App,
    },
}

type TestFn = fn() -> Result<()>;

/// Every in-guest test. Names are what `cargo vm test FILTER` matches.
const TESTS: &[(&str, TestFn)] = &[
    ("kernel_is_patched", kernel_is_patched),
    ("baseline_criu_check", baseline::criu_check),
    ("baseline_tcp_migrate", baseline::tcp_migrate),
    (
        "criu_patch_offers_sctp_to_plugins",
        baseline::criu_patch_offers_sctp_to_plugins,
    ),
    (
        "sctp_repair_crate_freeze_thaw",
        sctp_repair::crate_freeze_thaw,
    ),
    ("sctp_repair_crate_errors", sctp_repair::crate_errors),
    (
        "tcp_repair_baseline_moves_queues",
        sctp_repair::tcp_baseline_moves_queues,
    ),
    ("sctp_repair_crate_move", sctp_repair::crate_move),
    ("sctp_repair_crate_move_v6", sctp_repair::crate_move_v6),
    ("plugin_sctp_mme_migrate", suites::plugin::sctp_mme_migrate),
    (
        "runtime_plugin_beside_bookworm_criu",
        suites::runtime::plugin_beside_bookworm_criu,
    ),
    ("runtime_runc_moves_mme", suites::runtime::runc_moves_mme),
    ("runtime_runc_moves_epc", suites::runtime::runc_moves_epc),
    (
        "runtime_podman_moves_mme",
        suites::runtime::podman_moves_mme,
    ),
    (
        "runtime_podman_restores_left_export",
        suites::runtime::podman_restores_left_export,
    ),
    (
        "runtime_podman_moves_epc",
        suites::runtime::podman_moves_epc,
    ),
    (
        "runtime_gtp_in_host_netns_refused",
        suites::runtime::gtp_in_host_netns_refused,
    ),
    ("shapes_forking_server", suites::shapes::forking_server),
    (
        "shapes_preforked_workers",
        suites::shapes::preforked_workers,
    ),
    (
        "shapes_passed_over_scm_rights",
        suites::shapes::passed_over_scm_rights,
    ),
    ("shapes_bindx_listener", suites::shapes::bindx_listener),
    (
        "shapes_v6_listener_v4_peers",
        suites::shapes::v6_listener_v4_peers,
    ),
    ("shapes_socat_fork", suites::shapes::socat_fork),
    ("shapes_sctp_darn", suites::shapes::sctp_darn),
    ("shapes_peeled_off", suites::shapes::peeled_off),
    (
        "shapes_handshake_refused",
        suites::shapes::handshake_refused,
    ),
    ("shapes_accept_queue", suites::shapes::accept_queue),
    ("shapes_one_to_many", suites::shapes::one_to_many),
    ("shapes_one_to_many_v6", suites::shapes::one_to_many_v6),
    (
        "shapes_one_to_many_bindx",
        suites::shapes::one_to_many_bindx,
    ),
    (
        "shapes_one_to_many_options",
        suites::shapes::one_to_many_options,
    ),
    (
        "shapes_one_to_many_id_taken",
        suites::shapes::one_to_many_id_taken,
    ),
    ("plugin_gtp_spgw_migrate", suites::plugin::gtp_spgw_migrate),
    (
        "plugin_gtp_kernel_sockets_migrate",
        suites::plugin::gtp_kernel_sockets_migrate,
    ),
    ("plugin_epc_migrate", suites::plugin::epc_migrate),
    ("precopy_epc_migrate", suites::plugin::precopy_epc_migrate),
    (
        "precopy_plugin_untouched_by_predump",
        suites::plugin::plugin_untouched_by_predump,
    ),
    (
        "plugin_sctp_host_netns_migrate",
        suites::plugin::sctp_host_netns_migrate,
    ),
    ("fault_every_step", suites::plugin::fault_every_step),
    ("fault_criu_killed", suites::plugin::fault_criu_killed),
    ("soak_epc_migrations", suites::plugin::soak),
    ("badinput_images", suites::plugin::badinput_images),
    (
        "kfuzz_sctp_repair_sockopts",
        suites::kfuzz::kfuzz_sctp_repair_sockopts,
    ),
    ("kfuzz_gtp_netlink", suites::kfuzz::kfuzz_gtp_netlink),
    (
        "plugin_iperf3_sctp_migrate",
        suites::plugin::iperf3_sctp_migrate,
    ),
    (
        "plugin_sctp_leave_running_and_default_dir",
        suites::plugin::sctp_leave_running_and_default_dir,
    ),
    (
        "gtp_migrate_kernel_sockets",
        suites::gtp::gtp_migrate_kernel_sockets,
    ),
    (
        "gtp_sockets_named_by_kernel",
        suites::gtp::gtp_sockets_named_by_kernel,
    ),
    (
        "gtp_migrate_process_sockets",
        suites::gtp::gtp_migrate_process_sockets,
    ),
    ("gtp_bad_input", suites::gtp::gtp_bad_input),
    ("gtp_bulk_install", suites::gtp::gtp_bulk_install),
    (
        "sctp_repair_crate_move_streams",
        sctp_repair::crate_move_streams,
    ),
    (
        "sctp_repair_crate_move_listener",
        sctp_repair::crate_move_listener,
    ),
    (
        "sctp_repair_crate_move_under_traffic",
        sctp_repair::crate_move_under_traffic,
    ),
    (
        "sctp_repair_crate_move_multihomed",
        sctp_repair::crate_move_multihomed,
    ),
    ("sctp_repair_crate_move_auth", sctp_repair::crate_move_auth),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        GuestCmd::Test { filter, stock } => run_tests(filter.as_deref(), stock),
        GuestCmd::List { stock } => {
            let tests = if stock { stock_tests() } else { all_tests() };
            for (n, _) in tests {
                println!("{n}");
            }
            Ok(0)
        }
        GuestCmd::Demo => baseline::demo().map(|_| 0),
        GuestCmd::Bench { name } => bench::run(name.as_deref()),
        GuestCmd::App { app } => apps::run(app).map(|_| 0),
    };
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The workspace (the guest sees the host's, over 9p).
pub fn workspace_root() -> std::path::PathBuf {
    std::env::var_os("EPCMIG_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `target/vm`, laid out by the host harness (selftests, criu, plugin).
pub fn vm_dir() -> std::path::PathBuf {
    workspace_root().join("target").join("vm")
}

type Test = (
    String,
    Box<dyn Fn() -> Result<()> + std::panic::RefUnwindSafe>,
);

/// Tests run only with `EPCMIG_OPT_IN=1`: known to fail in some runs,
/// kept to show the failure to whoever fixes it (see README, "SCTP socket
/// shapes").
const OPT_IN_TESTS: &[(&str, TestFn)] = &[(
    "shapes_one_to_many_crate_moves",
    suites::shapes::one_to_many_crate_moves,
)];

/// The static tests plus one `kselftest_NAME` per selftest wrapper the
/// kernel series adds (built by the host into target/vm/selftests), and
/// the opt-in ones if asked for.
fn all_tests() -> Vec<Test> {
    let opt_in: &[(&str, TestFn)] = if std::env::var_os("EPCMIG_OPT_IN").is_some() {
        OPT_IN_TESTS
    } else {
        &[]
    };
    let mut v: Vec<Test> = TESTS
        .iter()
        .chain(opt_in)
        .map(|(n, f)| {
            (
                n.to_string(),
                Box::new(*f) as Box<dyn Fn() -> Result<()> + std::panic::RefUnwindSafe>,
            )
        })
        .collect();
    // The host lists the selftest wrappers the kernel series adds.
    let dir = vm_dir().join("selftests");
    let wrappers: Vec<std::path::PathBuf> = std::fs::read_to_string(dir.join("TESTS"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| dir.join(l))
        .collect();
    for w in wrappers {
        let stem = w
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        v.push((format!("kselftest_{stem}"), Box::new(move || kselftest(&w))));
    }
    v
}

/// Runs a kernel selftest wrapper, streaming its output, with a time
/// limit; only exit 0 passes (kselftest's skip, 4, is not a pass).
fn kselftest(wrapper: &std::path::Path) -> Result<()> {
    use std::io::BufRead;
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);
    let dir = wrapper.parent().unwrap_or(std::path::Path::new("/"));
    // Run it by its #! line: the kernel's wrappers are bash scripts.
    let mut cmd = std::process::Command::new(wrapper);
    cmd.current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    // Own process group, so a hung test can be killed with its children.
    // SAFETY: setpgid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", wrapper.display()))?;
    let pid = child.id();
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(out) = out {
            for l in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                println!("  | {l}");
                lines.push(l);
            }
        }
        lines
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > LIMIT {
            for l in hang::report(Some(pid)) {
                println!("{l}");
            }
            // SAFETY: signalling the process group we created.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait();
            let _ = reader.join();
            bail!(
                "{} still running after {}s: killed",
                wrapper.display(),
                LIMIT.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let lines = reader.join().unwrap_or_default();
    match status.code() {
        Some(0) => Ok(()),
        Some(4) => bail!(
            "{} skipped (kselftest exit 4): a skip is not a pass",
            wrapper.display()
        ),
        _ => {
            // Repeated in the error, which the host prints again at the end
            // of the run: a long log is often seen only by its tail.
            let mut why = tap_failures(&lines);
            why.extend(memory_state());
            bail!(
                "{} failed ({status}):\n    {}",
                wrapper.display(),
                why.join("\n    ")
            )
        }
    }
}

/// The protocols' memory in use and whether it is under pressure, and the
/// kernel log's tail: what a selftest that fails only after the rest of
/// the suite ran may depend on (sockets an earlier test left behind).
fn memory_state() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(p) = std::fs::read_to_string("/proc/net/protocols") {
        out.extend(
            p.lines()
                .filter(|l| {
                    ["protocol", "SCTP", "TCP ", "UDP "]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(|l| l.split_whitespace().take(7).collect::<Vec<_>>().join(" ")),
        );
    }
    if let Ok(p) = std::fs::read_to_string("/proc/net/sockstat") {
        out.extend(p.lines().map(String::from));
    }
    if let Ok(o) = std::process::Command::new("dmesg").output() {
        let log = String::from_utf8_lossy(&o.stdout);
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        out.extend(tail.into_iter().rev().map(|l| format!("dmesg: {l}")));
    }
    out
}

/// The `not ok` lines of a TAP stream, each after the diagnostics (`#`
/// lines) printed since the result before it.
fn tap_failures(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut diag: Vec<&str> = Vec::new();
    for l in lines.iter().map(|l| l.trim_start()) {
        if l.starts_with('#') {
            diag.push(l);
        } else if l.starts_with("not ok") {
            out.extend(diag.drain(..).map(String::from));
            out.push(l.to_string());
        } else if l.starts_with("ok") {
            diag.clear();
        }
    }
    out
}

/// Tests for a kernel built without our patches (`cargo vm test` boots
/// one for them): what users of an unpatched kernel get.
fn stock_tests() -> Vec<Test> {
    STOCK_TESTS
        .iter()
        .map(|(n, f)| {
            (
                n.to_string(),
                Box::new(*f) as Box<dyn Fn() -> Result<()> + std::panic::RefUnwindSafe>,
            )
        })
        .collect()
}

const STOCK_TESTS: &[(&str, TestFn)] = &[
    ("stock_kernel_is_unpatched", stock_kernel_is_unpatched),
    (
        "stock_sctp_repair_unsupported",
        sctp_repair::stock_unsupported,
    ),
    (
        "stock_gtp_sockets_guessed",
        suites::gtp::stock_gtp_sockets_guessed,
    ),
];

fn stock_kernel_is_unpatched() -> Result<()> {
    let r = uname_r();
    println!("  uname -r: {r}");
    if !r.ends_with("-epcmig-stock") {
        bail!("guest kernel {r} is not our unpatched build (-epcmig-stock expected)");
    }
    Ok(())
}

/// A number the host passed in (`EPCMIG_*`, see README); `None` if unset
/// or not a number, and the caller's default applies.
pub fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The longest a guest test may take: a hung test fails the run (with the
/// summary line the host expects) instead of hanging it. A long soak
/// (`EPCMIG_SOAK=N`) gets a minute more per migration, a long bad-input
/// run (`EPCMIG_BADINPUT_ROUNDS=N`) three per round, a long run of crate
/// moves (`EPCMIG_SHAPES_MOVES=N`) ten seconds per move.
fn test_limit() -> std::time::Duration {
    let knob = |name: &str| env_num::<u64>(name).unwrap_or(0);
    let extra = knob("EPCMIG_SOAK")
        .saturating_mul(60)
        .saturating_add(knob("EPCMIG_BADINPUT_ROUNDS").saturating_mul(180))
        .saturating_add(knob("EPCMIG_SHAPES_MOVES").saturating_mul(10));
    std::time::Duration::from_secs((20 * 60u64).saturating_add(extra))
}

/// Runs `f`, catching panics; if it outlives [`test_limit()`], reports it as
/// failed and ends the guest run (a thread cannot be stopped).
fn with_watchdog(
    name: &str,
    passed: usize,
    failed: usize,
    f: &(dyn Fn() -> Result<()> + std::panic::RefUnwindSafe),
) -> std::thread::Result<Result<()>> {
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel::<()>();
    let owned = name.to_string();
    let limit = test_limit();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            println!(
                "test {owned} ... FAILED ({}s)\n  error: still running after {} s: hung; \
                 what this run's processes were doing:",
                limit.as_secs(),
                limit.as_secs()
            );
            for l in hang::report(Some(std::process::id())) {
                println!("{l}");
            }
            println!("guest: {passed} passed, {} failed", failed + 1);
            std::process::exit(1);
        }
    });
    let res = std::panic::catch_unwind(f);
    let _ = tx.send(());
    res
}

/// FILTER is a substring of the test name, or several separated by commas.
pub fn matches_filter(name: &str, filter: &str) -> bool {
    filter.split(',').any(|f| name.contains(f))
}

fn run_tests(filter: Option<&str>, stock: bool) -> Result<u8> {
    println!("guest: kernel {}", uname_r());
    let all = if stock { stock_tests() } else { all_tests() };
    let chosen: Vec<&Test> = all
        .iter()
        .filter(|(n, _)| filter.map_or(true, |f| matches_filter(n, f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
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
        let res = with_watchdog(name, passed, failed, f.as_ref());
        let secs = t.elapsed().as_secs_f64();
        match res {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok ({secs:.2}s)");
            }
            Ok(Err(e)) => {
                failed += 1;
                // Every line indented: the host repeats a failure's
                // indented lines at the end of the run.
                let e = format!("{e:#}").replace('\n', "\n    ");
                println!("test {name} ... FAILED ({secs:.2}s)\n  error: {e}");
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

#[cfg(test)]
mod tests {
    use super::tap_failures;

    #[test]
    fn tap_failures_keep_the_diagnostics_of_their_test() {
        let tap: Vec<String> = [
            "TAP version 13",
            "# noise before a passing test",
            "ok 1 a",
            "# peer did not retransmit: was it acked?",
            "not ok 2 b",
            "ok 3 c",
            "not ok 4 d",
            "# Totals: pass:2 fail:2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            tap_failures(&tap),
            [
                "# peer did not retransmit: was it acked?",
                "not ok 2 b",
                "not ok 4 d"
            ]
        );
        assert!(tap_failures(&tap[..4]).is_empty());
    }
}
