//! Boots the test kernel with virtme-ng (`vng`): the guest gets the host's
//! root file system over 9p, so it runs the same cargo-built binaries,
//! `criu` and the plugin at the same paths.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::paths;

/// First line the in-guest side prints; its absence means no boot.
pub const UP_MARKER: &str = "epcmig-guest: up";

/// Under TCG a boot to the command takes ~10 s; leave room for a loaded CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(25);

pub struct Vm {
    bzimage: std::path::PathBuf,
    kvm: bool,
}

fn vng(bz: &Path, kvm: bool) -> Command {
    let mut c = Command::new("vng");
    c.arg("--run")
        .arg(bz)
        .args(["--user", "root", "--cpus", "2", "--memory", "3G"])
        // 9p directly: vng otherwise tries virtiofsd first and falls back.
        .arg("--force-9p")
        // Writable in the guest only, so a test can install the plugin in
        // our CRIU's default plugin directory (criu::PLUGIN_DIR) as a
        // package would, without touching the host.
        .arg("--overlay-rwdir=/usr/lib");
    if !kvm {
        c.arg("--disable-kvm");
    }
    c.current_dir(paths::root());
    c
}

/// Own process group, so a timeout can kill vng and its qemu together.
fn own_group(c: &mut Command) {
    // SAFETY: setpgid is async-signal-safe; nothing else runs before exec.
    unsafe {
        c.pre_exec(|| {
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

fn kill_group(pid: u32) {
    // SAFETY: plain syscall on a process group we created.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether a KVM guest boots here. On nested setups KVM can hang right
/// after the option ROM, so probe with a short timeout, once per host boot.
fn kvm_works(bz: &Path) -> bool {
    match std::env::var("EPCMIG_KVM").as_deref() {
        Ok("0") => return false,
        Ok("1") => return true,
        _ => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("vm: /dev/kvm not usable; using TCG (software emulation)");
        return false;
    }
    let cache = paths::cache().join("kvm-probe");
    let id = boot_id();
    if let Ok(s) = std::fs::read_to_string(&cache) {
        if let Some((b, v)) = s.trim().split_once(' ') {
            if b == id {
                return v == "yes";
            }
        }
    }
    eprintln!("vm: probing KVM ({}s timeout)", KVM_PROBE_TIMEOUT.as_secs());
    let mut c = vng(bz, true);
    c.args(["--exec", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    own_group(&mut c);
    let ok = match c.spawn() {
        Ok(mut child) => {
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(st)) => break st.success(),
                    Ok(None) if start.elapsed() > KVM_PROBE_TIMEOUT => {
                        kill_group(child.id());
                        let _ = child.wait();
                        break false;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                    Err(_) => break false,
                }
            }
        }
        Err(_) => false,
    };
    eprintln!(
        "vm: KVM {}",
        if ok {
            "works"
        } else {
            "does not boot here; using TCG (software emulation)"
        }
    );
    let _ = std::fs::create_dir_all(paths::cache());
    let _ = std::fs::write(&cache, format!("{id} {}\n", if ok { "yes" } else { "no" }));
    ok
}

/// What a guest run produced.
pub struct Outcome {
    pub status: ExitStatus,
    /// Lines the guest command printed on stdout.
    pub stdout: Vec<String>,
    /// Kernel console lines around any splat (BUG, WARNING, lockdep...).
    pub splats: Vec<String>,
}

/// Console markers of a kernel problem; any of them fails a run.
const SPLATS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "Kernel panic",
    "general protection fault",
    "possible circular locking",
    "inconsistent lock state",
    "ODEBUG:",
    "list_add corruption",
    "list_del corruption",
    "INFO: task",
    "UBSAN:",
];

pub(super) fn is_splat(line: &str) -> bool {
    SPLATS.iter().any(|m| line.contains(m))
}

/// Whether a line is from the kernel console (printk with timestamps).
pub(super) fn is_console(line: &str) -> bool {
    let t = line.trim_start();
    let Some(rest) = t.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Shell-quotes one word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Host environment variables the guest suites read (see README).
const PASSED_THROUGH: &[&str] = &[
    "EPCMIG_VERBOSE",
    "EPCMIG_SOAK",
    "EPCMIG_KFUZZ_SECS",
    "EPCMIG_KFUZZ_SEED",
    "EPCMIG_FAILSLAB",
    "EPCMIG_CRIU_LIMIT",
    "EPCMIG_BADINPUT_ROUNDS",
    "EPCMIG_SHAPES_MOVES",
    "EPCMIG_TRACE_MOVES",
    "EPCMIG_OPT_IN",
    "EPCMIG_PRECOPY_VIA",
];

impl Vm {
    pub fn new(bzimage: &Path) -> Vm {
        let kvm = kvm_works(bzimage);
        Vm {
            bzimage: bzimage.to_path_buf(),
            kvm,
        }
    }

    /// The guest's environment prefix: our criu first on PATH, where the
    /// workspace is, and the suites' knobs passed through from the host.
    fn env_prefix() -> String {
        let knobs: String = PASSED_THROUGH
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| format!(" {k}={}", quote(&v))))
            .collect();
        format!(
            "export PATH={}:\"$PATH\" EPCMIG_ROOT={} EPCMIG_PLUGIN_DIR={}{knobs}; cd {} && ",
            quote(&paths::vm_bin().to_string_lossy()),
            quote(&paths::root().to_string_lossy()),
            quote(&paths::vm_plugin_dir().to_string_lossy()),
            quote(&paths::root().to_string_lossy()),
        )
    }

    /// Runs `argv` in the guest, streaming its output. Fails with the
    /// console tail when the guest never comes up or exceeds `limit`.
    pub fn run(&self, argv: &[String], limit: Duration) -> Result<Outcome> {
        let cmd: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        let script = format!(
            "{}echo {UP_MARKER} >&2; exec {}",
            Self::env_prefix(),
            cmd.join(" ")
        );
        let mut c = vng(&self.bzimage, self.kvm);
        c.arg("--verbose")
            .arg("--exec")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_group(&mut c);
        let start = Instant::now();
        let mut child = c
            .spawn()
            .context("starting vng (is virtme-ng installed?)")?;
        let pid = child.id();

        let console: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
        let splats: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let sp = splats.clone();
        let (up_tx, up_rx) = mpsc::channel::<()>();
        let stderr = child.stderr.take().context("vng stderr")?;
        let con = console.clone();
        let verbose = std::env::var_os("EPCMIG_CONSOLE").is_some();
        let err_thread = std::thread::spawn(move || {
            // Console lines still to keep after a splat (its trace).
            let mut trace = 0usize;
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if line.contains(UP_MARKER) {
                    let _ = up_tx.send(());
                    continue;
                }
                // With --verbose, vng interleaves the serial console (kernel
                // log lines, "[ secs.usecs] ...") with the command's stderr.
                let console_line = is_console(&line);
                {
                    // The tail shown on a failed boot: console and vng/qemu's own lines.
                    let mut c = con.lock().unwrap_or_else(|p| p.into_inner());
                    c.push_back(line.clone());
                    if c.len() > 80 {
                        c.pop_front();
                    }
                }
                if console_line {
                    if is_splat(&line) {
                        trace = 40;
                    }
                    if trace > 0 {
                        trace -= 1;
                        sp.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(line.clone());
                    }
                    if verbose {
                        eprintln!("console: {line}");
                    }
                } else {
                    eprintln!("{line}");
                }
            }
        });
        let stdout = child.stdout.take().context("vng stdout")?;
        let out_thread = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let so = std::io::stdout();
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                // Machine-readable figures are for `--json`, not the terminal.
                if line.starts_with(epcmig_figures::PREFIX) {
                    lines.push(line);
                    continue;
                }
                let mut h = so.lock();
                let _ = writeln!(h, "{line}");
                let _ = h.flush();
                lines.push(line);
            }
            lines
        });

        let tail = |console: &Arc<Mutex<VecDeque<String>>>| -> String {
            let c = console.lock().unwrap_or_else(|p| p.into_inner());
            c.iter().cloned().collect::<Vec<_>>().join("\n")
        };
        let mut up = false;
        loop {
            if !up && up_rx.try_recv().is_ok() {
                up = true;
                eprintln!(
                    "vm: guest up after {:.1}s ({})",
                    start.elapsed().as_secs_f64(),
                    if self.kvm { "KVM" } else { "TCG" }
                );
            }
            if let Some(status) = child.try_wait()? {
                let _ = err_thread.join();
                let stdout = out_thread.join().unwrap_or_default();
                if !up && up_rx.try_recv().is_err() {
                    bail!(
                        "the guest did not come up (vng exited {status}); console tail:\n{}",
                        tail(&console)
                    );
                }
                let splats = std::mem::take(&mut *splats.lock().unwrap_or_else(|p| p.into_inner()));
                return Ok(Outcome {
                    status,
                    stdout,
                    splats,
                });
            }
            if !up && start.elapsed() > BOOT_TIMEOUT {
                kill_group(pid);
                let _ = child.wait();
                bail!(
                    "the guest did not come up within {}s; console tail:\n{}",
                    BOOT_TIMEOUT.as_secs(),
                    tail(&console)
                );
            }
            if start.elapsed() > limit {
                kill_group(pid);
                let _ = child.wait();
                bail!(
                    "the guest run exceeded {}s and was killed; console tail:\n{}",
                    limit.as_secs(),
                    tail(&console)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Interactive shell in the guest (on the console's tty), with the
    /// same PATH and variables as `run`.
    pub fn shell(&self) -> Result<ExitStatus> {
        let dir = paths::vm_dir();
        let rc = dir.join("guest-bashrc");
        let sh = dir.join("guest-shell");
        // bash reads ~/.bashrc first, which may put other dirs before ours.
        std::fs::write(
            &rc,
            format!(
                "[ -f ~/.bashrc ] && . ~/.bashrc\n{}true\nPS1='epcmig-guest:\\w# '\n",
                Self::env_prefix()
            ),
        )?;
        std::fs::write(
            &sh,
            format!(
                "#!/bin/sh\nexec bash --rcfile {} -i\n",
                quote(&rc.to_string_lossy())
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755))?;
        let mut c = vng(&self.bzimage, self.kvm);
        c.arg("--shell").arg(&sh);
        let st = c.status().context("starting vng")?;
        Ok(st)
    }
}
