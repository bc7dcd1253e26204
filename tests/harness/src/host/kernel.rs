//! Builds the patched test kernel: Debian's linux-source-6.12 + the series
//! in `kernel-patches/` + our config fragment on top of `tinyconfig`.
//!
//! The bzImage is cached by (Debian version, patches, fragment). The source
//! tree is kept per Debian version and re-patched in place (previous series
//! reversed, new one applied) so a patch change rebuilds incrementally.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cmd::{run_logged, run_quiet};
use super::series::Series;
use super::sources::Sources;
use crate::paths;

/// Bump when the build recipe below changes in a way that alters output.
const RECIPE: &str = "kernel-recipe-3";
const FRAGMENT: &str = "epcmig.config";
/// Merged after [`FRAGMENT`] for [`Variant::Hardened`].
const HARDENED_FRAGMENT: &str = "epcmig-hardened.config";
/// Merged after [`FRAGMENT`] for [`Variant::Bench`].
const BENCH_FRAGMENT: &str = "epcmig-bench.config";
const TREE: &str = "linux-source-6.12";

/// A built kernel.
pub struct Kernel {
    pub bzimage: PathBuf,
    pub release: String,
    /// Selftests added by the series, built against its uapi headers.
    pub selftests: PathBuf,
}

fn debian_version(pkg: &str) -> Result<String> {
    let v = run_quiet(Command::new("dpkg-query").args(["-W", "-f", "${Version}", pkg]))?;
    if v.trim().is_empty() {
        bail!("package {pkg} is not installed");
    }
    Ok(v.trim().to_string())
}

/// Which kernel to build from the same source and config.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// With kernel-patches/series applied: the kernel under test.
    Patched,
    /// Without our patches (release suffix `-stock`): to check how the
    /// tools behave on a kernel without SCTP repair mode.
    Stock,
    /// The patched kernel with KASAN and fault injection (release suffix
    /// `-hardened`): for the fuzz loops.
    Hardened,
    /// The patched kernel without lockdep and object debugging (release
    /// suffix `-bench`): what `cargo vm bench` measures.
    Bench,
}

pub fn ensure(variant: Variant) -> Result<Kernel> {
    let src = Sources::load()?;
    let root = paths::root();
    let dir = root.join("kernel-patches");
    let series = match variant {
        Variant::Patched | Variant::Hardened | Variant::Bench => Series::load(&dir)?,
        Variant::Stock => Series::empty(&dir),
    };
    let localversion = match variant {
        Variant::Patched => "",
        Variant::Stock => "-stock",
        Variant::Hardened => "-hardened",
        Variant::Bench => "-bench",
    };
    let mut fragment_paths = vec![dir.join(FRAGMENT)];
    match variant {
        Variant::Hardened => fragment_paths.push(dir.join(HARDENED_FRAGMENT)),
        Variant::Bench => fragment_paths.push(dir.join(BENCH_FRAGMENT)),
        Variant::Patched | Variant::Stock => {}
    }
    let mut fragment = String::new();
    for p in &fragment_paths {
        fragment += &fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    }
    let version = debian_version(&src.kernel.package)?;
    if version != src.kernel.tested {
        eprintln!(
            "kernel: building {} {version} (patches last tested with {})",
            src.kernel.package, src.kernel.tested
        );
    }
    let key = super::key(&[
        RECIPE,
        &version,
        &series.fingerprint(),
        &fragment,
        localversion,
    ]);
    let cache = paths::cache().join("kernel");
    let out = cache.join("images").join(&key);
    let tree = cache.join(format!("src-{}", sanitize(&version))).join(TREE);
    let done = out.join("bzImage");
    if done.exists() {
        let release = fs::read_to_string(out.join("release"))?.trim().to_string();
        eprintln!("kernel: {release} (cached, {key})");
        return Ok(Kernel {
            bzimage: done,
            release,
            selftests: out.join("selftests"),
        });
    }

    prepare_tree(
        &src.kernel.tarball,
        &tree,
        &series,
        &version,
        &src.kernel.tested,
    )?;
    configure(&tree, &fragment_paths, &fragment)?;

    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    eprintln!("kernel: building bzImage with {jobs} jobs (about 4 min on 2 cores)");
    let log = cache.join("build.log");
    run_logged(
        "kernel",
        Command::new("make").current_dir(&tree).args([
            "ARCH=x86_64",
            &format!("LOCALVERSION={localversion}"),
            &format!("-j{jobs}"),
            "bzImage",
        ]),
        &log,
    )?;
    let release = run_quiet(Command::new("make").current_dir(&tree).args([
        "-s",
        "ARCH=x86_64",
        &format!("LOCALVERSION={localversion}"),
        "kernelrelease",
    ]))?
    .trim()
    .to_string();
    fs::create_dir_all(&out)?;
    build_selftests(&tree, &series, &out)?;
    fs::copy(tree.join(".config"), out.join("config"))?;
    fs::write(out.join("release"), format!("{release}\n"))?;
    // Copy last: its presence marks the entry complete.
    let tmp = out.join("bzImage.tmp");
    fs::copy(tree.join("arch/x86/boot/bzImage"), &tmp)?;
    fs::rename(&tmp, &done)?;
    eprintln!("kernel: built {release} ({key})");
    Ok(Kernel {
        bzimage: done,
        release,
        selftests: out.join("selftests"),
    })
}

/// Builds the net selftests the series adds (a `.c` program and its `.sh`
/// wrapper under tools/testing/selftests/net/) against the patched uapi,
/// into `out/selftests`, where the guest suite finds and runs them.
fn build_selftests(tree: &Path, series: &Series, out: &Path) -> Result<()> {
    let dest = out.join("selftests");
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest)?;
    let files = series.added_files("tools/testing/selftests/net/");
    if files.is_empty() {
        return Ok(());
    }
    let mut wrappers = Vec::new();
    let headers = out.join("headers");
    run_quiet(
        Command::new("make")
            .current_dir(tree)
            .args(["-s", "ARCH=x86_64", "headers_install"])
            .arg(format!("INSTALL_HDR_PATH={}", headers.display())),
    )?;
    for f in &files {
        let src = tree.join(f);
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(stem) = name.strip_suffix(".c") {
            eprintln!("kernel: building selftest {stem}");
            run_quiet(
                Command::new("gcc")
                    .args(["-O2", "-Wall", "-Wextra", "-Werror"])
                    .arg(format!("-I{}", headers.join("include").display()))
                    .arg(format!(
                        "-I{}",
                        tree.join("tools/testing/selftests").display()
                    ))
                    .arg("-o")
                    .arg(dest.join(stem))
                    .arg(&src)
                    .arg("-lpthread"),
            )
            .with_context(|| format!("building selftest {f}"))?;
        } else if name.ends_with(".sh") {
            let to = dest.join(&name);
            fs::copy(&src, &to)?;
            wrappers.push(name.clone());
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
        }
    }
    // The wrappers source the net selftests' shared helpers.
    let lib = tree.join("tools/testing/selftests/net/lib.sh");
    if lib.exists() {
        fs::copy(&lib, dest.join("lib.sh"))?;
    }
    // The guest runs what this manifest lists, one test per wrapper.
    fs::write(dest.join("TESTS"), wrappers.join("\n") + "\n")?;
    Ok(())
}

/// Options whose final value in `fragment` (later lines win, as in
/// merge_config.sh) the `.config` text does not have.
fn unmet(fragment: &str, config: &str) -> Vec<String> {
    let mut want: Vec<(&str, String)> = Vec::new();
    for l in fragment.lines().map(str::trim) {
        let (name, line) = if let Some(n) = l
            .strip_prefix("# ")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            (n, l.to_string())
        } else if l.starts_with("CONFIG_") {
            (l.split('=').next().unwrap_or(l), l.to_string())
        } else {
            continue;
        };
        want.retain(|(n, _)| *n != name);
        want.push((name, line));
    }
    let have: std::collections::HashSet<&str> = config.lines().collect();
    want.into_iter()
        .filter(|(name, line)| {
            if line.starts_with('#') {
                // Off: either "is not set" or absent altogether.
                have.iter().any(|h| h.starts_with(&format!("{name}=")))
            } else {
                !have.contains(line.as_str())
            }
        })
        .map(|(_, line)| line)
        .collect()
}

/// The unpacked (and patched) kernel source tree the builds use, if one
/// exists: `scripts/checkpatch.pl` runs from it.
pub fn source_tree() -> Result<PathBuf> {
    let src = Sources::load()?;
    let version = debian_version(&src.kernel.package)?;
    let tree = paths::cache()
        .join("kernel")
        .join(format!("src-{}", sanitize(&version)))
        .join(TREE);
    if !tree.join("scripts/checkpatch.pl").exists() {
        anyhow::bail!(
            "no kernel source at {} (`cargo vm build` unpacks it)",
            tree.display()
        );
    }
    Ok(tree)
}

fn sanitize(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Brings `tree` to pristine source + `series`.
fn prepare_tree(
    tarball: &str,
    tree: &Path,
    series: &Series,
    version: &str,
    tested: &str,
) -> Result<()> {
    let state = tree.join(".epcmig-applied");
    if tree.exists() {
        if let Err(e) = series::unapply(tree, &state) {
            eprintln!("kernel: cannot reverse the previous series ({e:#}); unpacking afresh");
            fs::remove_dir_all(tree)?;
        }
    }
    if !tree.exists() {
        let parent = tree.parent().context("tree has a parent")?;
        fs::create_dir_all(parent)?;
        eprintln!("kernel: unpacking {tarball}");
        run_quiet(
            Command::new("tar")
                .arg("-xf")
                .arg(tarball)
                .arg("-C")
                .arg(parent),
        )?;
        if !tree.exists() {
            bail!("{tarball} did not unpack to {}", tree.display());
        }
    }
    series.apply(tree, &state).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(kernel source: linux-source-6.12 {version}; patches tested with {tested})"
        )
    })
}

use super::series;

/// tinyconfig + fragment + olddefconfig, then checks every option of the
/// fragment survived (Kconfig silently drops what it cannot satisfy).
fn configure(tree: &Path, fragment_paths: &[PathBuf], fragment: &str) -> Result<()> {
    run_quiet(
        Command::new("make")
            .current_dir(tree)
            .args(["ARCH=x86_64", "tinyconfig"]),
    )?;
    run_quiet(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(tree)
            .args(["-m", ".config"])
            .args(fragment_paths),
    )?;
    run_quiet(
        Command::new("make")
            .current_dir(tree)
            .args(["ARCH=x86_64", "olddefconfig"]),
    )?;
    let config = fs::read_to_string(tree.join(".config"))?;
    let missing = unmet(fragment, &config);
    if !missing.is_empty() {
        let names: Vec<String> = fragment_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        bail!(
            "kernel config: options of {} not in the final .config (unknown or unmet dependencies): {}",
            names.join(" + "),
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unmet;

    #[test]
    fn later_fragment_lines_win_and_off_means_absent_or_not_set() {
        let frag = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_A is not set\n# CONFIG_C is not set\n";
        assert!(unmet(frag, "# CONFIG_A is not set\nCONFIG_B=y\n").is_empty());
        assert_eq!(
            unmet(frag, "CONFIG_A=y\nCONFIG_B=y\n"),
            ["# CONFIG_A is not set"]
        );
        assert_eq!(
            unmet(frag, "CONFIG_C=y\n"),
            ["CONFIG_B=y", "# CONFIG_C is not set"]
        );
    }
}
