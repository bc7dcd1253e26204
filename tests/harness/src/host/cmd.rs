//! Long build steps: output to a log file, a progress line now and then,
//! and the log's tail when a step fails.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Last `n` lines of a file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` with its output in `log`, printing progress every 30 s.
pub fn run_logged(label: &str, cmd: &mut Command, log: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("{label}: starting {cmd:?}"))?;
    let mut last = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            if st.success() {
                return Ok(());
            }
            bail!(
                "{label} failed ({st}); last lines of {}:\n{}",
                log.display(),
                tail(log, 40)
            );
        }
        if last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            let t = start.elapsed().as_secs();
            let latest = tail(log, 1);
            eprintln!("{label}: {}m{:02}s … {}", t / 60, t % 60, latest.trim());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs a short command, failing with its stderr.
pub fn run_quiet(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
