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

const RECIPE: &str = "criu-recipe-2";

/// The plugin directory our CRIU looks in when no `libdir` is configured
/// (compiled in with `PLUGINDIR`). Not Debian's `/usr/lib/criu`: a CRIU
/// without our patches (bookworm's 3.17.1 knows 10 hooks, the plugin
/// declares 12) refuses every dump and restore while a plugin it cannot
/// load sits in its directory, so ours stays out of its way. The guest
/// suite's `PLUGIN_DIR` and the README name the same directory.
pub const PLUGIN_DIR: &str = "/usr/lib/epcmig/criu";

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
        Command::new("make").current_dir(&tree).args([
            &format!("-j{jobs}"),
            &format!("PLUGINDIR={PLUGIN_DIR}"),
            "criu",
        ]),
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
    check_abi(&out.join("criu-plugin.h"))?;
    Ok(bin)
}

/// Enum entries (explicit `NAME = N` or implicitly numbered) and
/// `#define NAME N` lines of a C header.
fn numbers(text: &str) -> std::collections::BTreeMap<String, u32> {
    let mut m = std::collections::BTreeMap::new();
    let parse = |v: &str| -> Option<u32> {
        match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    };
    // The value the next implicitly numbered enum entry gets, inside an enum.
    let mut next: Option<u32> = None;
    for line in text.lines() {
        let line = line
            .split("/*")
            .next()
            .unwrap_or("")
            .split("//")
            .next()
            .unwrap_or("")
            .trim();
        if line.starts_with("enum") && line.contains('{') {
            next = Some(0);
            continue;
        }
        if line.starts_with('}') {
            next = None;
            continue;
        }
        if let Some(rest) = line.strip_prefix("#define ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(v), None) = (it.next(), it.next(), it.next()) {
                if let Some(v) = parse(v) {
                    m.insert(n.to_string(), v);
                }
            }
            continue;
        }
        let Some(n) = next else { continue };
        let entry = line.trim_end_matches(',');
        if entry.is_empty() {
            continue;
        }
        if let Some((name, v)) = entry.split_once('=') {
            if let Some(v) = parse(v.trim()) {
                m.insert(name.trim().to_string(), v);
                next = Some(v + 1);
            }
        } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            m.insert(entry.to_string(), n);
            next = Some(n + 1);
        }
    }
    m
}

/// Our `include/criu_plugin.h` must agree with the CRIU we build on every
/// hook and stage number and on the descriptor version.
pub fn check_abi(criu_header: &Path) -> Result<()> {
    let theirs = numbers(
        &fs::read_to_string(criu_header)
            .with_context(|| format!("reading {}", criu_header.display()))?,
    );
    let ours_path = paths::root().join("include/criu_plugin.h");
    let ours = numbers(&fs::read_to_string(&ours_path)?);
    let mut bad = Vec::new();
    for (name, v) in &ours {
        if name.starts_with("CR_PLUGIN_HOOK__MAX") {
            continue;
        }
        if let Some(t) = theirs.get(name) {
            if t != v {
                bad.push(format!("{name}: ours {v}, CRIU's {t}"));
            }
        } else if name.starts_with("CR_PLUGIN_") {
            bad.push(format!("{name}: not in CRIU's header"));
        }
    }
    let ver = |k: &str| theirs.get(k).copied().unwrap_or(u32::MAX);
    let criu_ver = (ver("CRIU_PLUGIN_VERSION_MAJOR") << 16)
        + (ver("CRIU_PLUGIN_VERSION_MINOR") << 8)
        + ver("CRIU_PLUGIN_VERSION_SUBLEVEL");
    if ours.get("CRIU_PLUGIN_VERSION") != Some(&criu_ver) {
        bad.push(format!(
            "CRIU_PLUGIN_VERSION: ours {:?}, CRIU's {criu_ver:#x}",
            ours.get("CRIU_PLUGIN_VERSION")
        ));
    }
    if !bad.is_empty() {
        anyhow::bail!(
            "{} disagrees with {}:\n  {}",
            ours_path.display(),
            criu_header.display(),
            bad.join("\n  ")
        );
    }
    Ok(())
}

/// Debian bookworm's own CRIU (3.17.1, which knows 10 plugin hooks): the
/// guest runs it with our plugin in its plugin directory, to show that
/// installing the plugin does not break CRIU for other containers. The
/// package is downloaded and unpacked into the cache, not installed: its
/// headers in /usr/include would shadow the ones CRIU's build uses.
/// Returns the path of its `criu` binary.
pub fn bookworm() -> Result<PathBuf> {
    let dir = paths::cache().join("bookworm-criu");
    let bin = dir.join("root/usr/sbin/criu");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("criu: fetching Debian bookworm's criu package (apt-get download criu)");
    let dl = dir.join("dl");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl)?;
    run_quiet(
        Command::new("apt-get")
            .current_dir(&dl)
            .args(["download", "criu"]),
    )
    .context("downloading Debian's criu package")?;
    let deb = fs::read_dir(&dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download criu brought no .deb")?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    run_quiet(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .context("unpacking Debian's criu package")?;
    if !bin.exists() {
        bail!("Debian's criu package has no usr/sbin/criu");
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::numbers;

    #[test]
    fn header_numbers_are_read_from_enums_and_defines() {
        let m = numbers(
            "#define A 0x0200\nenum {\n\tCR_X = 3, /* c */\n\tCR_Y = 4,\n};\n#define F(a) (a)\n",
        );
        assert_eq!(m.get("A"), Some(&0x200));
        assert_eq!(m.get("CR_X"), Some(&3));
        assert_eq!(m.get("CR_Y"), Some(&4));
        assert!(!m.contains_key("F(a)"));
    }

    #[test]
    fn our_header_matches_criu_4_1_numbering() {
        let ours = std::fs::read_to_string(crate::paths::root().join("include/criu_plugin.h"))
            .unwrap_or_default();
        let m = numbers(&ours);
        assert_eq!(m.get("CR_PLUGIN_HOOK__DUMP_EXT_FILE"), Some(&2));
        assert_eq!(m.get("CR_PLUGIN_HOOK__DUMP_EXT_LINK"), Some(&6));
        assert_eq!(m.get("CR_PLUGIN_HOOK__RESUME_DEVICES_LATE"), Some(&9));
        assert_eq!(m.get("CR_PLUGIN_HOOK__MAX_4_1"), Some(&12));
    }
}
