//! Where things live: the workspace, the build cache, the guest's view.

use std::path::PathBuf;

/// The workspace root (this crate is at `tests/harness`).
pub fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("EPCMIG_ROOT") {
        return PathBuf::from(r);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(PathBuf::from).unwrap_or(here)
}

/// Cargo's target directory.
pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Build cache for the kernel and CRIU, shared by checkouts on this
/// machine; entries are keyed by source version and patch contents.
pub fn cache() -> PathBuf {
    if let Some(d) = std::env::var_os("EPCMIG_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("epcmig")
}

/// `target/vm`: stable paths the guest uses (criu binary, plugin dir).
pub fn vm_dir() -> PathBuf {
    target().join("vm")
}

/// Directory put first on the guest's PATH; holds our `criu`.
pub fn vm_bin() -> PathBuf {
    vm_dir().join("bin")
}

/// CRIU plugin directory holding our plugin, for `criu --lib`.
pub fn vm_plugin_dir() -> PathBuf {
    vm_dir().join("lib").join("criu")
}
