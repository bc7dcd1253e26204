//! Consecutive migrations of the EPC container under traffic.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::net::{self, HOST_A, HOST_B};

use super::epc::*;
use super::*;

/// Open fds and resident memory (kB) of process `pid`.
pub(super) fn usage(pid: u32) -> Result<(usize, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok((fds, rss))
}

/// Soak: consecutive migrations A->B->A... of the MME + SPGW container
/// (200 tunnels) under continuous SCTP traffic from two base stations and
/// a UE's UDP stream; after each: gtp0 equal to the original on the
/// restored sockets, every tunnel carrying a round trip, the same
/// associations. At the end no SCTP message lost, duplicated or reordered
/// (the base stations' own counts), no association event, and the restored
/// process's fds and memory did not grow. `EPCMIG_SOAK=N` migrations (4
/// by default; the soak is 100).
pub fn soak() -> Result<()> {
    let n: usize = crate::env_num("EPCMIG_SOAK").unwrap_or(4);
    let mut rig = EpcRig::start(GtpSockets::Process, true, 200)?;
    let dir = crate::suites::baseline::work_dir("soak")?;
    // The netns the EPC ran in before the last restore (None: the first,
    // named container): its gtp0 pins it until deleted.
    let mut old_ns: Option<std::fs::File> = None;
    let mut first: Option<(usize, u64)> = None;
    let mut last = (0, 0);
    let (mut worst_gap, t0) = (Duration::ZERO, Instant::now());
    let mut restored = Vec::new();
    let result = (|| -> Result<()> {
        for k in 0..n {
            let to = if rig.at == HOST_A { HOST_B } else { HOST_A };
            let (img_from, img_to) = (dir.join(format!("m{k}-out")), dir.join(format!("m{k}-in")));
            let ((), ue) = crate::suites::gtp::with_stream(rig.ues[0], || {
                rig.dump(&img_from, &[])?;
                match old_ns.take() {
                    Some(f) => {
                        let p = format!("/proc/self/fd/{}", f.as_raw_fd());
                        gtp_state::delete_device(&gtp_state::Netns::Path(p.into()), "gtp0")?;
                    }
                    None => rig.retire_source()?,
                }
                crate::transfer::send_dir(rig.at, to, net::host_addr(to), &img_from, &img_to)?;
                let (_, pid) = rig.restore_on(to, &img_to, &[])?;
                restored.push(pid);
                old_ns = Some(std::fs::File::open(format!("/proc/{pid}/ns/net"))?);
                rig.at = to;
                rig.pid = pid;
                Ok(())
            })?;
            worst_gap = worst_gap.max(ue.max_gap);
            rig.check_restored(rig.pid, true)
                .with_context(|| format!("after migration {} of {n}", k + 1))?;
            let u = usage(rig.pid)?;
            first.get_or_insert(u);
            last = u;
            println!(
                "  soak: migration {}/{n} to {}: tunnels and associations intact; UE gap {:.2}s; \
                 restored process {} fds, {} kB resident; {:.0}s elapsed",
                k + 1,
                to,
                ue.max_gap.as_secs_f64(),
                u.0,
                u.1,
                t0.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })();
    let pid = rig.pid;
    let first = first.unwrap_or(last);
    let fig = EpcFigures {
        checkpoint: Duration::ZERO,
        transfer: Duration::ZERO,
        restore: Duration::ZERO,
        image_bytes: 0,
        pre_copied_bytes: 0,
        ue: Default::default(),
        tunnels: rig.ues.len(),
        sctp: None,
        timeline: None,
    };
    let finished = match result {
        Ok(()) => {
            let EpcRig { enbs, .. } = &mut rig;
            let enbs = enbs.take();
            let seen = match enbs {
                Some((_, e1, e2)) => Some(finish_enbs(e1, e2)?),
                None => None,
            };
            Ok(seen)
        }
        Err(e) => Err(e),
    };
    drop(old_ns);
    let _ = rig.check_restored_and_finish(pid, fig);
    let seen = finished?;
    ensure!(
        last.0 == first.0,
        "the restored process's fds grew from {} to {} over {n} migrations",
        first.0,
        last.0
    );
    ensure!(
        last.1 <= first.1 + 2048,
        "the restored process's memory grew from {} kB to {} kB over {n} migrations",
        first.1,
        last.1
    );
    println!(
        "  soak: {n} migrations, {} SCTP messages checked: 0 lost, duplicated or reordered, \
         no ABORT/COMM_LOST/RESTART; 0 tunnels broken; longest UE gap {:.2}s; \
         fds {} -> {}, memory {} -> {} kB",
        seen.map(|s| s.messages).unwrap_or(0),
        worst_gap.as_secs_f64(),
        first.0,
        last.0,
        first.1,
        last.1
    );
    Ok(())
}
