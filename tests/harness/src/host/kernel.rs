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

/// Builds the net selftests the series adds against the patched uapi, into
/// `out/selftests`, where the guest suite finds and runs them.
///
/// A selftest is either a `.c` program and its `.sh` wrapper right under
/// tools/testing/selftests/net/, or a directory there laid out as
/// tools/testing/selftests/net/tcp_ao/ is: the `.c` files of its `lib/`
/// are a library that each `.c` file of the directory itself, one program
/// per scenario, is linked with. Programs and wrappers keep their place
/// relative to net/ (a wrapper in a directory runs `$dir/PROGRAM` and
/// sources `$dir/../lib.sh`); the TESTS manifest lists the wrappers, each
/// a guest test `kselftest_<wrapper stem>`.
fn build_selftests(tree: &Path, series: &Series, out: &Path) -> Result<()> {
    let dest = out.join("selftests");
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest)?;
    let plan = SelftestPlan::new(&series.added_files(NET_SELFTESTS));
    if plan.is_empty() {
        return Ok(());
    }
    let headers = out.join("headers");
    run_quiet(
        Command::new("make")
            .current_dir(tree)
            .args(["-s", "ARCH=x86_64", "headers_install"])
            .arg(format!("INSTALL_HDR_PATH={}", headers.display())),
    )?;
    let net = tree.join(NET_SELFTESTS);
    for p in &plan.programs {
        eprintln!("kernel: building selftest {}", p.name);
        let to = dest.join(&p.name);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut gcc = Command::new("gcc");
        gcc.args(["-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-I{}", headers.join("include").display()))
            .arg(format!(
                "-I{}",
                tree.join("tools/testing/selftests").display()
            ));
        if let Some(dir) = Path::new(&p.name)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            gcc.arg(format!("-I{}", net.join(dir).display()));
        }
        gcc.arg("-o").arg(&to);
        for s in &p.sources {
            gcc.arg(net.join(s));
        }
        run_quiet(gcc.arg("-lpthread")).with_context(|| format!("building selftest {}", p.name))?;
    }
    use std::os::unix::fs::PermissionsExt;
    for w in &plan.wrappers {
        let to = dest.join(w);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(net.join(w), &to)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
    }
    // The wrappers source the net selftests' shared helpers.
    let lib = net.join("lib.sh");
    if lib.exists() {
        fs::copy(&lib, dest.join("lib.sh"))?;
    }
    // The guest runs what this manifest lists, one test per wrapper.
    fs::write(dest.join("TESTS"), plan.wrappers.join("\n") + "\n")?;
    Ok(())
}

const NET_SELFTESTS: &str = "tools/testing/selftests/net/";

/// A selftest program: its path relative to net/ without `.c` (also where
/// it goes under `selftests/`) and its sources, relative to net/.
#[derive(Debug, PartialEq, Eq)]
struct SelftestProgram {
    name: String,
    sources: Vec<String>,
}

/// What [`build_selftests`] builds and copies, from the files the series
/// adds or changes under tools/testing/selftests/net/.
#[derive(Debug, Default)]
struct SelftestPlan {
    programs: Vec<SelftestProgram>,
    /// Wrappers relative to net/, in order of first appearance.
    wrappers: Vec<String>,
}

impl SelftestPlan {
    fn new(files: &[String]) -> SelftestPlan {
        let rel: Vec<&str> = files
            .iter()
            .filter_map(|f| f.strip_prefix(NET_SELFTESTS))
            .collect();
        let mut plan = SelftestPlan::default();
        for f in &rel {
            let parts: Vec<&str> = f.split('/').collect();
            if f.ends_with(".sh") && parts.len() <= 2 {
                plan.wrappers.push(f.to_string());
                continue;
            }
            let Some(stem) = f.strip_suffix(".c") else {
                continue;
            };
            match parts.as_slice() {
                [_] => plan.programs.push(SelftestProgram {
                    name: stem.to_string(),
                    sources: vec![f.to_string()],
                }),
                [dir, _] => {
                    let lib = format!("{dir}/lib/");
                    let mut sources = vec![f.to_string()];
                    sources.extend(
                        rel.iter()
                            .filter(|l| l.starts_with(&lib) && l.ends_with(".c"))
                            .map(|l| l.to_string()),
                    );
                    plan.programs.push(SelftestProgram {
                        name: stem.to_string(),
                        sources,
                    });
                }
                // A directory's lib/ (or anything deeper) is no program.
                _ => {}
            }
        }
        plan
    }

    fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.wrappers.is_empty()
    }
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
    use super::{unmet, SelftestPlan, SelftestProgram};

    #[test]
    fn selftest_programs_alone_or_in_a_directory_with_its_library() {
        let files: Vec<String> = [
            "tools/testing/selftests/net/Makefile",
            "tools/testing/selftests/net/gtp_sockets.c",
            "tools/testing/selftests/net/gtp_sockets.sh",
            "tools/testing/selftests/net/sctp_repair/lib/repair.c",
            "tools/testing/selftests/net/sctp_repair/repair.h",
            "tools/testing/selftests/net/sctp_repair/basic.c",
            "tools/testing/selftests/net/sctp_repair/sctp_repair.sh",
            "tools/testing/selftests/net/sctp_repair/lib/netns.c",
            "tools/testing/selftests/net/sctp_repair/queues.c",
            "tools/testing/selftests/net/sctp_repair/Makefile",
            "MAINTAINERS",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let plan = SelftestPlan::new(&files);
        let lib = |p: &str| {
            vec![
                p.to_string(),
                "sctp_repair/lib/repair.c".to_string(),
                "sctp_repair/lib/netns.c".to_string(),
            ]
        };
        assert_eq!(
            plan.programs,
            [
                SelftestProgram {
                    name: "gtp_sockets".into(),
                    sources: vec!["gtp_sockets.c".into()],
                },
                SelftestProgram {
                    name: "sctp_repair/basic".into(),
                    sources: lib("sctp_repair/basic.c"),
                },
                SelftestProgram {
                    name: "sctp_repair/queues".into(),
                    sources: lib("sctp_repair/queues.c"),
                },
            ]
        );
        assert_eq!(
            plan.wrappers,
            ["gtp_sockets.sh", "sctp_repair/sctp_repair.sh"]
        );
    }

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
