//! Fault injection for the failure-path tests: `EPCMIG_FAULT=STEP[,STEP]`
//! in criu's environment makes the named steps of the plugin fail as if
//! the kernel had refused them. Steps are listed in [`STEPS`].

/// Every step that can be made to fail.
pub const STEPS: &[&str] = &[
    // dump
    "sctp-freeze",
    "sctp-capture",
    "sctp-lock",
    "sctp-write",
    "gtp-capture",
    "gtp-write",
    // restore
    "sctp-restore",
    "sctp-thaw",
    "gtp-setup",
    "gtp-attach",
];

/// A step failed on request.
#[derive(Debug, thiserror::Error)]
#[error("fault injected at step {0} (EPCMIG_FAULT)")]
pub struct Injected(pub &'static str);

/// Fails if `step` is named in `EPCMIG_FAULT`.
pub fn point(step: &'static str) -> Result<(), Injected> {
    debug_assert!(STEPS.contains(&step), "unlisted fault step {step}");
    match std::env::var("EPCMIG_FAULT") {
        Ok(v) if v.split(',').any(|s| s.trim() == step) => Err(Injected(step)),
        _ => Ok(()),
    }
}
