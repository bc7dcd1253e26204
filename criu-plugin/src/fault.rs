//! Fault injection for the failure-path tests: `EPCMIG_FAULT=STEP[,STEP]`
//! in criu's environment makes the named steps of the plugin fail as if
//! the kernel had refused them; `kill@STEP` instead kills criu itself
//! (SIGKILL) there, as an operator or the OOM killer might. Steps are
//! listed in [`STEPS`].
//!
//! Only with the `fault-injection` feature (the harness's debug builds,
//! which the guest suites run): without it [`point`] is a no-op and the
//! library CRIU loads holds none of this (a release build of the plugin
//! reads no `EPCMIG_FAULT` and can never SIGKILL criu).

/// Every step that can be made to fail.
pub const STEPS: &[&str] = &[
    // dump
    "sctp-freeze",
    "sctp-capture",
    "sctp-lock",
    "sctp-write",
    "gtp-capture",
    "gtp-write",
    "gtp-link",
    // restore
    "sctp-restore",
    "sctp-thaw",
    "gtp-setup",
    "gtp-attach",
];

/// criu's main process, recorded when CRIU initialises the plugin: some
/// hooks run in children it forks (DUMP_EXT_LINK in the one that dumps a
/// netns), and `kill@STEP` means criu itself.
static CRIU_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Called from the plugin's init hook, in criu's main process.
pub fn record_criu_pid() {
    // SAFETY: getpid(2) cannot fail.
    let pid = unsafe { libc::getpid() };
    CRIU_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
}

/// A step failed on request.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(
    feature = "fault-injection",
    error("fault injected at step {0} (EPCMIG_FAULT)")
)]
#[cfg_attr(not(feature = "fault-injection"), error("step {0} failed"))]
pub struct Injected(pub &'static str);

/// Without the `fault-injection` feature: never fails.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_step: &'static str) -> Result<(), Injected> {
    Ok(())
}

/// Fails if `step` is named in `EPCMIG_FAULT`; kills criu if `kill@step`
/// is.
#[cfg(feature = "fault-injection")]
pub fn point(step: &'static str) -> Result<(), Injected> {
    debug_assert!(STEPS.contains(&step), "unlisted fault step {step}");
    let Ok(v) = std::env::var("EPCMIG_FAULT") else {
        return Ok(());
    };
    for s in v.split(',').map(str::trim) {
        if s == step {
            return Err(Injected(step));
        }
        if s.strip_prefix("kill@") == Some(step) {
            let pid = match CRIU_PID.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: getpid(2) cannot fail.
                0 => unsafe { libc::getpid() },
                p => p,
            };
            // SAFETY: kill(2) of criu, on request.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    Ok(())
}
