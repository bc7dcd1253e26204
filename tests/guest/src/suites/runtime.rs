//! CRIU as container hosts have it: the plugin installed in CRIU's plugin
//! directory next to a CRIU other than ours.

use anyhow::{ensure, Context, Result};

use crate::suites::plugin::{Installed, DEFAULT_PLUGIN_DIR};

/// Debian bookworm's own CRIU 3.17.1 (unpacked by the harness), which
/// knows 10 plugin hooks and refuses a plugin declaring more, failing
/// every dump and restore while such a plugin is in its directory. With
/// ours installed in /usr/lib/criu, it loads the plugin and still moves a
/// TCP-only container A->B under traffic, losing nothing.
pub fn plugin_beside_bookworm_criu() -> Result<()> {
    let criu = crate::vm_dir().join("bookworm-criu");
    let criu = criu.to_string_lossy().into_owned();
    let v = std::process::Command::new(&criu)
        .arg("--version")
        .output()
        .with_context(|| format!("running {criu} (the harness unpacks Debian's criu there)"))?;
    let version = String::from_utf8_lossy(&v.stdout).into_owned();
    ensure!(
        version.contains("Version: 3.17"),
        "{criu} is not bookworm's CRIU 3.17: {version}"
    );
    let installed = Installed::new()?;
    let m = crate::criu::with_program(&criu, || crate::suites::baseline::migrate_once(true));
    drop(installed);
    let m = m.context("bookworm's criu with the plugin in its plugin directory")?;
    // Where migrate_once() put its images (baseline::work_dir("baseline")).
    let dump_log = std::path::Path::new("/tmp/epcmig/baseline/images-a/dump.log");
    let log = std::fs::read_to_string(dump_log).unwrap_or_default();
    ensure!(
        !log.contains("Corrupted plugin"),
        "criu 3.17.1 refused the plugin"
    );
    ensure!(
        log.contains("Plugin \"epcmig\""),
        "criu 3.17.1 did not load the plugin from {DEFAULT_PLUGIN_DIR}"
    );
    println!(
        "  {}: the plugin in {DEFAULT_PLUGIN_DIR} loads; a TCP container moved A->B, downtime {:.2}s",
        version.lines().next().unwrap_or_default(),
        m.downtime.as_secs_f64()
    );
    Ok(())
}
