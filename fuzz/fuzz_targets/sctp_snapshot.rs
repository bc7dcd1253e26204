//! Fuzz target `sctp_snapshot`: see `epcmig_fuzz::sctp_snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| epcmig_fuzz::sctp_snapshot(data));
