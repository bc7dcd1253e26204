//! Debian's runc (1.1.5) driving our criu the way podman, CRI-O and
//! containerd do: `criu swrk` (RPC), the container's network namespace
//! made beforehand (as podman's netavark or CNI makes it) and handed to
//! CRIU as external.
//!
//! A container here is an OCI bundle whose rootfs is an empty directory
//! with the guest's /usr (and the merged /bin, /lib, /lib64, /sbin links)
//! and the workspace bind-mounted read-only, running this binary's `app`
//! subcommands.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// runc's state directory (its `--root`).
const STATE: &str = "/tmp/epcmig/runc-state";

fn runc() -> Command {
    let mut c = Command::new("runc");
    c.args(["--root", STATE]);
    c
}

/// Runs a container runtime's command `c` (runc, podman: Debian's
/// packages), `what` naming its subcommand; its standard output, or an
/// error with both of its outputs.
pub fn run_runtime(mut c: Command, what: &str) -> Result<String> {
    let prog = c.get_program().to_string_lossy().into_owned();
    let o = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog} {what} (Debian's {prog} package)"))?;
    if !o.status.success() {
        bail!(
            "{prog} {what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// [`run_runtime`] for `runc run -d` and `runc restore -d`. The container keeps
/// runc's stdout and stderr: a pipe, as a runtime's shim gives it (runc
/// hands CRIU the pipes as external; a file outside the container could
/// not be dumped). Returns the pipe's read end, which must stay open as
/// long as the container runs.
fn run_detached(mut c: Command, what: &str) -> Result<std::os::fd::OwnedFd> {
    let (r, w) = nix::unistd::pipe()?;
    let st = c
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone()?))
        .stderr(Stdio::from(w))
        .status()
        .with_context(|| format!("running runc {what} (Debian's runc package)"))?;
    if !st.success() {
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text);
        bail!("runc {what} failed ({st}): {}", text.trim());
    }
    Ok(r)
}

/// An OCI bundle: `config.json` and `rootfs/`.
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// A bundle in `dir` running `app ARGS` in the netns at `netns` (a
    /// path such as /run/netns/NAME).
    pub fn new(dir: &Path, netns: &str, app_args: &[&str]) -> Result<Bundle> {
        let _ = std::fs::remove_dir_all(dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        let exe = std::env::current_exe()?;
        let root = crate::workspace_root();
        let mut mounts = vec![
            serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"]}),
        ];
        // Not recursive: the guest has mounts under /etc and /usr/lib
        // (virtme-ng's), which CRIU cannot place in the container's tree.
        let binds = ["/usr".to_string(), root.to_string_lossy().into_owned()];
        for b in &binds {
            std::fs::create_dir_all(rootfs.join(b.trim_start_matches('/')))?;
            mounts.push(
                serde_json::json!({"destination": b, "type": "bind", "source": b,
                "options": ["bind", "ro"]}),
            );
        }
        std::fs::create_dir_all(rootfs.join("etc"))?;
        // Debian's merged /usr: /bin, /lib, /lib64, /sbin are links.
        for l in ["bin", "lib", "lib64", "sbin"] {
            let target = format!("usr/{l}");
            if Path::new("/").join(&target).exists() {
                std::os::unix::fs::symlink(&target, rootfs.join(l))?;
            }
        }
        let mut args = vec![exe.to_string_lossy().into_owned(), "app".into()];
        args.extend(app_args.iter().map(|s| s.to_string()));
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
                    "effective": ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
                    "permitted": ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "epc",
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                    {"type": "network", "path": netns}
                ],
                "maskedPaths": [],
                "readonlyPaths": []
            }
        });
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
        })
    }
}

/// A container runc runs; deleted (killed first) on drop.
pub struct Container {
    pub id: String,
    _stdio: Option<std::os::fd::OwnedFd>,
}

impl Container {
    /// `runc run -d`.
    pub fn run(id: &str, b: &Bundle) -> Result<Container> {
        let _ = delete(id);
        let mut c = runc();
        c.args(["run", "-d", "--bundle"]).arg(&b.dir).arg(id);
        let stdio = run_detached(c, "run")?;
        Ok(Container {
            id: id.into(),
            _stdio: Some(stdio),
        })
    }

    /// The container's first process, as the host sees it.
    pub fn pid(&self) -> Result<u32> {
        let mut c = runc();
        c.args(["state", &self.id]);
        let out = run_runtime(c, "state")?;
        let v: serde_json::Value = serde_json::from_str(&out).context("runc state output")?;
        v["pid"]
            .as_u64()
            .filter(|&p| p > 0)
            .map(|p| p as u32)
            .with_context(|| format!("runc state of {}: no pid in {out}", self.id))
    }

    /// `runc checkpoint` to `images` (CRIU's work dir and log in `work`).
    pub fn checkpoint(&self, images: &Path, work: &Path, extra: &[&str]) -> Result<Duration> {
        std::fs::create_dir_all(images)?;
        std::fs::create_dir_all(work)?;
        let mut c = runc();
        c.arg("checkpoint")
            .arg("--image-path")
            .arg(images)
            .arg("--work-path")
            .arg(work)
            .args(extra)
            .arg(&self.id);
        let t = Instant::now();
        run_runtime(c, "checkpoint").with_context(|| criu_log(work, "dump.log"))?;
        Ok(t.elapsed())
    }

    /// `runc restore -d` of `images` as container `id` from bundle `b`.
    pub fn restore(id: &str, b: &Bundle, images: &Path, work: &Path) -> Result<Container> {
        let _ = delete(id);
        std::fs::create_dir_all(work)?;
        let mut c = runc();
        c.args(["restore", "-d", "--image-path"])
            .arg(images)
            .arg("--work-path")
            .arg(work)
            .arg("--bundle")
            .arg(&b.dir)
            .arg(id);
        let stdio = run_detached(c, "restore").with_context(|| criu_log(work, "restore.log"))?;
        Ok(Container {
            id: id.into(),
            _stdio: Some(stdio),
        })
    }

    /// Whether runc says the container is running.
    pub fn running(&self) -> bool {
        let mut c = runc();
        c.args(["state", &self.id]);
        run_runtime(c, "state")
            .ok()
            .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
            .is_some_and(|v| v["status"] == "running")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = delete(&self.id);
    }
}

fn delete(id: &str) -> Result<String> {
    let mut c = runc();
    c.args(["delete", "--force", id]);
    run_runtime(c, "delete")
}

/// The tail of CRIU's log `name` in `work`, for an error report.
pub fn criu_log(work: &Path, name: &str) -> String {
    let p = work.join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("epcmig:"))
        .collect();
    format!(
        "{}:\n{}",
        p.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// Waits until `f` holds, for at most `limit`.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let t = Instant::now();
    while !f() {
        ensure!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
