//! Host side of `cargo vm`.

mod cmd;
mod criu;
mod kernel;
pub mod lint;
mod report;
mod series;
mod setup;
mod sources;
mod vm;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::paths;

/// Short content hash used as a cache key.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the guest needs, built and in place.
pub struct Built {
    pub kernel_release: String,
    vm: vm::Vm,
    /// The in-guest binary (tests/guest) of the profile built.
    guest: String,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Installs prerequisites, builds the kernel, CRIU and the workspace, and
/// lays out `target/vm` (our criu on PATH, the plugin dir).
pub fn build_all() -> Result<Built> {
    build_with(kernel::Variant::Patched, Profile::Debug)
}

/// How the workspace is compiled for the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// The tests: debug assertions and overflow checks on.
    Debug,
    /// Figures (`bench`, `demo`): what users run. Timing unoptimised code
    /// would weigh our user-space code, not the kernel work, and would
    /// tilt the comparison against whichever side has more of it.
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Like [`build_all`], booting kernel `variant` with the workspace built
/// as `profile`.
fn build_with(variant: kernel::Variant, profile: Profile) -> Result<Built> {
    setup::ensure()?;
    let k = kernel::ensure(variant)?;
    let criu = criu::ensure()?;
    let mut args = vec!["build", "--quiet", "--workspace"];
    match profile {
        // The guest's failure-path suites make the plugin's steps fail.
        Profile::Debug => {
            args.extend(["--all-targets", "--features", "criu-plugin/fault-injection"])
        }
        Profile::Release => args.push("--release"),
    }
    eprintln!(
        "cargo: building the workspace (plugin and guest binaries, {})",
        profile.dir()
    );
    let st = cargo()
        .current_dir(paths::root())
        .args(&args)
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build --workspace failed");
    }
    let bin = paths::vm_bin();
    let plugins = paths::vm_plugin_dir();
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(&plugins)?;
    relink(&criu, &bin.join("criu"))?;
    relink(&criu::bookworm()?, &paths::vm_dir().join("bookworm-criu"))?;
    let out = paths::target().join(profile.dir());
    relink(
        &out.join("libepcmig_criu.so"),
        &plugins.join("libepcmig_criu.so"),
    )?;
    relink(
        &out.join("epcmig-criu-action"),
        &plugins.join("epcmig-criu-action"),
    )?;
    relink(&k.selftests, &paths::vm_dir().join("selftests"))?;
    // EPCMIG_KERNEL boots another kernel image instead (e.g. an unpatched
    // one, to see how the tools behave without repair mode).
    if let Some(other) = std::env::var_os("EPCMIG_KERNEL") {
        let other = std::path::PathBuf::from(other);
        eprintln!(
            "vm: EPCMIG_KERNEL: booting {} instead of our kernel",
            other.display()
        );
        let vm = vm::Vm::new(&other);
        return Ok(Built {
            kernel_release: other.display().to_string(),
            vm,
            guest: guest_exe(profile),
        });
    }
    let vm = vm::Vm::new(&k.bzimage);
    Ok(Built {
        kernel_release: k.release,
        vm,
        guest: guest_exe(profile),
    })
}

/// The in-guest binary (tests/guest) of `profile`.
fn guest_exe(profile: Profile) -> String {
    paths::target()
        .join(profile.dir())
        .join("epcmig-guest")
        .to_string_lossy()
        .into_owned()
}

fn relink(target: &Path, link: &Path) -> Result<()> {
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// Counts from cargo test's `test result:` lines.
fn cargo_test_counts(out: &str) -> (usize, usize) {
    let mut passed = 0;
    let mut failed = 0;
    for l in out.lines() {
        if let Some(rest) = l.trim().strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut w = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (w.next(), w.next()) else {
                    continue;
                };
                let n: usize = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    _ => {}
                }
            }
        }
    }
    (passed, failed)
}

fn host_tests() -> Result<(usize, usize)> {
    eprintln!("host: cargo test --workspace");
    let o = cargo()
        .current_dir(paths::root())
        .args(["test", "--workspace"])
        .output()
        .context("running cargo test")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let (p, f) = cargo_test_counts(&text);
    if !o.status.success() {
        eprintln!("{text}");
        bail!("host tests failed ({p} passed, {f} failed)");
    }
    println!("host: cargo test: {p} passed, {f} failed");
    Ok((p, f))
}

/// Guest suite summary line, as printed by `vm guest test`.
fn parse_summary(lines: &[String]) -> Option<(usize, usize)> {
    lines.iter().rev().find_map(|l| {
        let l = l.trim().strip_prefix("guest:")?.trim();
        let (p, f) = l.split_once(", ")?;
        let p = p.strip_suffix(" passed")?.parse().ok()?;
        let f = f.strip_suffix(" failed")?.parse().ok()?;
        Some((p, f))
    })
}

/// Names of the guest tests for the patched (or, with `stock`, the
/// unpatched) kernel that match `filter`, asked of the guest binary itself
/// (it runs on the host for this).
fn guest_tests(stock: bool, filter: Option<&str>) -> Result<Vec<String>> {
    let mut c = Command::new(guest_exe(Profile::Debug));
    c.arg("list");
    if stock {
        c.arg("--stock");
    }
    let out = cmd::run_quiet(&mut c)?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && filter.map_or(true, |f| f.split(',').any(|f| n.contains(f))))
        .map(String::from)
        .collect())
}

/// Boots `vm` and runs `epcmig-guest test [--stock] [FILTER]`; returns
/// (passed, failed), a kernel splat counting as one failure.
fn guest_suite(
    vm: &vm::Vm,
    stock: bool,
    filter: Option<&str>,
    digest: &mut Vec<String>,
) -> Result<(usize, usize)> {
    let mut argv = vec![guest_exe(Profile::Debug), "test".into()];
    if stock {
        argv.push("--stock".into());
    }
    if let Some(f) = filter {
        argv.push(f.into());
    }
    // The whole suite: about 45 min under TCG (the CRIU migrations, fault,
    // bad-input and soak suites dominate); each test has its own 20 min
    // watchdog in the guest.
    let out = vm.run(&argv, Duration::from_secs(80 * 60))?;
    let splat = report_splats(&out);
    digest.extend(failure_digest(&out.stdout));
    let Some((p, f)) = parse_summary(&out.stdout) else {
        bail!(
            "the guest suite did not report a summary (guest exit: {}); it did not run to the end",
            out.status
        );
    };
    if p + f == 0 {
        bail!("the guest suite ran no test");
    }
    if f == 0 && !out.status.success() {
        bail!(
            "the guest suite exited {} although no test failed",
            out.status
        );
    }
    Ok((p, f + usize::from(splat)))
}

/// The tests the hardened kernel runs: the fuzz loops and the selftests.
const HARDENED_FILTER: &str = "kfuzz,kselftest";

pub fn test(filter: Option<&str>, guest_only: bool, hardened: bool) -> Result<u8> {
    let t0 = Instant::now();
    let (hp, hf) = if guest_only { (0, 0) } else { host_tests()? };
    let b = build_all()?;
    let main_tests = guest_tests(false, filter)?;
    let stock_tests = guest_tests(true, filter)?;
    if main_tests.is_empty() && stock_tests.is_empty() {
        bail!("no guest test matches {:?} (list them with `target/debug/epcmig-guest list [--stock]`)", filter.unwrap_or(""));
    }
    let (mut gp, mut gf) = (0, 0);
    let mut digest = Vec::new();
    if !main_tests.is_empty() {
        eprintln!(
            "vm: booting {} for the guest suite ({:.0}s since start)",
            b.kernel_release,
            t0.elapsed().as_secs_f64()
        );
        let (p, f) = guest_suite(&b.vm, false, filter, &mut digest)?;
        gp += p;
        gf += f;
    }
    if !stock_tests.is_empty() {
        let k = kernel::ensure(kernel::Variant::Stock)?;
        eprintln!(
            "vm: booting {} (no epcmig patches) for the stock-kernel suite",
            k.release
        );
        let (p, f) = guest_suite(&vm::Vm::new(&k.bzimage), true, filter, &mut digest)?;
        gp += p;
        gf += f;
    }
    if hardened {
        let k = kernel::ensure(kernel::Variant::Hardened)?;
        // With EPCMIG_FAILSLAB=1 the fuzz loops also turn failslab on
        // around each fuzzed call (see the README: not passing yet).
        eprintln!(
            "vm: booting {} (KASAN{}) for {HARDENED_FILTER}",
            k.release,
            if std::env::var("EPCMIG_FAILSLAB").is_ok_and(|v| v == "1") {
                ", slab allocations failing in the fuzzed calls"
            } else {
                ""
            }
        );
        let (p, f) = guest_suite(
            &vm::Vm::new(&k.bzimage),
            false,
            Some(HARDENED_FILTER),
            &mut digest,
        )?;
        gp += p;
        gf += f;
    }
    let failed = hf + gf;
    if !digest.is_empty() {
        println!("failures (repeated from above):");
        for l in &digest {
            println!("  {l}");
        }
    }
    println!("{} passed, {} failed", hp + gp, failed);
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The guest's `test NAME ... FAILED` lines, each with the error lines
/// printed under it, so that the end of a long log says what failed.
fn failure_digest(lines: &[String]) -> Vec<String> {
    const MAX_PER_TEST: usize = 40;
    let mut out = Vec::new();
    let mut taken = None;
    for l in lines {
        if l.starts_with("test ") {
            taken = l.contains(" ... FAILED").then_some(0);
            if taken.is_some() {
                out.push(l.clone());
            }
        } else if let Some(n) = taken.as_mut() {
            if !l.starts_with("  ") || l.starts_with("  | ") {
                taken = None;
            } else if *n < MAX_PER_TEST {
                *n += 1;
                out.push(l.clone());
            }
        }
    }
    out
}

/// Prints kernel splats seen on the console; true if there were any.
fn report_splats(out: &vm::Outcome) -> bool {
    if out.splats.is_empty() {
        return false;
    }
    println!("guest kernel: splat on the console (counted as a failure):");
    for l in &out.splats {
        println!("  {l}");
    }
    true
}

pub fn demo() -> Result<u8> {
    let b = build_with(kernel::Variant::Patched, Profile::Release)?;
    let out = b.vm.run(
        &[b.guest.clone(), "demo".into()],
        Duration::from_secs(30 * 60),
    )?;
    Ok(if out.status.success() { 0 } else { 1 })
}

pub fn bench(
    name: Option<&str>,
    json: Option<&Path>,
    out_dir: Option<&Path>,
    debug_kernel: bool,
) -> Result<u8> {
    // Figures of the kernel users run, not of lockdep (see
    // kernel-patches/epcmig-bench.config), unless asked otherwise.
    let variant = if debug_kernel {
        kernel::Variant::Patched
    } else {
        kernel::Variant::Bench
    };
    let b = build_with(variant, Profile::Release)?;
    eprintln!("vm: booting {} for the benchmarks", b.kernel_release);
    let mut argv = vec![b.guest.clone(), "bench".into()];
    if let Some(n) = name {
        argv.push(n.into());
    }
    let out = b.vm.run(&argv, Duration::from_secs(60 * 60))?;
    let figures = report::parse(&out.stdout)?;
    if let Some(path) = json {
        fs::write(path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "bench: {} figure(s) written to {}",
            figures.len(),
            path.display()
        );
    }
    let dir = out_dir.map_or_else(|| paths::target().join("bench"), Path::to_path_buf);
    for f in report::write(&dir, &b.kernel_release, &figures)? {
        eprintln!("bench: wrote {}", f.display());
    }
    Ok(if out.status.success() { 0 } else { 1 })
}

pub fn exec(cmd: &[String]) -> Result<u8> {
    let b = build_all()?;
    let out = b.vm.run(cmd, Duration::from_secs(60 * 60))?;
    Ok(out
        .status
        .code()
        .map(|c| c.clamp(0, 255) as u8)
        .unwrap_or(1))
}

pub fn shell() -> Result<u8> {
    let b = build_all()?;
    eprintln!(
        "vm: shell on {}; our criu is {}/criu, the plugin dir {}",
        b.kernel_release,
        paths::vm_bin().display(),
        paths::vm_plugin_dir().display()
    );
    let st = b.vm.shell()?;
    Ok(st.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_counts_add_up_over_binaries() {
        let out = "test result: ok. 3 passed; 0 failed; 0 ignored\n\
                   test result: FAILED. 1 passed; 2 failed; 0 ignored";
        assert_eq!(cargo_test_counts(out), (4, 2));
    }

    #[test]
    fn summary_is_found_only_in_its_own_form() {
        let l = |s: &str| s.to_string();
        assert_eq!(
            parse_summary(&[l("x"), l("guest: 3 passed, 1 failed")]),
            Some((3, 1))
        );
        assert_eq!(parse_summary(&[l("3 passed, 1 failed")]), None);
    }

    #[test]
    fn failure_digest_takes_failed_tests_and_their_errors() {
        let out: Vec<String> = [
            "test a ...",
            "  | ok 1 x",
            "test a ... ok (1.00s)",
            "test b ...",
            "  | not ok 1 y",
            "test b ... FAILED (2.00s)",
            "  error: b.sh failed (exit status: 1):",
            "    not ok 1 y",
            "test c ... FAILED (3.00s): panicked",
            "guest: 1 passed, 2 failed",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            failure_digest(&out),
            [
                "test b ... FAILED (2.00s)",
                "  error: b.sh failed (exit status: 1):",
                "    not ok 1 y",
                "test c ... FAILED (3.00s): panicked",
            ]
        );
    }

    #[test]
    fn keys_change_with_any_part() {
        assert_ne!(key(&["a", "bc"]), key(&["ab", "c"]));
        assert_eq!(key(&["x"]), key(&["x"]));
    }

    #[test]
    fn console_lines_are_told_from_command_output() {
        assert!(vm::is_console(
            "[    3.964114] virtme-ng-init: udev is done"
        ));
        assert!(!vm::is_console("[ok] something"));
        assert!(!vm::is_console("guest: 1 passed, 0 failed"));
    }

    #[test]
    fn splats_are_recognised() {
        assert!(vm::is_splat(
            "[   12.5] WARNING: CPU: 0 PID: 1 at net/sctp/socket.c:10"
        ));
        assert!(vm::is_splat("[   12.5] BUG: KASAN: slab-use-after-free"));
        assert!(!vm::is_splat("[   12.5] sctp: Hash tables configured"));
    }

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(vm::quote("abc"), "abc");
        assert_eq!(vm::quote("a b"), "'a b'");
        assert_eq!(vm::quote("it's"), "'it'\\''s'");
    }
}
