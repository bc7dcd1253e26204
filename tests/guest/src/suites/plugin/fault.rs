//! A failure forced at every plugin step, and criu killed mid-dump: the
//! source runs on, nothing half-made is left on the destination.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::net::{self, HOST_B};

use super::epc::*;

/// A criu run that must have failed at fault `step`; its log must name it
/// (the action script's lines are in the log but not in CRIU's errors).
pub(super) fn expect_fault(
    res: Result<impl std::fmt::Debug>,
    step: &str,
    what: &str,
    log: &std::path::Path,
) -> Result<()> {
    match res {
        Ok(v) => anyhow::bail!("{what} succeeded despite EPCMIG_FAULT={step}: {v:?}"),
        Err(e) => {
            let needle = format!("fault injected at step {step}");
            let text = std::fs::read_to_string(log).unwrap_or_default();
            ensure!(
                format!("{e:#}").contains(&needle) || text.contains(&needle),
                "{what} with EPCMIG_FAULT={step} failed, but not at that step:\n{e:#}"
            );
            Ok(())
        }
    }
}

/// A restore that failed left nothing: no restored process, no link of
/// the container on host B.
pub(super) fn nothing_restored(step: &str) -> Result<()> {
    // The failed restore's netns, and the veths in it, go asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = net::command_in(HOST_B, "ip")?
            .args(["-o", "link", "show"])
            .output()?;
        let links = String::from_utf8_lossy(&out.stdout).into_owned();
        if !links.contains("spgw-r") && !links.contains("sgi-r") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "10 s after the restore failed at {step}, host B still has the container's links:\n{links}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for e in std::fs::read_dir("/proc")?.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        ensure!(
            !cmd.contains(" app spgw") || cmd.contains("criu"),
            "after the restore failed at {step}, a restored process is left: {cmd}"
        );
    }
    Ok(())
}

/// Every step of the plugin made to fail in turn (`EPCMIG_FAULT`), on an
/// MME + SPGW container under traffic: each failed dump leaves the process
/// running, gtp0 as it was and carrying traffic, and the base stations'
/// associations untouched (no ABORT: they keep streaming); each failed
/// restore leaves no restored process and no link on host B, and costs
/// the base stations, streaming all along, nothing. Then a clean restore
/// from the same images brings the SPGW back with every tunnel, the MME
/// with the same associations (every message echoed once, in order) and
/// serving a new base station.
pub fn fault_every_step() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 60)?;
    let dir = crate::suites::baseline::work_dir("fault")?;
    for step in [
        "sctp-freeze",
        "sctp-capture",
        "sctp-write",
        "gtp-capture",
        "gtp-write",
        "gtp-link",
    ] {
        let img = dir.join(format!("dump-{step}"));
        expect_fault(
            rig.dump(&img, &[("EPCMIG_FAULT", step)]),
            step,
            "criu dump",
            &img.join("dump.log"),
        )?;
        std::thread::sleep(Duration::from_secs(1));
        rig.check_source_intact(&format!("after a dump failed at {step}"))?;
        println!("  dump failed at {step}: the source runs on, tunnels and associations intact");
    }
    // The base stations stream on through the failed restores: none may
    // cost them their association (a failure after CRIU lifted its lock
    // seals the netns before the kill; a dying netns does not answer).
    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    for step in ["gtp-setup", "sctp-restore", "gtp-attach", "sctp-thaw"] {
        expect_fault(
            rig.restore_on(HOST_B, &img_b, &[("EPCMIG_FAULT", step)]),
            step,
            "criu restore",
            &img_b.join("restore.log"),
        )?;
        nothing_restored(step)?;
        println!("  restore failed at {step}: nothing left on host B");
    }
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    new_enb_round()?;
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}

/// CRIU killed mid-dump (`EPCMIG_FAULT=kill@gtp-link`: after the plugin
/// froze the MME's associations, while CRIU dumps the container's netns;
/// the tasks are out of the parasite then, so CRIU's death lets them run
/// on). The plugin's guardian thaws the associations; once the operator
/// lifts CRIU's own network lock, which outlives criu as it does for TCP,
/// the source works as before: gtp0 unchanged and carrying traffic, the
/// same base-station associations with their echoes flowing again. A
/// clean migration then loses none of their messages.
pub fn fault_criu_killed() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 30)?;
    let dir = crate::suites::baseline::work_dir("criu-killed")?;
    let img = dir.join("dump-killed");
    let res = rig.dump(&img, &[("EPCMIG_FAULT", "kill@gtp-link")]);
    let Err(e) = res else {
        anyhow::bail!("criu dump succeeded although killed at gtp-link");
    };
    println!(
        "  criu killed mid-dump: {}",
        format!("{e:#}").lines().next().unwrap_or("")
    );
    // The guardian acts once the last holder of criu's end of their pair
    // is gone (criu, and any child criu forked meanwhile).
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let kmsg = std::process::Command::new("dmesg").output()?;
        let found = String::from_utf8_lossy(&kmsg.stdout)
            .lines()
            .rev()
            .find(|l| l.contains("epcmig-guardian"))
            .map(str::to_string);
        match found {
            Some(l) => break l,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            None => {
                let ps = std::process::Command::new("ps")
                    .args(["-eo", "pid,ppid,stat,args"])
                    .output()?;
                anyhow::bail!(
                    "the guardian left no word in the kernel log in 15 s; criu: {e:#}\nprocesses:\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
        }
    };
    ensure!(
        // The MME's listener is frozen by the dump too (it must take no
        // association while its accept queue is checked empty).
        line.contains("thawed 3 of 3 SCTP socket(s)"),
        "the guardian did not thaw the listener and both associations: {line}"
    );
    println!("  {}", line.trim());
    rig.lift_criu_lock()?;
    rig.echoes_flow(Duration::from_secs(20))
        .context("after criu was killed and its lock lifted")?;
    rig.check_source_intact("after criu was killed mid-dump")?;
    println!("  the source runs on: tunnels intact, same associations, echoes flowing");

    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}
