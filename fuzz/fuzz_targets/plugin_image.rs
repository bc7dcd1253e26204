//! Fuzz target `plugin_image`: see `epcmig_fuzz::plugin_image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| epcmig_fuzz::plugin_image(data));
