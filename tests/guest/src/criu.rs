//! Running our `criu` (first on the guest's PATH) and reporting failures
//! with the tail of its log.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::net::command_in;

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // Errors are what matter; fall back to the last lines.
    let errs: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("Error") || l.contains("rror (") || l.contains("epcmig:"))
        .collect();
    let pick = if errs.is_empty() {
        &lines[lines.len().saturating_sub(25)..]
    } else {
        &errs[errs.len().saturating_sub(25)..]
    };
    pick.join("\n")
}

/// The longest a `criu dump` or `criu restore` may take (under TCG the
/// largest here take well under a minute); `EPCMIG_CRIU_LIMIT` seconds
/// overrides it.
fn limit() -> Duration {
    let secs = crate::env_num("EPCMIG_CRIU_LIMIT").unwrap_or(300);
    Duration::from_secs(secs)
}

/// Runs criu `what`; if it hangs, fails with what its processes were
/// doing in the kernel and its log's tail, after killing them.
fn run(mut cmd: std::process::Command, what: &str, log: &Path) -> Result<ExitStatus> {
    let child = cmd
        .spawn()
        .with_context(|| format!("running criu {what}"))?;
    let limit = limit();
    match crate::hang::wait_bounded(child, limit)? {
        Ok(st) => Ok(st),
        Err(hung) => bail!(
            "criu {what} still running after {} s: killed; the end of {}:\n{}\nits processes:\n{}",
            limit.as_secs(),
            log.display(),
            last_lines(log, 8),
            hung.report.join("\n")
        ),
    }
}

fn last_lines(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `criu check`, returning its output.
pub fn check() -> Result<String> {
    let o = std::process::Command::new("criu")
        .arg("check")
        .output()
        .context("running criu")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        bail!("criu check failed ({}):\n{text}", o.status);
    }
    Ok(text)
}

thread_local! {
    /// The criu binary [`dump`] and [`restore`] run: ours (first on PATH)
    /// unless a test picks another with [`with_program`].
    static PROGRAM: std::cell::RefCell<String> = std::cell::RefCell::new("criu".into());
}

/// Runs `f` with `program` as the criu binary of this thread's dumps and
/// restores.
pub fn with_program<T>(program: &str, f: impl FnOnce() -> T) -> T {
    let old = PROGRAM.with(|p| p.replace(program.to_string()));
    let r = f();
    PROGRAM.with(|p| *p.borrow_mut() = old);
    r
}

fn program() -> String {
    PROGRAM.with(|p| p.borrow().clone())
}

/// Checkpoints the tree rooted at `pid`, with criu itself in netns `host`.
pub fn dump(host: &str, pid: u32, dir: &Path, extra: &[&str]) -> Result<Duration> {
    dump_env(host, pid, dir, extra, &[])
}

/// [`dump`] with extra environment for criu (and so for the plugin).
pub fn dump_env(
    host: &str,
    pid: u32,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let log = dir.join("dump.log");
    let t = Instant::now();
    let mut cmd = command_in(host, &program())?;
    cmd.arg("dump")
        .args(["-t", &pid.to_string()])
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg("-v4")
        .args(extra)
        .envs(env.iter().copied());
    let st = run(cmd, "dump", &log)?;
    let took = t.elapsed();
    if !st.success() {
        bail!(
            "criu dump failed ({st}); from {}:\n{}",
            log.display(),
            log_tail(&log)
        );
    }
    Ok(took)
}

/// Restores from `dir` with criu in netns `host`; returns time and the
/// restored root pid.
pub fn restore(host: &str, dir: &Path, extra: &[&str]) -> Result<(Duration, u32)> {
    restore_env(host, dir, extra, &[])
}

/// [`restore`] with extra environment for criu (and so for the plugin).
pub fn restore_env(
    host: &str,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<(Duration, u32)> {
    let log = dir.join("restore.log");
    let pidfile: PathBuf = dir.join("restored.pid");
    let t = Instant::now();
    let mut cmd = command_in(host, &program())?;
    cmd.arg("restore")
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg("-v4")
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(&pidfile)
        .args(extra)
        .envs(env.iter().copied());
    let st = run(cmd, "restore", &log)?;
    let took = t.elapsed();
    if !st.success() {
        bail!(
            "criu restore failed ({st}); from {}:\n{}",
            log.display(),
            log_tail(&log)
        );
    }
    let pid = std::fs::read_to_string(&pidfile)
        .with_context(|| format!("reading {}", pidfile.display()))?
        .trim()
        .parse()
        .context("parsing the restored pid")?;
    Ok((took, pid))
}
