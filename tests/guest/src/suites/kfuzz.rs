//! Hostile input to the kernel patches: a fuzz loop over every SCTP repair
//! sockopt, from a privileged and an unprivileged caller, on every kind of
//! socket, with random and boundary lengths and values and with real
//! repair structures mutated a few bytes at a time; and full restores from
//! mutated snapshots. The run fails on any kernel splat (the harness
//! watches the console; the test also reads the kernel log itself) and on
//! any repair sockopt an unprivileged caller gets through.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use epcmig_sys::sctp_repair as uapi;
use sctp_repair::{Mode, Snapshot};

use crate::net::{self, Topology, HOST_A};

/// The repair sockopts, and the two numbers after them (unknown options
/// must be refused cleanly too).
/// SOL_SCTP (linux/socket.h), which the libc crate lacks.
const SOL_SCTP: i32 = 132;

const FIRST_OPT: i32 = uapi::SCTP_REPAIR as i32;
const LAST_OPT: i32 = uapi::SCTP_REPAIR_QUEUE as i32 + 2;

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Flips, sets or clears 1-4 bytes, sometimes to a boundary value.
    fn mutate(&mut self, mut v: Vec<u8>) -> Vec<u8> {
        if v.is_empty() {
            return v;
        }
        for _ in 0..1 + self.below(4) {
            let i = self.below(v.len());
            v[i] = match self.below(4) {
                0 => 0,
                1 => 0xff,
                2 => v[i] ^ (1 << self.below(8)),
                _ => self.next() as u8,
            };
        }
        v
    }
}

fn sctp(family: i32, ty: i32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(family, ty, libc::IPPROTO_SCTP) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt(fd: RawFd, opt: i32, buf: &[u8]) -> i32 {
    // SAFETY: buf is valid for buf.len() bytes; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_SCTP,
            opt,
            buf.as_ptr().cast(),
            buf.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

fn getsockopt(fd: RawFd, opt: i32, len: usize, fill: u8) -> i32 {
    let mut buf = vec![fill; len];
    let mut l = len as libc::socklen_t;
    // SAFETY: buf is valid for len bytes and l says so.
    let rc = unsafe { libc::getsockopt(fd, SOL_SCTP, opt, buf.as_mut_ptr().cast(), &mut l) };
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// A buffer for option `opt`: random, of a boundary length, or a real
/// structure of that option mutated.
fn buffer(rng: &mut Rng, opt: i32, seed: &Snapshot) -> Vec<u8> {
    let real: &[u8] = match opt as u32 {
        uapi::SCTP_REPAIR_ASSOC => &seed.assoc,
        uapi::SCTP_REPAIR_PATHS => &seed.paths,
        uapi::SCTP_REPAIR_STREAMS => &seed.streams,
        uapi::SCTP_REPAIR_TSN_MAP => &seed.tsn_map,
        _ => &[],
    };
    match rng.below(6) {
        0 | 1 if !real.is_empty() => rng.mutate(real.to_vec()),
        2 if !real.is_empty() => {
            // The right struct cut short or overlong.
            let mut v = real.to_vec();
            let n = [0, 1, v.len() - 1, v.len() + 1, v.len() + 4096][rng.below(5)];
            v.resize(n, 0);
            v
        }
        3 => {
            let n = [0usize, 1, 2, 3, 4, 8][rng.below(6)];
            let mut v = rng.bytes(n);
            if n == 4 {
                let vals = [-1i32, 0, 1, 2, 3, 4, i32::MAX, i32::MIN];
                v = vals[rng.below(vals.len())].to_ne_bytes().to_vec();
            }
            v
        }
        4 => {
            let n = rng.below(4096);
            rng.bytes(n)
        }
        _ => {
            let n = 65536 + rng.below(8);
            rng.bytes(n)
        }
    }
}

/// A socket for one call: fresh of some kind, or the frozen association.
fn target(rng: &mut Rng, frozen: &OwnedFd) -> Result<(Option<OwnedFd>, RawFd)> {
    let s = match rng.below(6) {
        0 => sctp(libc::AF_INET, libc::SOCK_STREAM)?,
        1 => sctp(libc::AF_INET6, libc::SOCK_STREAM)?,
        2 => sctp(libc::AF_INET, libc::SOCK_SEQPACKET)?,
        3 | 4 => {
            // In repair mode, as a restore starts.
            let s = sctp(libc::AF_INET, libc::SOCK_STREAM)?;
            let _ = sctp_repair::set_mode(s.as_fd(), Mode::On);
            s
        }
        _ => return Ok((None, frozen.as_raw_fd())),
    };
    let fd = s.as_raw_fd();
    Ok((Some(s), fd))
}

/// Splat markers in the kernel log.
const SPLATS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "KASAN",
    "UBSAN",
    "general protection",
    "possible circular locking",
    "inconsistent lock state",
    "ODEBUG",
    "list_add corruption",
    "list_del corruption",
    "refcount_t",
];

fn kernel_splats() -> Result<Vec<String>> {
    let o = std::process::Command::new("dmesg")
        .output()
        .context("running dmesg")?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| SPLATS.iter().any(|s| l.contains(s)))
        .map(str::to_string)
        .collect())
}

/// The fuzz loop; `EPCMIG_KFUZZ_SECS` sets its length (120 s by default).
pub fn kfuzz_sctp_repair_sockopts() -> Result<()> {
    let secs: u64 = std::env::var("EPCMIG_KFUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let seed_val = std::env::var("EPCMIG_KFUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("  kfuzz: seed {seed_val} (EPCMIG_KFUZZ_SEED to replay), {secs} s");
    let before = kernel_splats()?;
    let _topo = Topology::build()?;

    // Seed material: a real association with data queued both ways,
    // frozen and captured.
    let (client, server) = crate::suites::sctp_repair::association()?;
    for s in [&client, &server] {
        for i in 0..8u8 {
            let _ = nix::sys::socket::send(
                s.as_raw_fd(),
                &vec![i; 100 + 700 * i as usize],
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            );
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let seed = sctp_repair::freeze_and_capture(client.as_fd(), Duration::from_secs(5))
        .context("capturing the seed association")?;

    let mut rng = Rng(seed_val);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut calls, mut accepted, mut restores, mut restored) = (0u64, 0u64, 0u64, 0u64);
    let mut errnos = std::collections::BTreeMap::<i32, u64>::new();
    while Instant::now() < deadline {
        for _ in 0..64 {
            let opt = FIRST_OPT + rng.below((LAST_OPT - FIRST_OPT + 1) as usize) as i32;
            let (_own, fd) = target(&mut rng, &client)?;
            let rc = if rng.below(3) == 0 {
                let len = [0, 1, 4, 8, 64, 256, 4096, 65536][rng.below(8)];
                getsockopt(fd, opt, len, rng.next() as u8)
            } else {
                let buf = buffer(&mut rng, opt, &seed);
                setsockopt(fd, opt, &buf)
            };
            calls += 1;
            if rc == 0 {
                accepted += 1;
            } else {
                *errnos.entry(rc).or_default() += 1;
            }
        }
        // A whole restore from a mutated snapshot, in host A (where the
        // frozen client's address is): whatever the kernel accepts is
        // closed again in repair mode, silently.
        let mut m = seed.clone();
        match rng.below(5) {
            0 => m.assoc = rng.mutate(m.assoc),
            1 => m.paths = rng.mutate(m.paths),
            2 => m.streams = rng.mutate(m.streams),
            3 => m.tsn_map = rng.mutate(m.tsn_map),
            _ => {
                if !m.queues.is_empty() {
                    let i = rng.below(m.queues.len());
                    m.queues[i].data = rng.mutate(std::mem::take(&mut m.queues[i].data));
                }
            }
        }
        restores += 1;
        let ok = net::in_netns(HOST_A, move || Ok(sctp_repair::restore(&m).is_ok()))?;
        if ok {
            restored += 1;
        }
    }

    // The unprivileged caller: every repair sockopt refused with EPERM.
    let raw = client.as_raw_fd();
    let fresh = sctp(libc::AF_INET, libc::SOCK_STREAM)?;
    let fresh_raw = fresh.as_raw_fd();
    let (seed_assoc, seed_paths) = (seed.assoc.clone(), seed.paths.clone());
    let unpriv = std::thread::spawn(move || -> Result<Vec<String>> {
        // SAFETY: changes only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        ensure!(rc == 0, "setresuid: {}", std::io::Error::last_os_error());
        let mut rng = Rng(seed_val ^ 0x5555);
        let mut wrong = Vec::new();
        for i in 0..20_000 {
            let opt = FIRST_OPT + (i % (LAST_OPT - FIRST_OPT + 1));
            let fd = if i % 2 == 0 { raw } else { fresh_raw };
            let buf = match opt as u32 {
                uapi::SCTP_REPAIR_ASSOC => rng.mutate(seed_assoc.clone()),
                uapi::SCTP_REPAIR_PATHS => rng.mutate(seed_paths.clone()),
                _ => [0i32, 1, -1][i as usize % 3].to_ne_bytes().to_vec(),
            };
            let set = setsockopt(fd, opt, &buf);
            let get = getsockopt(fd, opt, 4096, 0);
            // Nothing is changed or read out without CAP_NET_ADMIN: every
            // set fails (EPERM once the length and socket style are
            // right, as for SCTP_REPAIR itself), every get of association
            // state fails. Reading the mode and the selected queue is
            // open to anyone, as TCP_REPAIR_QUEUE is.
            let open_get = opt == FIRST_OPT || opt == uapi::SCTP_REPAIR_QUEUE as i32;
            let checks = [
                (
                    "set",
                    set,
                    set != 0 && (opt != FIRST_OPT || set == libc::EPERM),
                ),
                ("get", get, get != 0 || open_get),
            ];
            for (what, rc, fine) in checks {
                if !fine && wrong.len() < 10 {
                    wrong.push(format!("{what}sockopt({opt}) fd {fd}: errno {rc}"));
                }
            }
        }
        Ok(wrong)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("unprivileged thread panicked"))??;
    drop(fresh);
    ensure!(
        unpriv.is_empty(),
        "an unprivileged caller got through: {unpriv:?}"
    );

    let _ = sctp_repair::set_mode(client.as_fd(), Mode::Off);
    drop((client, server));
    let after = kernel_splats()?;
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    ensure!(
        new.is_empty(),
        "kernel splats during the fuzz loop:\n{new:#?}"
    );
    println!(
        "  kfuzz: {calls} sockopt calls ({accepted} accepted; refused by errno: {errnos:?}), \
         {restores} restores from mutated snapshots ({restored} accepted and closed); \
         20000 x 2 unprivileged calls: no set and no state read got through (set SCTP_REPAIR: EPERM); no kernel splat"
    );
    Ok(())
}
