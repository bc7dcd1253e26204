//! Running our `criu` (first on the guest's PATH) and reporting failures
//! with the tail of its log.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::net::command_in;

pub fn log_tail(log: &Path) -> String {
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
    criu_dump(
        Tree {
            action: "dump",
            host,
            pid,
        },
        dir,
        extra,
        env,
    )
}

/// `criu pre-dump` of the tree rooted at `pid` (memory only; the tree runs
/// on), logging to `dir/pre-dump.log`.
pub fn pre_dump(host: &str, pid: u32, dir: &Path, extra: &[&str]) -> Result<Duration> {
    criu_dump(
        Tree {
            action: "pre-dump",
            host,
            pid,
        },
        dir,
        extra,
        &[],
    )
}

/// What a dump-like criu run does, to which tree, from which netns.
struct Tree<'a> {
    action: &'a str,
    host: &'a str,
    pid: u32,
}

/// `criu ACTION -t PID -D DIR -o DIR/ACTION.log -v4 EXTRA` in netns
/// `host`, for `dump` and `pre-dump`.
fn criu_dump(t: Tree, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Duration> {
    let Tree { action, host, pid } = t;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join(format!("{action}.log"));
    let t = Instant::now();
    let mut cmd = command_in(host, &program())?;
    cmd.arg(action)
        .args(["-t", &pid.to_string()])
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg("-v4")
        .args(extra)
        .envs(env.iter().copied());
    let st = run(cmd, action, &log)?;
    let took = t.elapsed();
    if !st.success() {
        bail!(
            "criu {action} failed ({st}); from {}:\n{}",
            log.display(),
            log_tail(&log)
        );
    }
    Ok(took)
}

/// A `criu page-server` receiving the pages of one dump or pre-dump into
/// its images directory: it serves one client, then exits.
pub struct PageServer {
    child: Option<std::process::Child>,
    log: PathBuf,
}

/// Starts `criu page-server -D DIR --address ADDR --port PORT EXTRA` in
/// netns `host` and returns once it listens (it says so on `--status-fd`).
pub fn page_server(
    host: &str,
    dir: &Path,
    addr: std::net::Ipv4Addr,
    port: u16,
    extra: &[&str],
) -> Result<PageServer> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("page-server.log");
    // Not close-on-exec: criu inherits the write end as its status fd.
    let (ready_r, ready_w) =
        nix::unistd::pipe().context("a pipe for the page server's --status-fd")?;
    let mut cmd = command_in(host, &program())?;
    cmd.arg("page-server")
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg("-v4")
        .args(["--address", &addr.to_string(), "--port", &port.to_string()])
        .args(["--status-fd", &ready_w.as_raw_fd().to_string()])
        .args(extra);
    let child = cmd.spawn().context("starting criu page-server")?;
    drop(ready_w);
    let mut server = PageServer {
        child: Some(child),
        log,
    };
    // One byte once it listens; end of file if it exits first.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = tx.send(std::io::Read::read(
            &mut std::fs::File::from(ready_r),
            &mut b,
        ));
    });
    let limit = Duration::from_secs(30);
    match rx.recv_timeout(limit) {
        Ok(Ok(1)) => Ok(server),
        Ok(got) => {
            let st = server.wait().err();
            bail!(
                "criu page-server in {host} did not start ({}); from {}:\n{}",
                match (got, st) {
                    (Err(e), _) => format!("reading its status fd: {e}"),
                    (_, Some(e)) => format!("{e:#}"),
                    _ => "it closed its status fd".into(),
                },
                server.log.display(),
                log_tail(&server.log)
            )
        }
        Err(_) => {
            let tail = last_lines(&server.log, 8);
            server.kill();
            bail!(
                "criu page-server in {host} not listening after {} s: killed; the end of {}:\n{tail}",
                limit.as_secs(),
                server.log.display()
            )
        }
    }
}

impl PageServer {
    /// Waits (within the dump time limit) for the page server to exit
    /// after its client closed, and fails unless it exited 0.
    pub fn wait(&mut self) -> Result<()> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let limit = limit();
        match crate::hang::wait_bounded(child, limit).context("waiting for criu page-server")? {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => bail!(
                "criu page-server failed ({st}); from {}:\n{}",
                self.log.display(),
                log_tail(&self.log)
            ),
            Err(hung) => bail!(
                "criu page-server still running after {} s: killed; the end of {}:\n{}\nits processes:\n{}",
                limit.as_secs(),
                self.log.display(),
                last_lines(&self.log, 8),
                hung.report.join("\n")
            ),
        }
    }

    /// Ends a page server that will get no client (its dump failed).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.kill();
    }
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
