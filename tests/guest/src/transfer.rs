//! Moves a CRIU image directory from one host netns to another over the
//! A–B link (a TCP stream), as a real migration would, and counts bytes.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::net::ns_file;

const PORT: u16 = 7100;

/// Sends every file of `src` (flat, as CRIU writes it; logs excluded) from
/// netns `from` to `dst` in netns `to` listening on `to_addr`. Returns the
/// time taken and the image bytes moved.
pub fn send_dir(
    from: &str,
    to: &str,
    to_addr: std::net::Ipv4Addr,
    src: &Path,
    dst: &Path,
) -> Result<(Duration, u64)> {
    let addr = SocketAddr::from((to_addr, PORT));
    let to_file = ns_file(to)?;
    let dst = dst.to_path_buf();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> Result<u64> {
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&to_file),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )?;
        let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let _ = ready_tx.send(());
        let (s, _) = l.accept()?;
        receive(s, &dst)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("image receiver did not start")?;
    let src = src.to_path_buf();
    let t = Instant::now();
    let sent = crate::net::in_netns(from, move || send(addr, &src)).map_err(|e| {
        // Say what both ends and the switch looked like: this is how the
        // hosts' bridges were found to change MAC address (see net.rs).
        e.context(crate::net::link_report(&[from, to]))
    })?;
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let took = t.elapsed();
    if got != sent {
        bail!("image transfer: sent {sent} bytes, received {got}");
    }
    Ok((took, sent))
}

fn send(addr: SocketAddr, src: &PathBuf) -> Result<u64> {
    // Long enough for SYN retransmissions (1, 3, 7, 15 s).
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
        .with_context(|| format!("connecting {addr}"))?;
    let mut w = BufWriter::with_capacity(1 << 20, s);
    let mut total = 0u64;
    let mut names: Vec<PathBuf> = fs::read_dir(src)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?
            .to_string();
        if !p.is_file() || name.ends_with(".log") || name.ends_with(".pid") {
            continue;
        }
        let data = fs::read(&p)?;
        w.write_all(&(name.len() as u16).to_le_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&(data.len() as u64).to_le_bytes())?;
        w.write_all(&data)?;
        total += data.len() as u64;
    }
    w.write_all(&0u16.to_le_bytes())?;
    w.flush()?;
    Ok(total)
}

fn receive(s: TcpStream, dst: &Path) -> Result<u64> {
    fs::create_dir_all(dst)?;
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut total = 0u64;
    loop {
        let mut l2 = [0u8; 2];
        r.read_exact(&mut l2)?;
        let n = u16::from_le_bytes(l2) as usize;
        if n == 0 {
            return Ok(total);
        }
        let mut name = vec![0u8; n];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).context("file name")?;
        if name.contains('/') || name.starts_with('.') {
            bail!("refusing image file name {name:?}");
        }
        let mut l8 = [0u8; 8];
        r.read_exact(&mut l8)?;
        let len = u64::from_le_bytes(l8);
        let mut f = fs::File::create(dst.join(&name))?;
        let copied = std::io::copy(&mut (&mut r).take(len), &mut f)?;
        if copied != len {
            bail!("{name}: truncated ({copied} of {len} bytes)");
        }
        total += len;
    }
}
