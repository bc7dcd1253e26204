//! Builds CRIU from Debian's source package (trixie, 4.1.1) with the series
//! in `criu-patches/` applied. Cached by (tarball, patches).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cmd::{run_logged, run_quiet};
use super::series::Series;
use super::sources::Sources;
use crate::paths;

const RECIPE: &str = "criu-recipe-1";

/// Finds, or fetches with `apt-get source --tar-only`, the upstream tarball.
fn tarball(dl: &Path, src: &Sources) -> Result<PathBuf> {
    fs::create_dir_all(dl)?;
    let find = || -> Result<Option<PathBuf>> {
        for e in fs::read_dir(dl)? {
            let p = e?.path();
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if n.starts_with(&format!("{}_{}", src.criu.package, src.criu.upstream))
                && n.contains(".orig.tar.")
            {
                return Ok(Some(p));
            }
        }
        Ok(None)
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    let what = format!("{}/{}", src.criu.package, src.criu.suite);
    eprintln!("criu: fetching the {what} source tarball (apt-get source --tar-only {what})");
    run_quiet(Command::new("apt-get").current_dir(dl).args(["source", "--tar-only", &what]))
        .context("fetching CRIU's source; is the deb-src entry for trixie present? (`cargo vm build` adds it)")?;
    match find()? {
        Some(p) => Ok(p),
        None => {
            let got: Vec<String> = fs::read_dir(dl)?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            bail!(
                "apt-get source {what} did not bring CRIU {} (got: {got:?}); update tests/sources.toml if Debian moved on",
                src.criu.upstream
            )
        }
    }
}

/// Returns the path of the patched `criu` binary, building it if needed.
pub fn ensure() -> Result<PathBuf> {
    let src = Sources::load()?;
    let series = Series::load(&paths::root().join("criu-patches"))?;
    let cache = paths::cache().join("criu");
    let tar = tarball(&cache.join("dl"), &src)?;
    let tar_name = tar
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let key = super::key(&[RECIPE, &tar_name, &series.fingerprint()]);
    let out = cache.join("bin").join(&key);
    let bin = out.join("criu");
    if bin.exists() {
        eprintln!(
            "criu: {} + {} patch(es) (cached, {key})",
            src.criu.upstream,
            series.len()
        );
        return Ok(bin);
    }
    let build = cache.join("build").join(&key);
    if build.exists() {
        fs::remove_dir_all(&build)?;
    }
    fs::create_dir_all(&build)?;
    run_quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&build),
    )?;
    let tree = fs::read_dir(&build)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("CRIU tarball unpacked to nothing")?;
    series.apply(&tree, &build.join(".applied")).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(CRIU source: {tar_name}; patches tested with CRIU {})",
            src.criu.tested
        )
    })?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    eprintln!(
        "criu: building CRIU {} with {} patch(es)",
        src.criu.upstream,
        series.len()
    );
    run_logged(
        "criu",
        Command::new("make")
            .current_dir(&tree)
            .args([&format!("-j{jobs}"), "criu"]),
        &build.join("build.log"),
    )?;
    fs::create_dir_all(&out)?;
    let tmp = out.join("criu.tmp");
    fs::copy(tree.join("criu/criu"), &tmp)?;
    fs::rename(&tmp, &bin)?;
    // Keep the header our ABI mirror is checked against.
    fs::copy(
        tree.join("criu/include/criu-plugin.h"),
        out.join("criu-plugin.h"),
    )?;
    fs::remove_dir_all(&build).ok();
    eprintln!("criu: built ({key})");
    Ok(bin)
}
