//! The CRIU plugin: CRIU dlopen()s this library and calls in through the
//! descriptor `CR_PLUGIN_DESC` (the C ABI in `include/criu_plugin.h`).
//!
//! Where CRIU calls in (`hooks.rs`; the work is in `sctp.rs` and `gtp.rs`):
//! - `DUMP_EXT_FILE(fd, id)`: an inet socket CRIU does not handle itself
//!   (with `criu-patches/` applied): if it is SCTP, freeze it (repair mode)
//!   and write its snapshot to `epcmig-sctp-<id>.img` in the image dir;
//! - `CHECKPOINT_DEVICES(pid)`, the tree frozen, before the network lock:
//!   the gtp devices of each netns of the tree (device, PDP table,
//!   addresses, routes, socket owners) to `epcmig-gtp-<ifindex>.img`, and
//!   the netns's forwarding sysctls and ruleset to `epcmig-netconf.img`,
//!   whether CRIU dumps that netns or not (a runtime's external one);
//! - `DUMP_EXT_LINK(ifindex, type, kind)`: a link of kind "gtp" in a netns
//!   CRIU dumps: marks that CRIU will re-create that netns's links;
//! - exit of the dump: thaw what we froze unless the dumped tasks die (if
//!   criu dies first, the guardian process of `guardian.rs` thaws them);
//! - the `setup-namespaces` action script (`epcmig-criu-action`, not a
//!   hook: no 4.1.1 hook runs before CRIU restores links): gtp devices, or
//!   placeholders for those on a process's own sockets;
//! - init of a restore: lock each association out of a netns a container
//!   runtime handed criu (it holds the address already) until its thaw;
//! - `RESTORE_EXT_FILE(id)`: inside the restored task, re-create the socket
//!   from its image, still frozen, and hand CRIU the fd;
//! - `RESUME_DEVICES_LATE(pid)`: after the whole tree is restored and the
//!   network unlocked, before the tasks run: swap placeholders for the gtp
//!   devices on the restored sockets (or, in a runtime's netns, make them
//!   whole with the sysctls and ruleset), thaw the SCTP sockets.
//!
//! A panic never crosses into CRIU: every hook body runs under
//! `catch_unwind` and a panic becomes an error return.

pub mod fault;
pub mod gtp;
mod guardian;
mod hooks;
pub use hooks::PRE_DUMP_NOTE;
pub mod images;
pub mod netconf;
pub mod netlock;
pub mod sctp;
mod task;

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use epcmig_sys::criu_plugin as abi;

/// Name CRIU prints for this plugin in its logs.
const NAME: &[u8] = b"epcmig\0";

/// Descriptor with `Sync` so it can be a `static` read by CRIU.
#[repr(transparent)]
pub struct Descriptor(pub abi::cr_plugin_desc_t);

// SAFETY: the descriptor is immutable after load and only holds pointers to
// 'static data and functions.
unsafe impl Sync for Descriptor {}

const fn hooks() -> [*mut c_void; abi::CR_PLUGIN_HOOK__MAX_4_1 as usize] {
    let mut h = [ptr::null_mut::<c_void>(); abi::CR_PLUGIN_HOOK__MAX_4_1 as usize];
    h[abi::CR_PLUGIN_HOOK__DUMP_EXT_FILE as usize] = hooks::dump_ext_file as *mut c_void;
    h[abi::CR_PLUGIN_HOOK__RESTORE_EXT_FILE as usize] = hooks::restore_ext_file as *mut c_void;
    h[abi::CR_PLUGIN_HOOK__DUMP_EXT_LINK as usize] = hooks::dump_ext_link as *mut c_void;
    h[abi::CR_PLUGIN_HOOK__RESUME_DEVICES_LATE as usize] =
        hooks::resume_devices_late as *mut c_void;
    h[abi::CR_PLUGIN_HOOK__CHECKPOINT_DEVICES as usize] = hooks::checkpoint_devices as *mut c_void;
    h
}

/// CRIU 4.1.1's 12. A CRIU that knows fewer (bookworm's 3.17.1: 10)
/// refuses the plugin, and a plugin it refuses in its plugin directory
/// fails every dump and restore on the host: so the plugin is installed in
/// the plugin directory of the CRIU built with `criu-patches/`
/// (`PLUGINDIR`, /usr/lib/epcmig/criu), never in /usr/lib/criu.
const MAX_HOOKS: u32 = abi::CR_PLUGIN_HOOK__MAX_4_1;

/// The symbol CRIU looks up after dlopen().
#[no_mangle]
#[used]
pub static CR_PLUGIN_DESC: Descriptor = Descriptor(abi::cr_plugin_desc_t {
    name: NAME.as_ptr() as *const c_char,
    init: Some(hooks::init),
    exit: Some(hooks::exit),
    version: abi::CRIU_PLUGIN_VERSION,
    max_hooks: MAX_HOOKS,
    hooks: hooks(),
});

/// For tests and other tools: the hook numbers this plugin implements.
pub fn implemented_hooks() -> Vec<usize> {
    CR_PLUGIN_DESC
        .0
        .hooks
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_null())
        .map(|(i, _)| i)
        .collect()
}

#[allow(dead_code)]
/// How long a step took, for the log lines a migration's timeline is read
/// from (`in 12.3 ms`, `in 1.234 s`).
pub(crate) fn took(since: std::time::Instant) -> String {
    let d = since.elapsed();
    if d < std::time::Duration::from_secs(1) {
        format!("in {:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("in {:.3} s", d.as_secs_f64())
    }
}

fn _assert_hook_types() {
    // The C signatures of the hooks we register (criu_plugin.h).
    let _: extern "C" fn(c_int, c_int) -> c_int = hooks::dump_ext_file;
    let _: extern "C" fn(c_int) -> c_int = hooks::restore_ext_file;
    let _: extern "C" fn(c_int, c_int, *mut c_char) -> c_int = hooks::dump_ext_link;
    let _: extern "C" fn(c_int) -> c_int = hooks::resume_devices_late;
    let _: extern "C" fn(c_int) -> c_int = hooks::checkpoint_devices;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_follows_criu_rules() {
        let d = &CR_PLUGIN_DESC.0;
        // 0.2.0 as major << 16 | minor << 8 | sublevel.
        assert_eq!(d.version, 0x0200);
        // CRIU 4.1.1's count: CHECKPOINT_DEVICES (11) is the last we use.
        assert_eq!(d.max_hooks, 12);
        assert_eq!(implemented_hooks(), vec![2, 3, 6, 9, 11]);
        assert!(implemented_hooks()
            .iter()
            .all(|&h| h < d.max_hooks as usize));
    }

    #[test]
    fn a_pre_dump_starts_and_ends_without_work() {
        // Outside criu: no image dir, no frozen sockets; a pre-dump must
        // neither fail nor reach the dump's end-of-dump thaw path.
        let d = &CR_PLUGIN_DESC.0;
        let (init, exit) = (d.init.unwrap(), d.exit.unwrap());
        let pre = abi::CR_PLUGIN_STAGE__PRE_DUMP as c_int;
        // SAFETY: our own extern "C" hooks, called as CRIU calls them.
        assert_eq!(unsafe { init(pre) }, 0);
        // SAFETY: as above.
        unsafe { exit(pre, 0) };
        assert!(PRE_DUMP_NOTE.starts_with("pre-dump:"));
    }
}
