//! `epcmig-criu-action`: CRIU's action script for the plugin's gtp devices.
//!
//! Give it to `criu restore --action-script PATH` (or `action-script PATH`
//! in CRIU's configuration file). CRIU runs it at every step with the step
//! in `CRTOOLS_SCRIPT_ACTION`; it acts on `setup-namespaces` only: the
//! restored tree's netns exists (`CRTOOLS_INIT_PID`) and CRIU is about to
//! restore its links, and every gtp link must exist by then with the same
//! ifindex (see `criu-plugin/src/gtp.rs`). Its output goes to CRIU's log; a
//! failure makes CRIU abort the restore before anything else is made.

use std::os::fd::AsRawFd;
use std::process::ExitCode;

fn main() -> ExitCode {
    let action = std::env::var("CRTOOLS_SCRIPT_ACTION").unwrap_or_default();
    if action.is_empty() {
        eprintln!(
            "epcmig-criu-action: CRTOOLS_SCRIPT_ACTION is not set; \
             this program is run by criu (criu restore --action-script {})",
            std::env::args().next().unwrap_or_default()
        );
        return ExitCode::from(2);
    }
    if action != "setup-namespaces" {
        return ExitCode::SUCCESS;
    }
    match setup_namespaces() {
        Ok(lines) => {
            for l in lines {
                eprintln!("epcmig-criu-action: {l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("epcmig-criu-action: setup-namespaces: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setup_namespaces() -> Result<Vec<String>, String> {
    let dir = std::env::var("CRTOOLS_IMAGE_DIR")
        .map_err(|_| "CRTOOLS_IMAGE_DIR is not set".to_string())?;
    let pid: u32 = std::env::var("CRTOOLS_INIT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("CRTOOLS_INIT_PID is not set to a pid")?;
    let d = std::fs::File::open(&dir).map_err(|e| format!("image directory {dir}: {e}"))?;
    epcmig_criu::gtp::setup_namespaces(d.as_raw_fd(), pid).map_err(|e| e.to_string())
}
