//! `cargo vm lint`: the gates CI runs besides the tests. rustfmt and
//! clippy over the workspace (warnings are errors; every `unsafe` block
//! carries its SAFETY comment), and the kernel's own `checkpatch.pl
//! --strict` over every patch of `kernel-patches/`, run from the kernel
//! tree the builds use.

use std::process::Command;

use anyhow::{Context, Result};

use super::{kernel, series::Series};
use crate::paths;

fn step(what: &str, cmd: &mut Command) -> Result<bool> {
    eprintln!("lint: {what}");
    let st = cmd
        .current_dir(paths::root())
        .status()
        .with_context(|| format!("running {what}"))?;
    if !st.success() {
        eprintln!("lint: {what} FAILED ({st})");
    }
    Ok(st.success())
}

/// Runs every gate, even after one fails; the number that failed.
pub fn run() -> Result<u8> {
    let mut failed = 0u8;
    if !step(
        "cargo fmt --check",
        Command::new("cargo").args(["fmt", "--all", "--", "--check"]),
    )? {
        failed += 1;
    }
    if !step(
        "cargo clippy -D warnings",
        Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-D",
            "clippy::undocumented_unsafe_blocks",
        ]),
    )? {
        failed += 1;
    }
    let tree = kernel::source_tree()?;
    let series = Series::load(&paths::root().join("kernel-patches"))?;
    let mut bad = Vec::new();
    for p in series.paths() {
        let out = Command::new("perl")
            .arg("scripts/checkpatch.pl")
            .args(["--strict", "--quiet"])
            .arg(&p)
            .current_dir(&tree)
            .output()
            .context("running checkpatch.pl")?;
        if !out.status.success() {
            bad.push(format!(
                "{}:\n{}",
                p.display(),
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    eprintln!(
        "lint: checkpatch --strict: {} of {} patches clean",
        series.len() - bad.len(),
        series.len()
    );
    if !bad.is_empty() {
        eprintln!("{}", bad.join("\n"));
        failed += 1;
    }
    Ok(failed)
}
