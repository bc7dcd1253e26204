//! Debian's podman (4.3.1) with runc, as an operator runs a container:
//! each "host" has its own podman state (`--root`/`--runroot`), the image
//! is built locally from a tarball (no registry), and a checkpoint moves
//! between hosts as podman's own archive (`container checkpoint --export`,
//! `container restore --import`).
//!
//! The container joins a network namespace made beforehand (`--network
//! ns:PATH`), as podman's netavark or CNI would make it: the test topology
//! decides its address and cabling, and runc hands it to CRIU as external,
//! exactly as with a podman-made one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// One host's podman.
pub struct Podman {
    dir: PathBuf,
}

/// The local image every container runs.
const IMAGE: &str = "localhost/epcmig-app:latest";

impl Podman {
    /// A podman with its state under `dir` (made empty), holding the image.
    pub fn new(dir: &Path) -> Result<Podman> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let p = Podman {
            dir: dir.to_path_buf(),
        };
        // A rootfs with mount points and the merged-/usr links; /usr and
        // the workspace come in as read-only volumes.
        let rootfs = dir.join("rootfs");
        for d in ["usr", "etc", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        for l in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), rootfs.join(l))?;
        }
        let root = crate::workspace_root();
        std::fs::create_dir_all(rootfs.join(root.strip_prefix("/").unwrap_or(&root)))?;
        let tar = dir.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .context("running tar")?;
        if !st.success() {
            bail!("tar of the image's rootfs failed");
        }
        p.run(&["import", &tar.to_string_lossy(), IMAGE], "import")?;
        Ok(p)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ]);
        c
    }

    /// Runs podman with `args`; its standard output.
    pub fn run(&self, args: &[&str], what: &str) -> Result<String> {
        let o = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running podman {what} (Debian's podman package)"))?;
        if !o.status.success() {
            bail!(
                "podman {what} failed ({}): {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `podman run -d` of `app ARGS` as container `name` in the netns at
    /// `netns`.
    pub fn start(&self, name: &str, netns: &str, app_args: &[&str]) -> Result<()> {
        let exe = std::env::current_exe()?;
        let root = crate::workspace_root();
        let root = root.to_string_lossy();
        let net = format!("ns:{netns}");
        let usr = "/usr:/usr:ro".to_string();
        let ws = format!("{root}:{root}:ro");
        let exe = exe.to_string_lossy();
        let mut args = vec![
            "run", "-d", "--name", name, "--network", &net, "-v", &usr, "-v", &ws, IMAGE, &exe,
            "app",
        ];
        args.extend(app_args);
        self.run(&args, "run")?;
        Ok(())
    }

    /// Whether container `name` is running.
    pub fn running(&self, name: &str) -> bool {
        self.run(&["inspect", "--format", "{{.State.Running}}", name], "inspect")
            .is_ok_and(|o| o.trim() == "true")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
