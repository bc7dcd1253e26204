//! Installs what the harness needs on a Debian bookworm machine, saying
//! what it installs. Runs every time; costs a dpkg query when nothing is
//! missing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian packages, with why we need them.
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the test kernel"),
    ("udev", "virtme-ng's guest console and exit status"),
    ("linux-source-6.12", "kernel source the patches apply to"),
    ("build-essential", "kernel and CRIU builds"),
    ("flex", "kernel build"),
    ("bison", "kernel build"),
    ("bc", "kernel build"),
    ("cpio", "kernel build"),
    ("libelf-dev", "kernel build"),
    ("libssl-dev", "kernel build"),
    ("xz-utils", "unpacking sources"),
    ("rsync", "kernel headers_install, for the selftests"),
    ("patch", "applying the patch series"),
    ("dpkg-dev", "apt-get source"),
    ("libclang-dev", "bindgen"),
    ("libprotobuf-c-dev", "CRIU build"),
    ("libprotobuf-dev", "CRIU build (descriptor.proto)"),
    ("protobuf-c-compiler", "CRIU build"),
    ("protobuf-compiler", "CRIU build"),
    ("python3-protobuf", "CRIU build"),
    ("libnl-3-dev", "CRIU build"),
    ("libnet1-dev", "CRIU build"),
    ("libcap-dev", "CRIU build"),
    ("pkg-config", "CRIU build"),
    ("libbsd-dev", "CRIU build"),
    ("libgnutls28-dev", "CRIU build"),
    ("libnftables-dev", "CRIU build"),
    ("libaio-dev", "CRIU build"),
    ("uuid-dev", "CRIU build"),
    (
        "iproute2",
        "guest topology; CRIU restores addresses and routes with ip",
    ),
    ("iptables", "CRIU's network lock and netns dump"),
    (
        "nftables",
        "the plugin's lock for SCTP in the host netns; SGi masquerade in the gtp tests",
    ),
    ("iputils-arping", "announcing a moved service address"),
    ("iputils-ping", "UE traffic checks"),
    ("socat", "third-party SCTP peer"),
    ("lksctp-tools", "SCTP peers and checksctp"),
    ("iperf3", "third-party SCTP traffic"),
    (
        "runc",
        "the container runtime podman, CRI-O and containerd drive CRIU through (runtime_runc_*)",
    ),
    (
        "podman",
        "containers checkpointed and restored as operators do it (runtime_podman_*)",
    ),
];

const CRIU_SRC_LIST: &str = "/etc/apt/sources.list.d/epcmig-criu-src.sources";
const CRIU_SRC_ENTRY: &str =
    "# Added by epcmig's `cargo vm`: CRIU's source (Debian trixie), built with criu-patches/.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// virtme-ng from PyPI, pinned: the harness depends on its CLI.
const VNG_PIP: &str = "virtme-ng==1.42";

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

/// Whether `vng` is runnable.
pub fn have_vng() -> bool {
    Command::new("vng")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Installs missing packages, the CRIU deb-src entry and virtme-ng.
pub fn ensure() -> Result<()> {
    let missing: Vec<&(&str, &str)> = PACKAGES.iter().filter(|(p, _)| !installed(p)).collect();
    let need_src = !Path::new(CRIU_SRC_LIST).exists();
    let need_vng = !have_vng();
    if missing.is_empty() && !need_src && !need_vng {
        return Ok(());
    }
    if !is_root() {
        let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
        bail!(
            "missing prerequisites (packages: {names:?}, CRIU deb-src entry: {need_src}, vng: {need_vng}); \
             run `cargo vm build` as root once to install them"
        );
    }
    if need_src {
        eprintln!(
            "setup: adding the Debian trixie deb-src entry for CRIU's source: {CRIU_SRC_LIST}"
        );
        std::fs::write(CRIU_SRC_LIST, CRIU_SRC_ENTRY).context("writing the deb-src entry")?;
    }
    if !missing.is_empty() || need_src {
        eprintln!("setup: apt-get update");
        run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    if !missing.is_empty() {
        for (p, why) in &missing {
            eprintln!("setup: installing {p} ({why})");
        }
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing.iter().map(|(p, _)| *p))
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if need_vng {
        eprintln!("setup: installing {VNG_PIP} from PyPI (boots the test kernel)");
        run(Command::new("python3").args(["-m", "pip", "install", "-q", VNG_PIP]))?;
        if !have_vng() {
            bail!(
                "virtme-ng installed but `vng` is not on PATH (PATH={:?})",
                std::env::var("PATH")
            );
        }
    }
    Ok(())
}
