//! Debian's podman (4.3.1) with runc, as an operator runs a container:
//! each "host" has its own podman state (`--root`/`--runroot`), the image
//! is built locally from a tarball (no registry), and a checkpoint moves
//! between hosts as podman's own archive (`container checkpoint --export`,
//! `container restore --import`).
//!
//! Both hosts share the guest's file system, but a checkpoint archive
//! carries podman's paths (its run directory, conmon's pid file), which
//! on two real machines are the same defaults. So every podman command of
//! a host runs in a mount namespace of its own where that host's state
//! directory is bind-mounted on one fixed path, [`ACTIVE`]: each host sees
//! its own state at the same place, as two machines would.
//!
//! The container joins a network namespace made beforehand (`--network
//! ns:PATH`), as podman's netavark or CNI would make it: the test topology
//! decides its address and cabling, and runc hands it to CRIU as external,
//! exactly as with a podman-made one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where a host's podman state appears to its podman commands.
const ACTIVE: &str = "/tmp/epcmig/podman-host";

/// One host's podman.
pub struct Podman {
    dir: PathBuf,
}

/// The local image every container runs.
const IMAGE: &str = "localhost/epcmig-app:latest";

impl Podman {
    /// Another host's podman with its state under `dir` (made empty),
    /// holding the same image as `from` (`save` there, `load` here: a
    /// checkpoint names its image by ID, which an `import` of the same
    /// tarball would not give).
    pub fn with_image_of(dir: &Path, from: &Podman) -> Result<Podman> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let p = Podman {
            dir: dir.to_path_buf(),
        };
        let tar = dir.join("image.tar");
        let tar = tar.to_string_lossy();
        from.run(&["save", "-o", &tar, IMAGE], "save")?;
        p.run(&["load", "-i", &tar], "load")?;
        Ok(p)
    }

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
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let _ = std::fs::create_dir_all(ACTIVE);
        let mut c = Command::new("podman");
        let src = CString::new(self.dir.as_os_str().as_bytes()).unwrap_or_default();
        let dst = CString::new(ACTIVE).unwrap_or_default();
        // SAFETY: unshare(2) and mount(2) only, async-signal-safe, between
        // fork and exec, on C strings made before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.args(["--root", &format!("{ACTIVE}/root")])
            .args(["--runroot", &format!("{ACTIVE}/run")])
            .args(["--tmpdir", &format!("{ACTIVE}/tmp")])
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
        let mut c = self.cmd();
        c.args(args);
        crate::runc::run_runtime(c, what)
    }

    /// `podman run -d` of `app ARGS` as container `name` in the netns at
    /// `netns`.
    pub fn start(&self, name: &str, netns: &str, app_args: &[&str]) -> Result<()> {
        let exe = std::env::current_exe()?;
        let root = crate::workspace_root();
        let root = root.to_string_lossy();
        let net = format!("ns:{netns}");
        // Not recursive: /usr/lib is a virtme-ng overlay in this guest,
        // which CRIU cannot re-create inside the container.
        let usr = "type=bind,source=/usr,target=/usr,readonly,bind-nonrecursive".to_string();
        let ws = format!("type=bind,source={root},target={root},readonly,bind-nonrecursive");
        let exe = exe.to_string_lossy();
        // CRIU's configuration for this container (runc passes the file
        // this annotation names, as it would /etc/criu/runc.conf): its log
        // in a place podman does not delete when a restore fails.
        let conf = self.criu_conf()?;
        let annotation = format!("org.criu.config={}", conf.display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--annotation",
            &annotation,
            // An SPGW makes its gtp device and PDP contexts itself.
            "--cap-add",
            "NET_ADMIN",
            "--network",
            &net,
            "--mount",
            &usr,
            "--mount",
            &ws,
            IMAGE,
            &exe,
            "app",
        ];
        args.extend(app_args);
        self.run(&args, "run")?;
        Ok(())
    }

    /// The CRIU configuration file the containers name: CRIU's log goes to
    /// [`Podman::criu_log`]. The same for every host (the checkpoint
    /// carries the annotation).
    fn criu_conf(&self) -> Result<PathBuf> {
        let conf = PathBuf::from("/tmp/epcmig/podman-criu.conf");
        std::fs::write(&conf, format!("log-file {}\n", criu_log().display()))?;
        Ok(conf)
    }

    /// Whether container `name` is running.
    pub fn running(&self, name: &str) -> bool {
        self.run(
            &["inspect", "--format", "{{.State.Running}}", name],
            "inspect",
        )
        .is_ok_and(|o| o.trim() == "true")
    }
}

/// Where CRIU logs when podman runs it (the last dump or restore).
pub fn criu_log() -> PathBuf {
    PathBuf::from("/tmp/epcmig/podman-criu.log")
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
