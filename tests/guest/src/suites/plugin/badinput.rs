//! Restores from damaged image files: each refused with its cause, the
//! base stations losing nothing.

use anyhow::{ensure, Context, Result};

use crate::net::HOST_B;

use super::epc::*;
use super::fault::*;

/// How an image file is spoiled for [`badinput_images`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Spoil {
    Empty,
    Truncated,
    Corrupt,
    WrongMagic,
    WrongVersion,
    Oversized,
    Symlink,
    Fifo,
}

pub(super) fn spoil(file: &std::path::Path, how: Spoil) -> Result<()> {
    let data = std::fs::read(file)?;
    let write = |d: &[u8]| std::fs::write(file, d);
    match how {
        Spoil::Empty => write(&[])?,
        Spoil::Truncated => write(&data[..data.len() / 2])?,
        Spoil::Corrupt => {
            let mut d = data.clone();
            let i = d.len() / 2;
            d[i] ^= 0x40;
            write(&d)?
        }
        Spoil::WrongMagic => {
            let mut d = data.clone();
            d[..4].copy_from_slice(b"XXXX");
            write(&d)?
        }
        Spoil::WrongVersion => {
            let mut d = data.clone();
            d[8..10].copy_from_slice(&0xfffeu16.to_le_bytes());
            write(&d)?
        }
        Spoil::Oversized => {
            let f = std::fs::OpenOptions::new().append(true).open(file)?;
            f.set_len(300 << 20)?;
        }
        Spoil::Symlink => {
            std::fs::remove_file(file)?;
            std::os::unix::fs::symlink("/etc/hostname", file)?;
        }
        Spoil::Fifo => {
            std::fs::remove_file(file)?;
            let st = std::process::Command::new("mkfifo").arg(file).status()?;
            ensure!(st.success(), "mkfifo failed");
        }
    }
    Ok(())
}

/// Bad image files given to `criu restore` with the plugin: each of our
/// files (an SCTP snapshot, a gtp table) empty, truncated, corrupt, with a
/// wrong magic or format version, oversized, replaced by a symlink or a
/// FIFO. Each restore fails with an error in CRIU's log that names the
/// file and the cause, and leaves nothing on host B; a restore from the
/// intact images then succeeds, and the base stations, streaming through
/// all of it, lose nothing.
pub fn badinput_images() -> Result<()> {
    let mut rig = EpcRig::start(GtpSockets::Process, true, 30)?;
    let dir = crate::suites::baseline::work_dir("badinput")?;
    // As in fault_every_step, the base stations stream on throughout.
    let (checkpoint, transfer, bytes, img_b) = rig.dump_and_send_to_b(&dir)?;
    let ours = |prefix: &str| -> Result<String> {
        let mut v: Vec<String> = std::fs::read_dir(&img_b)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v.into_iter()
            .next()
            .with_context(|| format!("no {prefix}* image was dumped"))
    };
    let cases: Vec<(String, Spoil, &str)> = {
        let sctp = ours("epcmig-sctp-")?;
        let gtp = ours("epcmig-gtp-")?;
        let mut v: Vec<(String, Spoil, &str)> = vec![
            (sctp.clone(), Spoil::Empty, "empty"),
            // Cut short, the trailing checksum no longer matches.
            (
                sctp.clone(),
                Spoil::Truncated,
                "truncated|checksum mismatch",
            ),
            (sctp.clone(), Spoil::Corrupt, "checksum mismatch"),
            (sctp.clone(), Spoil::WrongMagic, "bad magic"),
            (sctp.clone(), Spoil::WrongVersion, "not supported"),
            (sctp.clone(), Spoil::Symlink, "symbolic links"),
            (sctp.clone(), Spoil::Fifo, "not a regular file"),
            (sctp, Spoil::Oversized, "larger than"),
        ];
        v.extend([
            (gtp.clone(), Spoil::Empty, "empty"),
            (gtp.clone(), Spoil::Truncated, "truncated|checksum mismatch"),
            (gtp.clone(), Spoil::Corrupt, "checksum mismatch"),
            (gtp.clone(), Spoil::WrongMagic, "bad magic"),
            (gtp.clone(), Spoil::WrongVersion, "not supported"),
            (gtp, Spoil::Oversized, "larger than"),
        ]);
        v
    };
    // EPCMIG_BADINPUT_ROUNDS=N goes through the cases N times: a rare
    // failure of a restore's error path shows up in a long run.
    let rounds: usize = crate::env_num("EPCMIG_BADINPUT_ROUNDS").unwrap_or(1);
    let runs = (0..rounds).flat_map(|r| cases.iter().map(move |c| (r, c)));
    for (round, (file, how, cause)) in runs {
        let case = dir.join("case");
        let _ = std::fs::remove_dir_all(&case);
        let st = std::process::Command::new("cp")
            .args(["-a"])
            .arg(&img_b)
            .arg(&case)
            .status()?;
        ensure!(st.success(), "copying the images");
        spoil(&case.join(file), *how)?;
        let res = rig.restore_on(HOST_B, &case, &[]);
        ensure!(res.is_err(), "restore with {file} {how:?} succeeded");
        let log = std::fs::read_to_string(case.join("restore.log")).unwrap_or_default();
        let named = log.lines().find(|l| {
            l.contains("epcmig")
                && l.contains(file.as_str())
                && cause.split('|').any(|c| l.contains(c))
        });
        let Some(line) = named else {
            anyhow::bail!(
                "restore with {file} {how:?}: no log line names the file and \"{cause}\":\n{}",
                log.lines()
                    .filter(|l| l.contains("epcmig") || l.contains("Error"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        };
        nothing_restored(&format!("{file} {how:?}"))?;
        if round == 0 {
            println!("  {how:?} {file}: refused, nothing left: {}", line.trim());
        }
    }
    if rounds > 1 {
        println!(
            "  {rounds} rounds: {} bad restores, each refused, nothing left",
            rounds * cases.len()
        );
    }
    let (restore, pid) = rig.restore_on(HOST_B, &img_b, &[])?;
    let fig = rig.figures(checkpoint, transfer, bytes, restore);
    new_enb_round()?;
    rig.check_restored_and_finish(pid, fig).map(|_| ())
}
