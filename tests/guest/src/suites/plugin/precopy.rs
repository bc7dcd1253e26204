//! Pre-copy (issue 19, item 3): `criu pre-dump --track-mem` rounds copy
//! the EPC's memory to host B while it runs (by CRIU's page server on B,
//! or into local directories sent over the A-B link), then a short final
//! `criu dump --lib --prev-images-dir` moves what changed since and the
//! rest of the state: the SCTP associations and gtp0 go in the final dump
//! only (a pre-dump calls no hook of the plugin but its init).
//!
//! Layout, the same relative links on both hosts (CRIU follows an images
//! dir's `parent` symlink, made by `--prev-images-dir`, relative to that
//! dir): `a/pre1`, `a/pre2`, `a/final` on A; `b/pre1`, `b/pre2`,
//! `b/final` on B, each `parent` pointing at `../pre<k-1>`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::criu;
use crate::net::{self, HOST_A, HOST_B};
use crate::timeline::Timeline;

use super::epc::*;
use super::*;

/// Where the pre-dumps' (and the final dump's) pages go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Via {
    /// `criu page-server` on B, a fresh one per dump (it serves one
    /// client, then exits): pages never touch A's disk.
    PageServer,
    /// Images in directories on A, each sent to B by
    /// [`crate::transfer::send_dir`] (`EPCMIG_PRECOPY_VIA=local`): the
    /// fallback if the page server misbehaves.
    LocalDirs,
}

impl Via {
    /// `EPCMIG_PRECOPY_VIA`: `page-server` (the default) or `local`.
    pub fn from_env() -> Result<Via> {
        match std::env::var("EPCMIG_PRECOPY_VIA").as_deref() {
            Err(_) | Ok("page-server") => Ok(Via::PageServer),
            Ok("local") => Ok(Via::LocalDirs),
            Ok(other) => bail!("EPCMIG_PRECOPY_VIA={other:?}: expected page-server or local"),
        }
    }
}

/// Pre-dump rounds before the final dump: the first copies all of the
/// ballast, the second what changed during the first (the dirtier's pages
/// and little more); a third would only copy the dirtier's pages again.
pub const ROUNDS: usize = 2;

/// The EPC pre-copy is measured on: 100 MiB of touched memory, 10 MiB of
/// it kept dirty.
pub const BALLAST: Ballast = Ballast {
    mb: 100,
    dirty_mb: 10,
};

/// B's page servers listen here (the image transfer uses 7100).
const PAGE_SERVER_PORT: u16 = 7200;

/// What the plugin logs in a pre-dump (`epcmig_criu::PRE_DUMP_NOTE`
/// starts so).
const PLUGIN_PRE_DUMP_NOTE: &str = "epcmig: pre-dump: memory only";

fn round_dir(k: usize) -> String {
    format!("pre{k}")
}

/// The options that send a dump's pages to B's page server.
fn to_page_server() -> Vec<String> {
    [
        "--page-server",
        "--address",
        &net::host_addr(HOST_B).to_string(),
        "--port",
        &PAGE_SERVER_PORT.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A page server on B for the dump whose images go to `b`, with its
/// parent `prev` (relative to `b`) when there is one.
fn page_server_for(b: &Path, prev: Option<&str>) -> Result<criu::PageServer> {
    let extra: Vec<&str> = prev.map_or(vec![], |p| vec!["--prev-images-dir", p]);
    criu::page_server(HOST_B, b, net::host_addr(HOST_B), PAGE_SERVER_PORT, &extra)
}

/// The bytes of the images in `dir` (logs and pid files left out): what
/// a page server received, or a directory sent.
fn image_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(e.path())?;
        if meta.is_file() && !name.ends_with(".log") && !name.ends_with(".pid") {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Links `dir/parent` to `prev` on B, as `--prev-images-dir` did on A
/// (the image transfer sends regular files only).
fn link_parent(dir: &Path, prev: &str) -> Result<()> {
    let link = dir.join("parent");
    std::os::unix::fs::symlink(prev, &link)
        .with_context(|| format!("linking {} to {prev}", link.display()))
}

/// Pre-dump round `k` (from 1) of the rig's process, `--lib` and
/// `--track-mem`, into `dir/a/pre<k>` with its pages to `dir/b/pre<k>`
/// by `via`; the EPC runs on. Returns the bytes sent to B.
fn predump_round(rig: &EpcRig, dir: &Path, k: usize, via: Via) -> Result<u64> {
    let (a, b) = (
        dir.join("a").join(round_dir(k)),
        dir.join("b").join(round_dir(k)),
    );
    let prev = (k > 1).then(|| format!("../{}", round_dir(k - 1)));
    let lib = plugin_dir();
    let mut extra: Vec<String> = vec!["--lib".into(), lib, "--track-mem".into()];
    if let Some(p) = &prev {
        extra.extend(["--prev-images-dir".into(), p.clone()]);
    }
    let what = format!("pre-dump round {k} ({via:?})");
    match via {
        Via::PageServer => {
            let mut server = page_server_for(&b, prev.as_deref()).with_context(|| what.clone())?;
            extra.extend(to_page_server());
            let args: Vec<&str> = extra.iter().map(String::as_str).collect();
            criu::pre_dump(rig.at, rig.pid, &a, &args).with_context(|| what.clone())?;
            server
                .wait()
                .with_context(|| format!("{what}: the page server on B"))?;
            image_bytes(&b).with_context(|| what.clone())
        }
        Via::LocalDirs => {
            let args: Vec<&str> = extra.iter().map(String::as_str).collect();
            criu::pre_dump(rig.at, rig.pid, &a, &args).with_context(|| what.clone())?;
            let (_, bytes) =
                crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &a, &b)
                    .with_context(|| format!("{what}: sending its images to B"))?;
            if let Some(p) = &prev {
                link_parent(&b, p)?;
            }
            Ok(bytes)
        }
    }
}

/// The pre-dump rounds, each followed by `after(rig, k)`; each a span of
/// `tl` when given. Returns the bytes sent to B.
fn predump_rounds(
    rig: &mut EpcRig,
    dir: &Path,
    via: Via,
    mut tl: Option<&mut Timeline>,
    mut after: impl FnMut(&mut EpcRig, usize) -> Result<()>,
) -> Result<u64> {
    let mut total = 0;
    for k in 1..=ROUNDS {
        let from = Instant::now();
        let bytes = predump_round(rig, dir, k, via)?;
        let to = Instant::now();
        println!(
            "  pre-dump round {k}: {:.2}s, {bytes} bytes to B ({via:?}), the EPC running",
            (to - from).as_secs_f64()
        );
        if let Some(tl) = tl.as_deref_mut() {
            tl.span(
                &format!("pre-dump round {k} ({} MiB to B, EPC running)", bytes >> 20),
                from,
                to,
            );
        }
        total += bytes;
        after(rig, k)?;
    }
    Ok(total)
}

/// The final dump after [`ROUNDS`] pre-dumps (`pre_copied` bytes sent
/// by them): `criu dump --lib --track-mem --prev-images-dir ../pre<K>`,
/// the pages that changed to B (by `via`), the source retired, the other
/// images over the A-B link into the same directory on B.
fn final_move(
    rig: &mut EpcRig,
    dir: &Path,
    tl: &mut Timeline,
    via: Via,
    pre_copied: u64,
) -> Result<Moved> {
    let (a, b) = (dir.join("a/final"), dir.join("b/final"));
    let prev = format!("../{}", round_dir(ROUNDS));
    let mut extra: Vec<String> = ["--track-mem", "--prev-images-dir", &prev]
        .map(String::from)
        .to_vec();
    let mut server = match via {
        Via::PageServer => {
            extra.extend(to_page_server());
            Some(page_server_for(&b, Some(&prev)).context("the final dump")?)
        }
        Via::LocalDirs => None,
    };
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let checkpoint = rig
        .dump_with(&a, &args, &[])
        .with_context(|| format!("the final dump ({via:?})"))?;
    let dumped = Instant::now();
    let mut paged = 0;
    if let Some(server) = server.as_mut() {
        server
            .wait()
            .context("the final dump: the page server on B")?;
        paged = image_bytes(&b).context("the final dump")?;
        // Its pages went to B: none may be in A's directory.
        for e in std::fs::read_dir(&a)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            ensure!(
                !name.starts_with("pages-") && !name.starts_with("pagemap-"),
                "the final dump wrote {name} on A although sent to the page server"
            );
        }
    }
    let t_retire = Instant::now();
    rig.retire_source()?;
    let (transfer, sent_bytes) =
        crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &a, &b)
            .context("the final dump: sending its images to B")?;
    let sent = Instant::now();
    if via == Via::LocalDirs {
        link_parent(&b, &prev)?;
    }
    tl.dump_log_at(&read_log(&a.join("dump.log"))?, t0, checkpoint);
    tl.span("final pages received by B's page server", dumped, t_retire);
    tl.span("source container removed", t_retire, sent - transfer);
    tl.span("image transfer (A->B link)", sent - transfer, sent);
    let frozen = paged + sent_bytes;
    println!(
        "  final dump {:.2}s: {frozen} bytes to B after the freeze ({paged} by the page server), \
         {pre_copied} before it",
        checkpoint.as_secs_f64()
    );
    Ok(Moved {
        checkpoint,
        transfer: (t_retire - dumped) + transfer,
        bytes: pre_copied + frozen,
        pre_copied,
        img_b: b,
        sent,
    })
}

/// A pre-copy migration of the MME + SPGW container holding [`BALLAST`],
/// under SCTP and UE traffic, with the checks of a plain one
/// ([`EpcRig::migrate`]).
pub(super) fn precopy_migrate(via: Via) -> Result<EpcFigures> {
    let rig = EpcRig::start_with(
        GtpSockets::Process,
        true,
        crate::suites::gtp::N_UES,
        BALLAST,
    )?;
    let dir = crate::suites::baseline::work_dir("precopy-epc")?;
    rig.migrate(&dir, "precopy-epc", "precopy", |rig, dir, tl| {
        let pre = predump_rounds(rig, dir, via, Some(&mut *tl), |_, _| Ok(()))?;
        final_move(rig, dir, tl, via, pre)
    })
}

/// A plain migration of the same EPC as [`precopy_migrate`]'s (what its
/// downtime is measured against).
pub fn plain_100mb_figures() -> Result<EpcFigures> {
    spgw_migrate_with(GtpSockets::Process, true, BALLAST)
}

/// [`precopy_migrate`] by the page server (or `EPCMIG_PRECOPY_VIA`).
pub fn precopy_figures() -> Result<EpcFigures> {
    precopy_migrate(Via::from_env()?)
}

/// Pre-copy of the MME + SPGW container with 100 MiB of memory (10 MiB
/// kept dirty) under SCTP and UE traffic: [`ROUNDS`] pre-dumps to B's
/// page server while it runs, then the final dump; restored on B with
/// every SCTP message echoed once and in order, gtp0 equal, every tunnel
/// carrying traffic (as `plugin_epc_migrate`).
pub fn precopy_epc_migrate() -> Result<()> {
    let fig = precopy_figures()?;
    println!(
        "  pre-copy: {} bytes to B in all, {} of them before the freeze, {} after",
        fig.image_bytes,
        fig.pre_copied_bytes,
        fig.image_bytes - fig.pre_copied_bytes
    );
    ensure!(
        fig.pre_copied_bytes > (BALLAST.mb as u64) << 20,
        "the pre-dumps sent {} bytes to B, less than the {} MiB ballast",
        fig.pre_copied_bytes,
        BALLAST.mb
    );
    Ok(())
}

/// The plugin's lines in pre-dump round `k`'s log: its note, nothing else.
fn plugin_quiet_in(log: &Path, k: usize) -> Result<()> {
    let text = read_log(log)?;
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("epcmig: ")).collect();
    ensure!(
        lines.iter().any(|l| l.contains(PLUGIN_PRE_DUMP_NOTE)),
        "pre-dump round {k}: no {PLUGIN_PRE_DUMP_NOTE:?} in {} (was the plugin loaded?); \
         its lines: {lines:#?}",
        log.display()
    );
    let more: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.contains(PLUGIN_PRE_DUMP_NOTE))
        .collect();
    ensure!(
        more.is_empty(),
        "pre-dump round {k}: the plugin did more than note the pre-dump ({}): {more:#?}",
        log.display()
    );
    Ok(())
}

/// Pre-dumps (with `--lib`) of the MME + SPGW container leave every
/// association and tunnel working and unfrozen: after each round the base
/// stations get echoes again, their associations are unchanged, gtp0 is
/// as it was and every tunnel carries a round trip, the plugin logged only
/// its pre-dump note and wrote no image. A pre-copy migration on top of
/// those rounds then loses no SCTP message.
pub fn plugin_untouched_by_predump() -> Result<()> {
    let via = Via::from_env()?;
    let small = Ballast {
        mb: 32,
        dirty_mb: 4,
    };
    let mut rig = EpcRig::start_with(GtpSockets::Process, true, 60, small)?;
    let dir = crate::suites::baseline::work_dir("precopy-untouched")?;
    let echoed = |rig: &EpcRig| {
        rig.enbs
            .as_ref()
            .map_or([0, 0], |(_, e1, e2)| [e1.echoed(), e2.echoed()])
    };
    let mut last = echoed(&rig);
    let pre = predump_rounds(&mut rig, &dir, via, None, |rig, k| {
        let now = echoed(rig);
        println!(
            "  while pre-dump round {k} ran, the base stations got {} and {} echoes",
            now[0] - last[0],
            now[1] - last[1]
        );
        let what = format!("after pre-dump round {k}");
        let img = dir.join("a").join(round_dir(k));
        plugin_quiet_in(&img.join("pre-dump.log"), k)?;
        for e in std::fs::read_dir(&img)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            ensure!(
                !name.starts_with("epcmig-"),
                "{what}: the plugin wrote {name} in {}",
                img.display()
            );
        }
        rig.echoes_flow(Duration::from_secs(10))
            .with_context(|| format!("{what}: the base stations"))?;
        rig.check_source_intact(&what)?;
        last = echoed(rig);
        println!("  {what}: echoes flowing, same associations, gtp0 unchanged, every tunnel up");
        Ok(())
    })?;
    // The final dump on top of those rounds: the same checks as a plain
    // migration.
    rig.migrate(&dir, "precopy-untouched", "precopy", |rig, dir, tl| {
        final_move(rig, dir, tl, via, pre)
    })
    .map(|_| ())
}
