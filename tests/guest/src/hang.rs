//! When a step hangs: what it and the kernel were doing, so that a hang in
//! a CI log names its place (the log is all CI keeps), and the step is
//! stopped so that the tests after it still run.

use std::collections::BTreeMap;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

/// One process, from `/proc/PID/stat`.
struct Proc {
    pid: u32,
    ppid: u32,
    state: char,
    comm: String,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<Proc> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(&stat)
        })
        .collect();
    v.sort_by_key(|p| p.pid);
    v
}

/// `pid (comm) S ppid ...`; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat.get(..open)?.trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        state,
        comm,
    })
}

/// `root` and every process under it.
fn tree(all: &[Proc], root: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            todo.extend(c);
        }
    }
    out
}

/// Each thread's kernel stack, first frames only.
fn stacks(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let tid = t.file_name().to_string_lossy().into_owned();
        let stack = std::fs::read_to_string(t.path().join("stack")).unwrap_or_default();
        let frames: Vec<&str> = stack
            .lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, f)| f))
            .take(8)
            .collect();
        if !frames.is_empty() {
            out.push(format!("    thread {tid}: {}", frames.join(" < ")));
        }
    }
    out
}

/// The processes under `root` (if any) and every process in
/// uninterruptible sleep, each with its wait channel, command line and
/// kernel stacks; then the kernel log's tail.
pub fn report(root: Option<u32>) -> Vec<String> {
    let all = processes();
    let mine = root.map(|r| tree(&all, r)).unwrap_or_default();
    let mut out = Vec::new();
    for p in all
        .iter()
        .filter(|p| mine.contains(&p.pid) || p.state == 'D')
    {
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", p.pid)).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        out.push(format!(
            "  pid {} (ppid {}) {} {} in {}: {}",
            p.pid,
            p.ppid,
            p.state,
            p.comm,
            if wchan.is_empty() { "-" } else { &wchan },
            cmd.trim()
        ));
        out.extend(stacks(p.pid));
    }
    if let Ok(o) = std::process::Command::new("dmesg").output() {
        let log = String::from_utf8_lossy(&o.stdout);
        // Bridge ports coming and going say nothing about a hang.
        let noise = [
            "entered blocking state",
            "entered forwarding state",
            "entered disabled state",
            "allmulticast mode",
            "promiscuous mode",
        ];
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| !noise.iter().any(|n| l.contains(n)))
            .take(15)
            .collect();
        out.extend(tail.into_iter().rev().map(|l| format!("  dmesg: {l}")));
    }
    out
}

/// SIGKILLs `root` and everything under it, children first so that none
/// is reparented out of reach.
pub fn kill_tree(root: u32) {
    let all = processes();
    for pid in tree(&all, root).into_iter().rev() {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `child` still running after its limit: what it was doing.
#[derive(Debug)]
pub struct Hung {
    pub report: Vec<String>,
}

/// Waits for `child` up to `limit` (exactly: no polling, so a measured
/// step is not stretched). If it is still running then, reports what its
/// tree was doing, kills the tree and returns [`Hung`].
pub fn wait_bounded(
    mut child: Child,
    limit: Duration,
) -> std::io::Result<Result<ExitStatus, Hung>> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(st) => {
            let _ = waiter.join();
            st.map(Ok)
        }
        Err(_) => {
            let report = report(Some(pid));
            kill_tree(pid);
            // The waiter reaps it; a process stuck in the kernel may not
            // die, so do not wait for that forever either.
            let _ = rx.recv_timeout(Duration::from_secs(10));
            Ok(Err(Hung { report }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_strange_command_name() {
        let p = parse_stat("4242 (a (b) c) D 17 4242 4242 0 -1 4194560").unwrap();
        assert_eq!(
            (p.pid, p.comm.as_str(), p.state, p.ppid),
            (4242, "a (b) c", 'D', 17)
        );
        assert!(parse_stat("4242 a D 17").is_none());
    }

    #[test]
    fn a_tree_holds_its_grandchildren_only() {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            state: 'S',
            comm: String::new(),
        };
        let all = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1)];
        let mut t = tree(&all, 10);
        t.sort();
        assert_eq!(t, vec![10, 11, 12]);
    }

    #[test]
    fn a_hung_child_is_reported_and_killed() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let hung = wait_bounded(child, Duration::from_millis(200))
            .unwrap()
            .unwrap_err();
        assert!(
            hung.report
                .iter()
                .any(|l| l.contains(&format!("pid {pid} "))),
            "{:?}",
            hung.report
        );
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        let quick = std::process::Command::new("true").spawn().unwrap();
        assert!(wait_bounded(quick, Duration::from_secs(30))
            .unwrap()
            .unwrap()
            .success());
    }
}
