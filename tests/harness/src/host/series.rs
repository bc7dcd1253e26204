//! A quilt-style patch series: a `series` file naming patches in order.
//! Used for both kernel-patches/ and criu-patches/. An entry may name a
//! patch in a subdirectory (`sctp/0001-....patch`): kernel-patches/ holds
//! one directory per series posted upstream, each with its cover letter.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct Series {
    dir: PathBuf,
    /// (file name, contents) in apply order.
    patches: Vec<(String, String)>,
}

impl Series {
    /// Reads `dir/series`: one patch per line (a path relative to `dir`),
    /// `#` comments, blank lines.
    pub fn load(dir: &Path) -> Result<Series> {
        let list = dir.join("series");
        let text =
            fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
        let mut patches = Vec::new();
        for line in text.lines() {
            let name = line.split('#').next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let p = dir.join(name);
            let body = fs::read_to_string(&p).with_context(|| {
                format!("{} lists {name}, which cannot be read", list.display())
            })?;
            patches.push((name.to_string(), body));
        }
        Ok(Series {
            dir: dir.to_path_buf(),
            patches,
        })
    }

    /// The patch files in apply order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.patches.iter().map(|(n, _)| self.dir.join(n)).collect()
    }

    /// No patches (the stock kernel).
    pub fn empty(dir: &Path) -> Series {
        Series {
            dir: dir.to_path_buf(),
            patches: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.patches.len()
    }

    /// Paths (relative to the tree) of files the series creates or
    /// changes under `prefix`, in order of first appearance.
    pub fn added_files(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, body) in &self.patches {
            for line in body.lines() {
                if let Some(p) = line.strip_prefix("+++ b/") {
                    let p = p.split('\t').next().unwrap_or(p).trim();
                    if p.starts_with(prefix) && !out.iter().any(|o| o == p) {
                        out.push(p.to_string());
                    }
                }
            }
        }
        out
    }

    /// Stable text that changes whenever a patch or the order changes.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for (n, b) in &self.patches {
            s.push_str(n);
            s.push('\0');
            s.push_str(b);
            s.push('\0');
        }
        s
    }

    /// Applies the series to `tree`, recording each applied patch in
    /// `state` so `unapply` can reverse exactly what was applied.
    pub fn apply(&self, tree: &Path, state: &Path) -> Result<()> {
        fs::create_dir_all(state)?;
        for (i, (name, body)) in self.patches.iter().enumerate() {
            let shown = self.dir.join(name);
            let check = patch(tree, body, &[FORWARD, "--dry-run"])?;
            if !check.0 {
                bail!(
                    "patch {} does not apply:\n{}",
                    shown.display(),
                    check.1.trim_end()
                );
            }
            let done = patch(tree, body, &[FORWARD])?;
            if !done.0 {
                bail!(
                    "patch {} failed while applying:\n{}",
                    shown.display(),
                    done.1.trim_end()
                );
            }
            // One flat file per patch, in apply order, whatever directory
            // the patch is in.
            let flat = name.replace('/', "_");
            fs::write(state.join(format!("{i:04}-{flat}")), body)?;
        }
        Ok(())
    }
}

/// Reverses what `apply` recorded in `state`, last patch first.
pub fn unapply(tree: &Path, state: &Path) -> Result<()> {
    if !state.exists() {
        return Ok(());
    }
    let mut names: Vec<PathBuf> = fs::read_dir(state)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for p in names.iter().rev() {
        let body = fs::read_to_string(p)?;
        let (ok, out) = patch(tree, &body, &[REVERSE, "--dry-run"])?;
        if ok {
            let (ok2, out2) = patch(tree, &body, &[REVERSE])?;
            if !ok2 {
                bail!("reversing {}: {}", p.display(), out2.trim_end());
            }
        } else {
            bail!("reversing {}: {}", p.display(), out.trim_end());
        }
        fs::remove_file(p)?;
    }
    Ok(())
}

/// -N: refuse a patch that is already applied (never silently reverse it);
/// -t: batch mode, never prompt.
const FORWARD: &str = "-Nt";
/// Reverse without patch(1) guessing about direction.
const REVERSE: &str = "-Rf";

fn patch(tree: &Path, body: &str, extra: &[&str]) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = Command::new("patch")
        .current_dir(tree)
        .args(["-p1", "--no-backup-if-mismatch", "-r", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running patch(1)")?;
    child
        .stdin
        .take()
        .context("patch stdin")?
        .write_all(body.as_bytes())?;
    let o = child.wait_with_output()?;
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    Ok((o.status.success(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("epcmig-series-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("tree")).expect("scratch dir");
        fs::create_dir_all(d.join("patches")).expect("scratch dir");
        d
    }

    const GOOD: &str = "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-one\n+two\n";
    const BAD: &str = "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-zzz\n+three\n";

    #[test]
    fn applies_in_order_and_reverses() {
        let d = scratch("ok");
        fs::write(d.join("tree/f.txt"), "one\n").expect("write");
        fs::write(d.join("patches/0001-good.patch"), GOOD).expect("write");
        fs::write(d.join("patches/series"), "# comment\n0001-good.patch\n\n").expect("write");
        let s = Series::load(&d.join("patches")).expect("load");
        assert_eq!(s.len(), 1);
        let state = d.join("tree/.applied");
        s.apply(&d.join("tree"), &state).expect("apply");
        assert_eq!(
            fs::read_to_string(d.join("tree/f.txt")).expect("read"),
            "two\n"
        );
        unapply(&d.join("tree"), &state).expect("unapply");
        assert_eq!(
            fs::read_to_string(d.join("tree/f.txt")).expect("read"),
            "one\n"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_patch_that_does_not_apply_is_named() {
        let d = scratch("bad");
        fs::write(d.join("tree/f.txt"), "one\n").expect("write");
        fs::write(d.join("patches/0001-good.patch"), GOOD).expect("write");
        fs::write(d.join("patches/0002-bad.patch"), BAD).expect("write");
        fs::write(
            d.join("patches/series"),
            "0001-good.patch\n0002-bad.patch\n",
        )
        .expect("write");
        let s = Series::load(&d.join("patches")).expect("load");
        let err = s
            .apply(&d.join("tree"), &d.join("tree/.applied"))
            .expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("0002-bad.patch does not apply"), "{msg}");
        // The tree is left with the good patch recorded, so it can be undone.
        unapply(&d.join("tree"), &d.join("tree/.applied")).expect("unapply");
        assert_eq!(
            fs::read_to_string(d.join("tree/f.txt")).expect("read"),
            "one\n"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_in_subdirectories_apply_and_reverse() {
        let d = scratch("subdir");
        fs::write(d.join("tree/f.txt"), "one\n").expect("write");
        fs::create_dir_all(d.join("patches/a")).expect("dir");
        fs::create_dir_all(d.join("patches/b")).expect("dir");
        fs::write(d.join("patches/a/0001-good.patch"), GOOD).expect("write");
        let third = "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-two\n+three\n";
        fs::write(d.join("patches/b/0001-third.patch"), third).expect("write");
        fs::write(
            d.join("patches/series"),
            "a/0001-good.patch\n# the second series\nb/0001-third.patch\n",
        )
        .expect("write");
        let s = Series::load(&d.join("patches")).expect("load");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.paths(),
            [
                d.join("patches/a/0001-good.patch"),
                d.join("patches/b/0001-third.patch")
            ]
        );
        let state = d.join("tree/.applied");
        s.apply(&d.join("tree"), &state).expect("apply");
        assert_eq!(
            fs::read_to_string(d.join("tree/f.txt")).expect("read"),
            "three\n"
        );
        unapply(&d.join("tree"), &state).expect("unapply");
        assert_eq!(
            fs::read_to_string(d.join("tree/f.txt")).expect("read"),
            "one\n"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_patch_file_is_named() {
        let d = scratch("missing");
        fs::write(d.join("patches/series"), "0001-nope.patch\n").expect("write");
        let err = Series::load(&d.join("patches")).err().expect("must fail");
        assert!(format!("{err:#}").contains("0001-nope.patch"));
        let _ = fs::remove_dir_all(&d);
    }
}
