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

/// SOL_SCTP (linux/socket.h), which the libc crate lacks.
const SOL_SCTP: i32 = 132;

/// The repair sockopts, SCTP_REPAIR to SCTP_REPAIR_SOCK (the last one the
/// patches add), and the two numbers after them: unknown options must be
/// refused cleanly too.
const FIRST_OPT: i32 = uapi::SCTP_REPAIR as i32;
const LAST_OPT: i32 = uapi::SCTP_REPAIR_ASSOC_IDS as i32 + 2;

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

/// A fuzz loop's length (`EPCMIG_KFUZZ_SECS`, 120 s by default, divided
/// by `share`), its seed (`EPCMIG_KFUZZ_SEED` or the clock) and failslab,
/// printed so that a run can be replayed.
fn fuzz_setup(what: &str, share: u64) -> Result<(u64, u64, crate::failslab::Failslab)> {
    let secs: u64 = crate::env_num::<u64>("EPCMIG_KFUZZ_SECS").unwrap_or(120) / share;
    let seed_val = crate::env_num("EPCMIG_KFUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let fs = crate::failslab::Failslab::setup()?;
    println!(
        "  {what}: seed {seed_val} (EPCMIG_KFUZZ_SEED to replay), {secs} s{}",
        if fs.on() {
            ", slab allocations failing at random in the fuzzed calls"
        } else {
            ""
        }
    );
    Ok((secs, seed_val, fs))
}

/// The fuzz loop; `EPCMIG_KFUZZ_SECS` sets its length (120 s by default).
pub fn kfuzz_sctp_repair_sockopts() -> Result<()> {
    let (secs, seed_val, fs) = fuzz_setup("kfuzz", 1)?;
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
    let (frozen, seed) = sctp_repair::freeze_and_capture(client.as_fd(), Duration::from_secs(5))
        .context("capturing the seed association")?;
    // Thawed at the end, with the low-level switch.
    frozen.release();

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
                let fill = rng.next() as u8;
                fs.around(|| getsockopt(fd, opt, len, fill))
            } else {
                let buf = buffer(&mut rng, opt, &seed);
                fs.around(|| setsockopt(fd, opt, &buf))
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
        let ok = net::in_netns(HOST_A, move || {
            Ok(fs.around(|| sctp_repair::restore(&m)).is_ok())
        })?;
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
            // state fails. Reading the mode and the selected queue and
            // association is open to anyone, as TCP_REPAIR_QUEUE is.
            let open_get = opt == FIRST_OPT
                || opt == uapi::SCTP_REPAIR_QUEUE as i32
                || opt == uapi::SCTP_REPAIR_ASSOC_ID as i32;
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

/// A raw netlink socket: the gtp fuzz loop needs to send what no netlink
/// crate would build (wrong lengths, unknown attributes, bad nesting).
struct RawNl {
    fd: OwnedFd,
    seq: u32,
}

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const GENL_ID_CTRL: u16 = 0x10;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink attribute, padded to 4 bytes.
fn nla(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len() + 3);
    v.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(data);
    v.resize((v.len() + 3) & !3, 0);
    v
}

impl RawNl {
    /// A netlink socket of `proto` in the calling thread's netns.
    fn open(proto: i32) -> Result<RawNl> {
        // SAFETY: plain socket(2); owned below.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        ensure!(
            raw >= 0,
            "netlink socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = nix::sys::time::TimeVal::new(1, 0);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(RawNl { fd, seq: 1 })
    }

    /// Sends one message and reads until its ack or the end of its dump:
    /// the errno the kernel answered (0: accepted) and the replies.
    fn request(&mut self, ty: u16, flags: u16, payload: &[u8]) -> Result<(i32, Vec<Vec<u8>>)> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(NLMSG_HDR + payload.len());
        msg.extend_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        nix::sys::socket::send(
            self.fd.as_raw_fd(),
            &msg,
            nix::sys::socket::MsgFlags::empty(),
        )
        .context("netlink send")?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => anyhow::bail!("no netlink answer in 1 s"),
                Err(e) => return Err(e).context("netlink recv"),
            };
            let mut at = 0;
            while at + NLMSG_HDR <= n {
                let len =
                    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
                let rty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let seq =
                    u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
                if len < NLMSG_HDR || at + len > n {
                    anyhow::bail!("malformed netlink reply");
                }
                let body = &buf[at + NLMSG_HDR..at + len];
                at += (len + 3) & !3;
                if seq != self.seq {
                    continue;
                }
                match rty {
                    NLMSG_ERROR => {
                        let e = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return Ok((-e, replies));
                    }
                    NLMSG_DONE => return Ok((0, replies)),
                    _ => replies.push(body.to_vec()),
                }
            }
        }
    }

    /// The id of generic netlink family `name`.
    fn family(&mut self, name: &str) -> Result<u16> {
        let mut p = vec![3u8, 1, 0, 0]; // CTRL_CMD_GETFAMILY, version 1
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        p.extend(nla(2, &n)); // CTRL_ATTR_FAMILY_NAME
        let (err, replies) = self.request(GENL_ID_CTRL, 0, &p)?;
        ensure!(err == 0, "no generic netlink family {name}: errno {err}");
        for r in replies {
            let mut at = 4;
            while at + 4 <= r.len() {
                let len = usize::from(u16::from_ne_bytes([r[at], r[at + 1]]));
                let ty = u16::from_ne_bytes([r[at + 2], r[at + 3]]);
                if ty == 1 && len >= 6 {
                    return Ok(u16::from_ne_bytes([r[at + 4], r[at + 5]]));
                }
                if len < 4 {
                    break;
                }
                at += (len + 3) & !3;
            }
        }
        anyhow::bail!("generic netlink family {name}: no id in the reply")
    }
}

/// A random attribute value: sizes and contents a PDP or link attribute
/// may or may not accept.
fn gtp_value(rng: &mut Rng, ifindex: u32, fds: &[i32]) -> Vec<u8> {
    match rng.below(9) {
        0 => ifindex.to_ne_bytes().to_vec(),
        1 => (rng.next() as u32).to_ne_bytes().to_vec(),
        2 => [0u32, 1, u32::MAX, 0x7fff_ffff][rng.below(4)]
            .to_ne_bytes()
            .to_vec(),
        3 => vec![rng.below(3) as u8],
        4 => rng.next().to_ne_bytes().to_vec(),
        5 => rng.bytes(16),
        6 => Vec::new(),
        7 => fds[rng.below(fds.len())].to_ne_bytes().to_vec(),
        _ => {
            let n = rng.below(40);
            rng.bytes(n)
        }
    }
}

const GTP_CMD_NEWPDPS: u8 = 4;

/// A GTP_CMD_NEWPDPS request: usually GTPA_LINK, then up to a dozen
/// GTPA_PDP nests, two in three of them a well-formed GTPv1 context from
/// a small TEI and address space (so requests add contexts, collide
/// midway and stay bounded), with random attributes mixed in; now and
/// then a nest of the wrong type or without the nested flag.
fn newpdps_payload(rng: &mut Rng, ifindex: u32, fds: &[i32]) -> Vec<u8> {
    const GTPA_PDP: u16 = 14;
    let mut p = vec![GTP_CMD_NEWPDPS, rng.below(3) as u8, 0, 0];
    if rng.below(8) != 0 {
        p.extend(nla(1, &ifindex.to_ne_bytes()));
    }
    for _ in 0..rng.below(12) {
        let mut inner = Vec::new();
        if rng.below(3) != 0 {
            inner.extend(nla(2, &1u32.to_ne_bytes()));
            inner.extend(nla(8, &(rng.below(4096) as u32).to_ne_bytes()));
            inner.extend(nla(9, &(rng.next() as u32).to_ne_bytes()));
            inner.extend(nla(4, &[192, 0, 2, 1]));
            inner.extend(nla(5, &[10, 77, rng.below(16) as u8, rng.below(256) as u8]));
        }
        for _ in 0..rng.below(4) {
            let ty = rng.below(16) as u16;
            inner.extend(nla(ty, &gtp_value(rng, ifindex, fds)));
        }
        let ty = if rng.below(16) == 0 {
            rng.below(16) as u16
        } else {
            GTPA_PDP
        };
        let nested = if rng.below(8) == 0 { 0 } else { NLA_F_NESTED };
        p.extend(nla(ty | nested, &inner));
    }
    p
}

/// The gtp fuzz loop: generic netlink PDP commands (NEWPDP, DELPDP,
/// GETPDP, ECHOREQ, NEWPDPS and unknown ones) with random attributes, sizes and
/// flags against a real gtp device; RTM_NEWLINK of gtp devices with random
/// IFLA_GTP_* attributes (the socket inodes the patches report included,
/// which a request must not set), each device made then dumped with
/// RTM_GETLINK and deleted. Then an unprivileged caller: every PDP command
/// and every gtp RTM_NEWLINK refused with EPERM. No kernel splat. Half of
/// `EPCMIG_KFUZZ_SECS` (60 s by default).
pub fn kfuzz_gtp_netlink() -> Result<()> {
    let (secs, seed_val, fs) = fuzz_setup("kfuzz gtp", 2)?;
    let before = kernel_splats()?;
    let _ = std::process::Command::new("modprobe").arg("gtp").status();
    let ns = "kfuzz-gtp";
    let _ = net::ip(&["netns", "del", ns]);
    net::ip(&["netns", "add", ns])?;
    let result = net::in_netns(ns, move || gtp_fuzz_in_netns(seed_val, secs, fs));
    let _ = net::ip(&["netns", "del", ns]);
    let (stats, unpriv) = result?;
    ensure!(
        unpriv.is_empty(),
        "an unprivileged caller got through: {unpriv:?}"
    );
    let after = kernel_splats()?;
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    ensure!(
        new.is_empty(),
        "kernel splats during the gtp fuzz loop:\n{new:#?}"
    );
    println!("  kfuzz gtp: {stats}; unprivileged: every PDP command and gtp NEWLINK refused with EPERM; no kernel splat");
    Ok(())
}

/// The loop itself, on a thread inside the fuzz netns.
fn gtp_fuzz_in_netns(
    seed_val: u64,
    secs: u64,
    fs: crate::failslab::Failslab,
) -> Result<(String, Vec<String>)> {
    net::ip(&["link", "set", "lo", "up"])?;
    net::ip(&["link", "add", "gtp0", "type", "gtp", "role", "ggsn"])?;
    let ifindex = ifindex_of("gtp0")?;
    let udp: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    let fds: Vec<i32> = udp
        .iter()
        .map(|s| s.as_raw_fd())
        .chain([-1, 0, 9999])
        .collect();
    let mut genl = RawNl::open(libc::NETLINK_GENERIC)?;
    let gtp = genl.family("gtp")?;
    let mut rtnl = RawNl::open(libc::NETLINK_ROUTE)?;
    let mut rng = Rng(seed_val);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut pdp_calls, mut pdp_ok, mut links, mut made) = (0u64, 0u64, 0u64, 0u64);
    let mut errnos = std::collections::BTreeMap::<i32, u64>::new();
    while Instant::now() < deadline {
        for _ in 0..32 {
            // GTP_CMD_NEWPDP is 0, DELPDP 1, GETPDP 2, ECHOREQ 3,
            // NEWPDPS 4 (kernel-patches/gtp/0005).
            let cmd = [0u8, 0, 0, 1, 2, 2, 3, 4, 4, rng.below(9) as u8][rng.below(10)];
            let p = if cmd == GTP_CMD_NEWPDPS {
                newpdps_payload(&mut rng, ifindex, &fds)
            } else {
                let mut p = vec![cmd, rng.below(3) as u8, 0, 0];
                for _ in 0..rng.below(8) {
                    let ty = if rng.below(4) == 0 {
                        1
                    } else {
                        rng.below(16) as u16
                    };
                    p.extend(nla(ty, &gtp_value(&mut rng, ifindex, &fds)));
                }
                p
            };
            let flags = [0, 0, NLM_F_DUMP, NLM_F_EXCL | NLM_F_CREATE][rng.below(4)];
            // Sometimes a few bytes off: lengths and nesting broken too.
            let p = if rng.below(4) == 0 { rng.mutate(p) } else { p };
            // With failslab on, the kernel may have no memory left for an
            // answer: counted, not fatal.
            let err = match fs.around(|| genl.request(gtp, flags, &p)) {
                Ok((err, _)) => err,
                Err(_) if fs.on() => -1,
                Err(e) => return Err(e),
            };
            pdp_calls += 1;
            if err == 0 {
                pdp_ok += 1;
            } else {
                *errnos.entry(err).or_default() += 1;
            }
        }
        // A gtp device with random IFLA_GTP_* attributes.
        let mut data = Vec::new();
        for _ in 0..rng.below(6) {
            let ty = 1 + rng.below(11) as u16;
            data.extend(nla(ty, &gtp_value(&mut rng, ifindex, &fds)));
        }
        let mut info = nla(IFLA_INFO_KIND, b"gtp\0");
        info.extend(nla(IFLA_INFO_DATA | NLA_F_NESTED, &data));
        let mut p = vec![0u8; 16]; // struct ifinfomsg
        p.extend(nla(IFLA_IFNAME, b"gfz0\0"));
        p.extend(nla(IFLA_LINKINFO | NLA_F_NESTED, &info));
        let err = match fs.around(|| rtnl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &p)) {
            Ok((err, _)) => err,
            Err(_) if fs.on() => -1,
            Err(e) => return Err(e),
        };
        links += 1;
        if err == 0 {
            made += 1;
            // The link info the patches extend, for every device.
            rtnl.request(RTM_GETLINK, NLM_F_DUMP, &[0u8; 16])?;
            let mut d = vec![0u8; 16];
            d.extend(nla(IFLA_IFNAME, b"gfz0\0"));
            let (e, _) = rtnl.request(RTM_DELLINK, 0, &d)?;
            ensure!(e == 0, "deleting the fuzzed gtp device: errno {e}");
        } else if fs.on() {
            // Made, but its answer lost to an injected failure?
            let mut d = vec![0u8; 16];
            d.extend(nla(IFLA_IFNAME, b"gfz0\0"));
            let _ = rtnl.request(RTM_DELLINK, 0, &d);
        }
    }

    // Unprivileged: the same kinds of request, all refused with EPERM.
    let unpriv = std::thread::spawn(move || -> Result<Vec<String>> {
        // SAFETY: changes only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        ensure!(rc == 0, "setresuid: {}", std::io::Error::last_os_error());
        let mut wrong = Vec::new();
        let mut genl = RawNl::open(libc::NETLINK_GENERIC)?;
        let mut rtnl = RawNl::open(libc::NETLINK_ROUTE)?;
        let mut rng = Rng(seed_val ^ 0xaaaa);
        for i in 0..2000 {
            let cmd = [0u8, 1, 2, 3, GTP_CMD_NEWPDPS][i % 5];
            let mut p = if cmd == GTP_CMD_NEWPDPS {
                newpdps_payload(&mut rng, ifindex, &[0])
            } else {
                let mut p = vec![cmd, 0, 0, 0];
                p.extend(nla(1, &ifindex.to_ne_bytes()));
                p
            };
            for _ in 0..rng.below(4) {
                p.extend(nla(
                    rng.below(16) as u16,
                    &gtp_value(&mut rng, ifindex, &[0]),
                ));
            }
            // GETPDP as a dump too (the other commands have no dump).
            let flags = if cmd == 2 && i % 8 == 2 {
                NLM_F_DUMP
            } else {
                0
            };
            let (err, _) = genl.request(gtp, flags, &p)?;
            if err != libc::EPERM && wrong.len() < 10 {
                wrong.push(format!("gtp genl cmd {cmd}: errno {err}"));
            }
        }
        let mut info = nla(IFLA_INFO_KIND, b"gtp\0");
        info.extend(nla(
            IFLA_INFO_DATA | NLA_F_NESTED,
            &nla(4, &1u32.to_ne_bytes()),
        ));
        let mut p = vec![0u8; 16];
        p.extend(nla(IFLA_IFNAME, b"gfz1\0"));
        p.extend(nla(IFLA_LINKINFO | NLA_F_NESTED, &info));
        let (err, _) = rtnl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &p)?;
        if err != libc::EPERM {
            wrong.push(format!("RTM_NEWLINK gtp: errno {err}"));
        }
        Ok(wrong)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("unprivileged thread panicked"))??;
    drop(udp);
    Ok((
        format!(
            "{pdp_calls} PDP requests ({pdp_ok} accepted; refused by errno: {errnos:?}), \
             {links} gtp NEWLINKs ({made} devices made, dumped, deleted)"
        ),
        unpriv,
    ))
}

/// A link's ifindex, from `ip -o link show` in the calling thread's netns.
fn ifindex_of(name: &str) -> Result<u32> {
    let o = std::process::Command::new("ip")
        .args(["-o", "link", "show", name])
        .output()?;
    String::from_utf8_lossy(&o.stdout)
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("no link {name}"))
}
