//! The CRIU plugin: CRIU dlopen()s this library and calls in through the
//! descriptor `CR_PLUGIN_DESC` (the C ABI in `include/criu_plugin.h`).
//!
//! Hooks are added by the criu-plugin issue; this descriptor already
//! follows CRIU's version/max_hooks rules so one build loads in CRIU 4.1.1
//! and later releases.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use epcmig_sys::criu_plugin as abi;

/// Name CRIU prints for this plugin in its logs.
const NAME: &[u8] = b"epcmig\0";

extern "C" fn plugin_init(_stage: c_int) -> c_int {
    0
}

extern "C" fn plugin_exit(_stage: c_int, _ret: c_int) {}

/// Descriptor with `Sync` so it can be a `static` read by CRIU.
#[repr(transparent)]
pub struct Descriptor(pub abi::cr_plugin_desc_t);

// SAFETY: the descriptor is immutable after load and only holds pointers to
// 'static data and functions.
unsafe impl Sync for Descriptor {}

/// The symbol CRIU looks up after dlopen().
#[no_mangle]
#[used]
pub static CR_PLUGIN_DESC: Descriptor = Descriptor(abi::cr_plugin_desc_t {
    name: NAME.as_ptr() as *const c_char,
    init: Some(plugin_init),
    exit: Some(plugin_exit),
    version: abi::CRIU_PLUGIN_VERSION,
    max_hooks: abi::CR_PLUGIN_HOOK__MAX_4_1,
    hooks: [ptr::null_mut::<c_void>(); abi::CR_PLUGIN_HOOK__MAX_4_1 as usize],
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_follows_criu_rules() {
        let d = &CR_PLUGIN_DESC.0;
        // 0.2.0 as major << 16 | minor << 8 | sublevel.
        assert_eq!(d.version, 0x0200);
        assert_eq!(d.max_hooks, 12);
        assert!(d.hooks.iter().all(|h| h.is_null()));
    }
}
