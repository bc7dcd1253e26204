//! Fuzz target `gtp_table`: see `epcmig_fuzz::gtp_table`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| epcmig_fuzz::gtp_table(data));
