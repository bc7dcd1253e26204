//! SCTP servers in the shapes they come in, moved A->B by `criu dump /
//! restore --lib` under two-way traffic on several streams: forking
//! (inetd-style, pre-forked workers, a third-party `socat ... fork`), an
//! association passed to another process over SCM_RIGHTS, a listener bound
//! to several addresses, an AF_INET6 listener with IPv4 peers. And the
//! shapes the plugin cannot carry yet: their dump fails with an error
//! naming the socket, and the server and its associations run on.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::criu;
use crate::net::{self, Topology, HOST_A, HOST_B};
use crate::sctp_traffic::{Sent, Tally};
use crate::suites::plugin::{connect_from_c, echo_round, kill_restored, plugin_dir, Enb};
use crate::suites::sctp_repair::peer_status;

/// The server's service address, and a second one for bindx.
const SVC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const SVC2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 51);
const PORT: u16 = 36412;
const VETH: &str = "shp0";

/// A server in a container on host A with `peers` eNBs from C streaming
/// through it (to `SVC`, or alternately `SVC` and `SVC2`).
struct Rig {
    topo: Topology,
    ctr: String,
    addrs: Vec<Ipv4Addr>,
}

impl Rig {
    fn new(name: &str, addrs: &[Ipv4Addr]) -> Result<Rig> {
        let mut topo = Topology::build()?;
        let ctr = topo.container(HOST_A, name, VETH, addrs[0])?;
        for a in &addrs[1..] {
            net::ip(&["-n", &ctr, "addr", "add", &format!("{a}/24"), "dev", "eth0"])?;
        }
        Ok(Rig {
            topo,
            ctr,
            addrs: addrs.to_vec(),
        })
    }

    fn server(&self, listen: &str, also: &[String], shape: &str) -> Result<std::process::Child> {
        let mut args = vec!["sctp-server", "--listen", listen, "--shape", shape];
        for a in also {
            args.extend(["--also", a]);
        }
        crate::apps::spawn_in(&self.ctr, &args)
    }

    /// `n` eNBs, spread over the service addresses.
    fn enbs(&self, n: usize) -> Result<Vec<(Enb, (i32, i32))>> {
        let mut v = Vec::new();
        for i in 0..n {
            let to = SocketAddrV4::new(self.addrs[i % self.addrs.len()], PORT);
            let s = connect_from_c(to)?;
            let st = peer_status(&s)?;
            v.push((Enb::start(s)?, st));
        }
        Ok(v)
    }

    /// Moves the tree rooted at `app` to B; the restored root's pid.
    fn move_to_b(
        &self,
        app: &mut std::process::Child,
        work: &str,
        extra: &[&str],
    ) -> Result<(u32, String)> {
        let dumped = self.dump_to_b(app, work, extra)?;
        let (restored, rs) = self.restore_on_b(&dumped.img_b, extra)?;
        Ok((
            restored,
            format!(
                "checkpoint {:.2}s, transfer {:.2}s ({} bytes), restore {:.2}s",
                dumped.checkpoint.as_secs_f64(),
                dumped.transfer.as_secs_f64(),
                dumped.bytes,
                rs.as_secs_f64()
            ),
        ))
    }

    /// Dumps the tree rooted at `app` with the plugin, waits until it is
    /// gone and sends the images to host B.
    fn dump_to_b(
        &self,
        app: &mut std::process::Child,
        work: &str,
        extra: &[&str],
    ) -> Result<Dumped> {
        let pid = app.id();
        let dir = crate::suites::baseline::work_dir(work)?;
        let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
        let lib = plugin_dir();
        let mut dump_args = vec!["--lib", lib.as_str()];
        dump_args.extend(extra);
        let tree = tree_of(pid);
        let checkpoint = criu::dump(HOST_A, pid, &img_a, &dump_args)?;
        // CRIU restores the same pids: the dumped tree must be gone first,
        // the root reaped by us, orphans by init.
        let _ = app.wait();
        gone(&tree, Duration::from_secs(20))?;
        let (transfer, bytes) =
            crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
        Ok(Dumped {
            img_b,
            checkpoint,
            transfer,
            bytes,
        })
    }

    /// Restores the images in `img_b` on host B with the plugin and
    /// announces the service addresses: the restored root's pid.
    fn restore_on_b(&self, img_b: &std::path::Path, extra: &[&str]) -> Result<(u32, Duration)> {
        let lib = plugin_dir();
        let ext = format!("veth[eth0]:{VETH}@br0");
        let mut restore_args = vec!["--lib", lib.as_str(), "--external", ext.as_str()];
        restore_args.extend(extra);
        let (rs, restored) = criu::restore(HOST_B, img_b, &restore_args)?;
        for a in &self.addrs {
            net::announce(&format!("/proc/{restored}/ns/net"), "eth0", *a)?;
        }
        Ok((restored, rs))
    }
}

/// A tree dumped on A, its images on B.
struct Dumped {
    img_b: std::path::PathBuf,
    checkpoint: Duration,
    transfer: Duration,
    bytes: u64,
}

/// Waits for the eNBs' echoes, checks every association is the same one
/// and lost, duplicated or reordered nothing; then a new eNB is served.
fn finish(enbs: Vec<(Enb, (i32, i32))>, new_peer: bool) -> Result<String> {
    std::thread::sleep(Duration::from_secs(2));
    if new_peer {
        let e = connect_from_c(SocketAddrV4::new(SVC, PORT)).context("a new eNB connecting")?;
        let (mut s, mut t) = (Sent::default(), Tally::default());
        echo_round(&e, &mut s, &mut t, 5).context("a new eNB's echoes")?;
    }
    let mut total = 0;
    let mut gap = Duration::ZERO;
    for (i, (enb, before)) in enbs.into_iter().enumerate() {
        let after =
            peer_status(&enb.sock).with_context(|| format!("eNB {}: {}", i + 1, enb.failure()))?;
        ensure!(after == before, "eNB {}'s association changed", i + 1);
        let (t, g, _) = enb.finish().with_context(|| format!("eNB {}", i + 1))?;
        total += t.received;
        gap = gap.max(g);
    }
    Ok(format!(
        "{total} messages echoed on {} streams, 0 lost, duplicated or reordered; \
         longest silence {:.2}s; same associations{}",
        crate::suites::plugin::STREAMS,
        gap.as_secs_f64(),
        if new_peer {
            "; a new eNB was served"
        } else {
            ""
        }
    ))
}

/// Runs `shape` of our server with 3 eNBs through a move A->B.
fn move_server(work: &str, shape: &str, addrs: &[Ipv4Addr], listen: &str) -> Result<()> {
    let rig = Rig::new(work, addrs)?;
    let also: Vec<String> = addrs[1..]
        .iter()
        .map(|a| SocketAddrV4::new(*a, PORT).to_string())
        .collect();
    let mut app = rig.server(listen, &also, shape)?;
    std::thread::sleep(Duration::from_millis(300));
    let enbs = rig.enbs(3)?;
    std::thread::sleep(Duration::from_secs(1));
    let (pid, took) = rig.move_to_b(&mut app, work, &[])?;
    let r = finish(enbs, true);
    kill_tree(pid);
    drop(rig.topo);
    println!("  {shape} server on {listen}: {took}; {}", r?);
    Ok(())
}

/// `pid` and its descendants.
fn tree_of(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    if let Ok(kids) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            v.extend(tree_of(k));
        }
    }
    v
}

/// Waits until none of `pids` exists any more.
fn gone(pids: &[u32], limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let states: Vec<String> = left
                .iter()
                .map(|p| {
                    let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    format!(
                        "{p}: {}",
                        st.split(") ")
                            .nth(1)
                            .unwrap_or("?")
                            .chars()
                            .take(12)
                            .collect::<String>()
                    )
                })
                .collect();
            bail!("the dumped processes are still there after {limit:?}: {states:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a restored process and its children.
fn kill_tree(pid: u32) {
    if let Ok(kids) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            kill_tree(k);
        }
    }
    kill_restored(pid);
}

/// inetd-style: a child per association (3), the listener in the parent
/// only. CRIU restores the children's associations and the listener in
/// whatever order; the listener binds its port even when they hold it.
pub fn forking_server() -> Result<()> {
    move_server("shapes-fork", "fork", &[SVC], &format!("{SVC}:{PORT}"))
}

/// Three pre-forked workers accept()ing on the one listener they all
/// inherited: one socket in four processes.
pub fn preforked_workers() -> Result<()> {
    move_server(
        "shapes-prefork",
        "prefork",
        &[SVC],
        &format!("{SVC}:{PORT}"),
    )
}

/// Each association accepted by the parent and passed to a worker over
/// SCM_RIGHTS, the parent keeping its copy.
pub fn passed_over_scm_rights() -> Result<()> {
    move_server("shapes-pass", "pass", &[SVC], &format!("{SVC}:{PORT}"))
}

/// A listener bound to two addresses with sctp_bindx, eNBs on both.
pub fn bindx_listener() -> Result<()> {
    move_server(
        "shapes-bindx",
        "fork",
        &[SVC, SVC2],
        &format!("{SVC}:{PORT}"),
    )
}

/// An AF_INET6 listener on [::] whose peers come over IPv4.
pub fn v6_listener_v4_peers() -> Result<()> {
    move_server("shapes-v6", "fork", &[SVC], &format!("[::]:{PORT}"))
}

/// A byte-stream client for servers that relay bytes, not messages (socat
/// through `cat`): numbered lines out, the same bytes back in order.
struct ByteClient {
    stop: Arc<AtomicBool>,
    /// Set once the writer has returned: only then is the count of bytes
    /// sent final (a line may go out after `stop` is seen by the reader).
    drain: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Result<u64>>,
    reader: std::thread::JoinHandle<Result<(u64, Duration)>>,
    sock: Arc<OwnedFd>,
}

fn line(i: u64) -> String {
    format!("{i:012}\n")
}

impl ByteClient {
    fn start(sock: OwnedFd) -> Result<ByteClient> {
        crate::suites::sctp_repair::tune_timers(&sock)?;
        crate::sctp_traffic::watch(sock.as_fd())?;
        let tv = nix::sys::time::TimeVal::new(0, 200_000);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, st, n) = (sock.clone(), stop.clone(), sent.clone());
        let writer = std::thread::spawn(move || -> Result<u64> {
            let mut i = 0u64;
            while !st.load(Ordering::SeqCst) {
                let l = line(i);
                crate::sctp_traffic::send(s.as_fd(), 0, false, l.as_bytes(), 0)
                    .with_context(|| format!("sending line {i}"))?;
                i += 1;
                n.store(i * 13, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(i)
        });
        let drain = Arc::new(AtomicBool::new(false));
        let (s, st) = (sock.clone(), drain.clone());
        let reader = std::thread::spawn(move || -> Result<(u64, Duration)> {
            let mut buf = vec![0u8; 65536];
            let mut want = Vec::new();
            let (mut next, mut at) = (0u64, 0u64);
            let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
            let mut idle = 0;
            while !st.load(Ordering::SeqCst) || (at < sent.load(Ordering::SeqCst) && idle < 75) {
                match crate::sctp_traffic::recv(s.as_fd(), &mut buf)? {
                    None => idle += 1,
                    Some(m) => {
                        idle = 0;
                        gap = gap.max(last.elapsed());
                        last = Instant::now();
                        for b in m {
                            if want.is_empty() {
                                want = line(next).into_bytes();
                                want.reverse();
                                next += 1;
                            }
                            let w = want.pop().unwrap_or(0);
                            if b != w {
                                bail!(
                                    "byte {at} is {b:#x}, not {w:#x}: lost, reordered or corrupt"
                                );
                            }
                            at += 1;
                        }
                    }
                }
            }
            Ok((at, gap))
        });
        Ok(ByteClient {
            stop,
            drain,
            writer,
            reader,
            sock,
        })
    }

    fn finish(self) -> Result<(u64, Duration)> {
        self.stop.store(true, Ordering::SeqCst);
        let lines = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"));
        self.drain.store(true, Ordering::SeqCst);
        let lines = lines??;
        let (bytes, gap) = self
            .reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        ensure!(
            bytes == lines * 13,
            "{bytes} of {} bytes came back",
            lines * 13
        );
        Ok((bytes, gap))
    }
}

/// A third-party forking server: `socat SCTP-LISTEN:..,fork EXEC:cat`, a
/// socat child and a `cat` per association, 3 clients streaming bytes.
pub fn socat_fork() -> Result<()> {
    let rig = Rig::new("shapes-socat", &[SVC])?;
    let dir = crate::suites::baseline::work_dir("shapes-socat")?;
    let listen = format!("SCTP4-LISTEN:{PORT},bind={SVC},fork,reuseaddr");
    let mut app = crate::apps::spawn_program_in(
        &rig.ctr,
        "socat",
        &[&listen, "EXEC:cat"],
        &dir.join("socat.out"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut clients = Vec::new();
    let mut before = Vec::new();
    for _ in 0..3 {
        let s = connect_from_c(SocketAddrV4::new(SVC, PORT))?;
        before.push(peer_status(&s)?);
        clients.push(ByteClient::start(s)?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let (pid, took) = rig.move_to_b(&mut app, "shapes-socat", &[])?;
    let r = (|| -> Result<String> {
        std::thread::sleep(Duration::from_secs(2));
        let mut total = 0;
        let mut gap = Duration::ZERO;
        for (i, (c, b)) in clients.into_iter().zip(before).enumerate() {
            ensure!(
                peer_status(&c.sock)? == b,
                "client {}'s association changed",
                i + 1
            );
            let (n, g) = c.finish().with_context(|| format!("client {}", i + 1))?;
            total += n;
            gap = gap.max(g);
        }
        Ok(format!(
            "{total} bytes echoed in order through 3 socat children and their cats, longest silence {:.2}s",
            gap.as_secs_f64()
        ))
    })();
    kill_tree(pid);
    drop(rig.topo);
    println!("  socat fork: {took}; {}", r?);
    Ok(())
}

/// A dump that must fail: criu's log names `why` and the process, the
/// server still runs, and each eNB's association keeps working (its
/// echoes keep coming).
fn refused(
    work: &str,
    mut app: std::process::Child,
    enbs: Vec<(Enb, (i32, i32))>,
    why: &str,
) -> Result<String> {
    let img = crate::suites::baseline::work_dir(work)?.join("images");
    let echoed_before: Vec<u64> = enbs.iter().map(|(e, _)| e.echoed()).collect();
    let r = (|| -> Result<String> {
        let line = dump_refused(&img, &mut app, why)?;
        // The associations run on: more echoes arrive.
        let deadline = Instant::now() + Duration::from_secs(20);
        for (i, (e, _)) in enbs.iter().enumerate() {
            while e.echoed() < echoed_before[i] + 20 {
                ensure!(
                    Instant::now() < deadline,
                    "eNB {} got no echo after the failed dump ({}); {}",
                    i + 1,
                    e.echoed(),
                    e.failure()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let summary = finish(enbs, false)?;
        Ok(format!("refused: {line}\n  then: {summary}"))
    })();
    let _ = app.kill();
    let _ = app.wait();
    r
}

/// Dumps `app` with the plugin into `img`, which must fail: returns the
/// plugin's error line from criu's log, once checked that it says `why`
/// and names the process and its fd, and that the process still runs.
fn dump_refused(img: &std::path::Path, app: &mut std::process::Child, why: &str) -> Result<String> {
    let r = criu::dump(HOST_A, app.id(), img, &["--lib", &plugin_dir()]);
    ensure!(r.is_err(), "criu dump succeeded; it must refuse: {why}");
    let log = std::fs::read_to_string(img.join("dump.log")).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("epcmig: cannot dump"))
        .map(str::to_string)
        .with_context(|| format!("no epcmig error in criu's log:\n{}", tail(&log)))?;
    ensure!(
        line.contains(why),
        "the error does not say \"{why}\": {line}"
    );
    ensure!(
        line.contains(&format!("pid {} fd ", app.id())),
        "the error does not name process {} and its fd: {line}",
        app.id()
    );
    // The server alone holds the socket: not criu, nor its guardian.
    ensure!(
        line.matches("pid ").count() == 1,
        "the error names other holders than process {}: {line}",
        app.id()
    );
    ensure!(
        app.try_wait()?.is_none(),
        "the process exited after the failed dump"
    );
    Ok(line)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Our one-to-many echo server (one SOCK_SEQPACKET socket for every peer,
/// each echo sent by the `sctp_assoc_t` learned before the move) with 3
/// eNBs: the associations come back on one socket under their ids.
pub fn one_to_many() -> Result<()> {
    move_server(
        "shapes-1tom",
        "one-to-many",
        &[SVC],
        &format!("{SVC}:{PORT}"),
    )
}

/// The one-to-many server on an AF_INET6 socket on [::], its 3 eNBs
/// coming over IPv4 (v4-mapped peer addresses).
pub fn one_to_many_v6() -> Result<()> {
    move_server(
        "shapes-1tom-v6",
        "one-to-many",
        &[SVC],
        &format!("[::]:{PORT}"),
    )
}

/// The one-to-many server bound to two addresses with sctp_bindx, its
/// eNBs on both.
pub fn one_to_many_bindx() -> Result<()> {
    move_server(
        "shapes-1tom-bindx",
        "one-to-many",
        &[SVC, SVC2],
        &format!("{SVC}:{PORT}"),
    )
}

/// A server that peels every association off its one-to-many listener
/// (sctp_peeloff) at its first message and serves it in a thread, with 3
/// eNBs: each peeled-off association comes back on a socket of its own,
/// under its id, and the listener still serves a new eNB.
pub fn peeled_off() -> Result<()> {
    move_server(
        "shapes-peeloff",
        "peeloff",
        &[SVC],
        &format!("{SVC}:{PORT}"),
    )
}

/// How many times [`one_to_many_crate_moves`] moves the socket unless
/// `EPCMIG_SHAPES_MOVES` says otherwise (100 for the long run).
const CRATE_MOVES: usize = 20;

/// How long after a thaw every eNB of [`one_to_many_crate_moves`] must
/// have had an echo: a few of its backed-off retransmission timers (RTO at
/// most 1 s).
const RESUME_LIMIT: Duration = Duration::from_secs(10);

/// A listening one-to-many socket bound to `addr` in the calling netns.
fn seqpacket_listener(addr: SocketAddrV4) -> Result<OwnedFd> {
    use nix::sys::socket::{self, SockaddrIn};
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket(2), owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fd nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::suites::sctp_repair::set_streams(&s, crate::suites::plugin::STREAMS)?;
    // S1-style timers for every association it will have, as the eNBs'.
    crate::suites::sctp_repair::tune_timers(&s)?;
    socket::bind(s.as_raw_fd(), &SockaddrIn::from(addr)).context("bind")?;
    socket::listen(&s, socket::Backlog::new(16)?).context("listen")?;
    Ok(s)
}

/// An echo for one-to-many socket `sock` (swapped by the mover between
/// calls): what arrives goes back by the association id learned at a
/// peer's first message; what cannot be sent yet waits, in order.
struct ManyEcho {
    ids: std::collections::HashMap<String, i32>,
    pending: std::collections::VecDeque<(i32, u16, bool, Vec<u8>)>,
    buf: Vec<u8>,
    /// The pieces so far of a message delivered partially: a move may
    /// come between two of them.
    partial: Vec<u8>,
}

impl ManyEcho {
    /// One step; whether it did anything.
    fn step(&mut self, sock: std::os::fd::BorrowedFd<'_>) -> Result<bool> {
        use crate::sctp_traffic as t;
        let mut busy = false;
        while let Some((id, stream, unordered, m)) = self.pending.front() {
            match t::send_to_assoc(sock, *id, *stream, *unordered, m, libc::MSG_DONTWAIT) {
                Ok(()) => {
                    self.pending.pop_front();
                    busy = true;
                }
                // Read on meanwhile: one association's full window must
                // not stop the others'.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => bail!("echo to association {id}: {e}"),
            }
        }
        if self.pending.len() > 10_000 {
            return Ok(busy);
        }
        let Some((n, eor, from)) = t::recv_piece_from(sock, &mut self.buf, libc::MSG_DONTWAIT)?
        else {
            return Ok(busy);
        };
        self.partial.extend_from_slice(&self.buf[..n]);
        if !eor {
            return Ok(true);
        }
        let m = std::mem::take(&mut self.partial);
        let key = from.to_string();
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = t::assoc_id_of(sock, &from).context("association id")?;
                self.ids.insert(key, id);
                id
            }
        };
        let (stream, unordered) = t::route(&m).unwrap_or((0, false));
        self.pending.push_back((id, stream, unordered, m));
        Ok(true)
    }
}

/// The u32 at byte `at` of a kernel blob, 0 past its end.
fn ne_u32(blob: &[u8], at: usize) -> u32 {
    blob.get(at..at + 4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// `EPCMIG_TRACE_MOVES`: the socket's receive memory and, for each
/// association of `snap`, its TSNs, windows, TSN map and queue records.
fn trace_move(when: &str, sock: std::os::fd::BorrowedFd<'_>, snap: &sctp_repair::Snapshot) {
    use epcmig_sys::sctp_repair::{sctp_repair_assoc as Ra, sctp_repair_tsn_map as Tm};
    use std::mem::offset_of;
    let line: Vec<String> = snap
        .members
        .iter()
        .map(|m| {
            let a = m.snap.assoc_info();
            let q: Vec<String> = m
                .snap
                .queues
                .iter()
                .map(|r| {
                    let (f, tsn) = (ne_u32(&r.data, 8), ne_u32(&r.data, 12));
                    format!("{}/{f:#x}/{tsn}/{}", r.queue, r.data.len())
                })
                .collect();
            let (ra, tm) = (&m.snap.assoc, &m.snap.tsn_map);
            let ngaps = tm
                .get(offset_of!(Tm, srtm_num_gaps)..)
                .and_then(|b| b.get(..2))
                .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
            let gaps: Vec<String> = (0..usize::from(ngaps))
                .map(|i| {
                    let w = ne_u32(tm, offset_of!(Tm, srtm_gaps) + 4 * i);
                    format!("{}-{}", w & 0xffff, w >> 16)
                })
                .collect();
            format!(
                "{}: peer_ctsn {:?} next_tsn {:?} acked {:?} rwnd {} a_rwnd {} over {} \
                 press {} map cum {} max {} gaps {gaps:?} q {:?}",
                m.id,
                a.as_ref().map(|a| a.peer_ctsn),
                a.as_ref().map(|a| a.next_tsn),
                a.as_ref().map(|a| a.ctsn_ack_point),
                ne_u32(ra, offset_of!(Ra, sra_rwnd)),
                ne_u32(ra, offset_of!(Ra, sra_a_rwnd)),
                ne_u32(ra, offset_of!(Ra, sra_rwnd_over)),
                ne_u32(ra, offset_of!(Ra, sra_rwnd_press)),
                ne_u32(tm, offset_of!(Tm, srtm_cum_tsn)),
                ne_u32(tm, offset_of!(Tm, srtm_max_tsn_seen)),
                q
            )
        })
        .collect();
    // SO_MEMINFO: rmem_alloc, rcvbuf (SK_MEMINFO_RMEM_ALLOC, _RCVBUF).
    let mut mi = [0u32; 9];
    let mut len = std::mem::size_of_val(&mi) as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of `len` bytes we own.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            mi.as_mut_ptr().cast(),
            &mut len,
        )
    };
    println!(
        "  {when}: rmem {} rcvbuf {} ({rc}): {}",
        mi[0],
        mi[1],
        line.join("; ")
    );
}

/// A one-to-many MME socket (listening, 3 eNBs on C streaming on 4 streams
/// both ways) moved A<->B 100 times by the crate alone: frozen, captured
/// through the serialised form, closed, its container made again on the
/// other host, restored, thawed. Its echo answers each eNB by the
/// association id it learned before the first move. At the end: every
/// message echoed once and in order, the same associations, the same ids in
/// every snapshot, and a new eNB is served.
pub fn one_to_many_crate_moves() -> Result<()> {
    use std::sync::Mutex;
    let moves: usize = crate::env_num("EPCMIG_SHAPES_MOVES").unwrap_or(CRATE_MOVES);
    let mut topo = Topology::build()?;
    let mut ctr = topo.container(HOST_A, "many", VETH, SVC)?;
    let at = SocketAddrV4::new(SVC, PORT);
    let sock = net::in_netns(&ctr, move || seqpacket_listener(at))?;
    let shared = Arc::new(Mutex::new(sock));
    let stop = Arc::new(AtomicBool::new(false));
    // What stopped the echo, seen after each move (not only at the end).
    let echo_failed = Arc::new(Mutex::new(None::<String>));
    let echo = {
        let (s, st, failed) = (shared.clone(), stop.clone(), echo_failed.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut e = ManyEcho {
                ids: Default::default(),
                pending: Default::default(),
                buf: vec![0u8; 65536],
                partial: Vec::new(),
            };
            while !st.load(Ordering::SeqCst) {
                let busy = {
                    let g = s.lock().unwrap_or_else(|p| p.into_inner());
                    e.step(g.as_fd())
                };
                let busy = match busy {
                    Ok(b) => b,
                    Err(err) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("{err:#}"));
                        return Err(err);
                    }
                };
                if !busy {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    };
    let mut enbs = Vec::new();
    for _ in 0..3 {
        let s = connect_from_c(at)?;
        let st = peer_status(&s)?;
        enbs.push((Enb::start(s)?, st));
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let r = (|| -> Result<(Vec<i32>, usize, Duration)> {
        let mut ids: Option<Vec<i32>> = None;
        let mut size = 0;
        let mut slowest = Duration::ZERO;
        for i in 0..moves {
            let when = || format!("move {} of {moves}", i + 1);
            // A busy socket (a message in partial delivery) is thawed
            // and tried again, the echo reading on in between, as the
            // application does between the plugin's tries.
            let deadline = Instant::now() + Duration::from_secs(5);
            let (mut g, snap) = loop {
                let g = shared.lock().unwrap_or_else(|p| p.into_inner());
                // Kept frozen: closed below, silently.
                let r = sctp_repair::freeze_and_capture(g.as_fd(), Duration::ZERO).map(
                    |(frozen, snap)| {
                        frozen.release();
                        snap
                    },
                );
                match r {
                    Err(sctp_repair::Error::Busy) if Instant::now() < deadline => {
                        drop(g);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    r => break (g, r.with_context(when)?),
                }
            };
            if std::env::var_os("EPCMIG_TRACE_MOVES").is_some() {
                trace_move(&when(), g.as_fd(), &snap);
            }
            let now: Vec<i32> = snap.members.iter().map(|m| m.id).collect();
            ensure!(now.len() == 3, "{}: {} associations", when(), now.len());
            match &ids {
                None => ids = Some(now),
                Some(want) => ensure!(*want == now, "{}: ids {now:?}, not {want:?}", when()),
            }
            let bytes = snap.encode();
            size = bytes.len();
            net::lock(&ctr)?;
            // Closed in repair mode: the peers hear nothing.
            drop(std::mem::replace(
                &mut *g,
                crate::suites::sctp_repair::sctp_socket()?,
            ));
            let to = if i % 2 == 0 { HOST_B } else { HOST_A };
            topo.remove_container(&ctr)?;
            ctr = topo.container_locked(to, "many", VETH, SVC)?;
            let restored = net::in_netns(&ctr, move || {
                let snap = sctp_repair::Snapshot::decode(&bytes)?;
                sctp_repair::restore(&snap).map_err(anyhow::Error::from)
            })
            .with_context(when)?;
            net::unlock(&ctr)?;
            *g = restored.thaw()?;
            drop(g);
            net::announce(&ctr, "eth0", SVC)?;
            // The next move only once every eNB has had an echo since
            // this one: with the socket frozen nearly all the time, their
            // retransmissions (each 1 s apart at most) would land in a
            // gap of a few hundred ms per move by chance only, and 40
            // misses end an association. A move that carries no traffic
            // is a failure of its own.
            let resumed = Instant::now();
            let marks: Vec<u64> = enbs.iter().map(|(e, _)| e.echoed()).collect();
            while enbs.iter().zip(&marks).any(|((e, _), m)| e.echoed() <= *m) {
                if resumed.elapsed() > RESUME_LIMIT {
                    trace_move(
                        &format!("{}, stalled", when()),
                        shared.lock().unwrap_or_else(|p| p.into_inner()).as_fd(),
                        &snap,
                    );
                    let counts: Vec<String> = enbs
                        .iter()
                        .zip(&marks)
                        .map(|((e, _), m)| format!("{} -> {}", m, e.echoed()))
                        .collect();
                    bail!(
                        "{}: an eNB had no echo within {:?} of the thaw (echoes {})",
                        when(),
                        RESUME_LIMIT,
                        counts.join(", ")
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            slowest = slowest.max(resumed.elapsed());
            if let Some(why) = echo_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                bail!("{}: the echo stopped: {why}", when());
            }
            for (k, (e, before)) in enbs.iter().enumerate() {
                let now = peer_status(&e.sock)
                    .with_context(|| format!("{}: eNB {}: {}", when(), k + 1, e.failure()))?;
                ensure!(
                    now == *before,
                    "{}: eNB {}'s association changed",
                    when(),
                    k + 1
                );
            }
        }
        Ok((ids.unwrap_or_default(), size, slowest))
    })();
    let moved = started.elapsed();
    let summary = r.and_then(|(ids, size, slowest)| {
        let s = finish(enbs, true)?;
        Ok(format!(
            "{moves} moves A<->B in {:.1}s of a one-to-many socket with associations {ids:?} \
             ({size}-byte snapshot), every eNB echoed after each within {:.2}s of the thaw; {s}",
            moved.as_secs_f64(),
            slowest.as_secs_f64()
        ))
    });
    stop.store(true, Ordering::SeqCst);
    let echoed = echo
        .join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))?;
    drop(topo);
    let summary = summary?;
    echoed.context("echo")?;
    println!("  {summary}");
    Ok(())
}

/// A server with 3 eNBs that also dials a peer nobody answers: that
/// socket stays in its handshake, which no snapshot can hold. The dump
/// fails naming it once the plugin's patience is spent, and every eNB's
/// echoes go on.
pub fn handshake_refused() -> Result<()> {
    let rig = Rig::new("shapes-dial", &[SVC])?;
    let args = [
        "sctp-server".to_string(),
        "--listen".into(),
        format!("{SVC}:{PORT}"),
        "--shape".into(),
        "one-to-many".into(),
        "--dial".into(),
        // On the LAN, where no host has it: ARP fails, INIT never leaves.
        format!("192.0.2.99:{PORT}"),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = crate::apps::spawn_in(&rig.ctr, &argv)?;
    std::thread::sleep(Duration::from_millis(300));
    let enbs = rig.enbs(3)?;
    std::thread::sleep(Duration::from_secs(1));
    let r = refused("shapes-dial", app, enbs, "busy (handshake");
    drop(rig.topo);
    println!("  {}", r?);
    Ok(())
}

/// lksctp-tools' `sctp_darn -l` (a one-to-many listener that prints what
/// it receives) with a peer sending to it, moved A->B: every message sent
/// before and after the move is printed once, on the same association.
pub fn sctp_darn() -> Result<()> {
    let rig = Rig::new("shapes-darn", &[SVC])?;
    // Not the move's work dir, which the move empties.
    let dir = crate::suites::baseline::work_dir("shapes-darn-out")?;
    let out = dir.join("darn.out");
    // Unbuffered: what it printed is in the file when it is counted.
    let mut app = crate::apps::spawn_program_in(
        &rig.ctr,
        "stdbuf",
        &[
            "-o0",
            "sctp_darn",
            "-H",
            &SVC.to_string(),
            "-P",
            &PORT.to_string(),
            "-l",
        ],
        &out,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let s = connect_from_c(SocketAddrV4::new(SVC, PORT))?;
    crate::suites::sctp_repair::tune_timers(&s)?;
    let before = peer_status(&s)?;
    let mut sent = Sent::default();
    let count = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .matches("DATA(")
            .count()
    };
    let wait_for = |n: usize| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&out) < n {
            ensure!(
                Instant::now() < deadline,
                "sctp_darn printed {} of {n} messages:\n{}",
                count(&out),
                std::fs::read_to_string(&out).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    for i in 0..20 {
        sent.send_next(s.as_fd(), 1, i)?;
    }
    wait_for(20)?;
    let (pid, took) = rig.move_to_b(&mut app, "shapes-darn", &[])?;
    let r = (|| -> Result<String> {
        for i in 20..40 {
            sent.send_next(s.as_fd(), 1, i)?;
        }
        wait_for(40)?;
        std::thread::sleep(Duration::from_millis(500));
        ensure!(
            count(&out) == 40,
            "sctp_darn printed {} messages, 40 were sent",
            count(&out)
        );
        ensure!(peer_status(&s)? == before, "the peer's association changed");
        Ok(format!(
            "sctp_darn: {took}; printed each of 40 messages once (20 after the move), same association"
        ))
    })();
    kill_tree(pid);
    drop(rig.topo);
    println!("  {}", r?);
    Ok(())
}

/// A listener that accepts nothing until told to, with 2 eNBs whose
/// associations wait in its accept queue, 20 messages each waiting in it
/// too: moved A->B, then told to accept. accept() returns both, every
/// message is echoed once and in order (the 20 first), the associations
/// are the same ones, and a new eNB is served.
pub fn accept_queue() -> Result<()> {
    let rig = Rig::new("shapes-acceptq", &[SVC])?;
    // Not the move's work dir, which the move empties.
    let go = crate::suites::baseline::work_dir("shapes-acceptq-go")?.join("accept");
    let mut app = crate::apps::spawn_in(
        &rig.ctr,
        &[
            "sctp-listen",
            "--listen",
            &format!("{SVC}:{PORT}"),
            "--accept-when",
            &go.to_string_lossy(),
        ],
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let mut peers = Vec::new();
    for _ in 0..2 {
        let s = connect_from_c(SocketAddrV4::new(SVC, PORT))?;
        crate::suites::sctp_repair::tune_timers(&s)?;
        let before = peer_status(&s)?;
        let mut sent = Sent::default();
        for i in 0..20 {
            sent.send_next(s.as_fd(), crate::suites::plugin::STREAMS, i)?;
        }
        peers.push((s, before, sent, Tally::default()));
    }
    for (s, ..) in &peers {
        wait_acked(s, Duration::from_secs(10))?;
    }
    let (pid, took) = rig.move_to_b(&mut app, "shapes-acceptq", &[])?;
    let r = (|| -> Result<String> {
        std::fs::write(&go, b"go").context("telling the server to accept")?;
        let mut total = 0;
        for (i, (s, before, mut sent, mut tally)) in peers.into_iter().enumerate() {
            // The 20 that waited with the association, then 20 more.
            echo_round(&s, &mut sent, &mut tally, 0)
                .with_context(|| format!("eNB {}: the messages that waited", i + 1))?;
            echo_round(&s, &mut sent, &mut tally, 20)
                .with_context(|| format!("eNB {}: after the accept", i + 1))?;
            ensure!(
                peer_status(&s)? == before,
                "eNB {}'s association changed",
                i + 1
            );
            total += tally.received;
        }
        let e = connect_from_c(SocketAddrV4::new(SVC, PORT)).context("a new eNB")?;
        let (mut s, mut t) = (Sent::default(), Tally::default());
        echo_round(&e, &mut s, &mut t, 5).context("a new eNB's echoes")?;
        Ok(format!(
            "accept queue: {took}; 2 associations waiting for accept() with 20 messages each moved, accepted after the move: {total} messages echoed once and in order, same associations; a new eNB was served"
        ))
    })();
    kill_tree(pid);
    drop(rig.topo);
    println!("  {}", r?);
    Ok(())
}

/// Waits until the association of `s` has no unacknowledged DATA.
fn wait_acked(s: &OwnedFd, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let u = crate::suites::sctp_repair::unacked(s)?;
        if u == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{u} DATA chunk(s) still unacknowledged after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The options [`one_to_many_options`] sets, by their uapi numbers.
const SCTP_AUTOCLOSE: libc::c_int = epcmig_sys::linux::SCTP_AUTOCLOSE as libc::c_int;
const SCTP_DEFAULT_SNDINFO: libc::c_int = epcmig_sys::linux::SCTP_DEFAULT_SNDINFO as libc::c_int;

/// SCTP_AUTOCLOSE in seconds for [`one_to_many_options`].
const AUTOCLOSE_SECS: u32 = 3;

/// The per-association send defaults (stream, PPID) [`one_to_many_options`]
/// gives its two associations: S1AP's PPID 18 on one, 60 (NGAP) on the other.
const SNDINFO: [(u16, u32); 2] = [(3, 18), (5, 60)];

/// `sock`'s SCTP_DEFAULT_SNDINFO for association `id`: (stream, PPID).
fn default_sndinfo(sock: &OwnedFd, id: i32) -> Result<(u16, u32)> {
    // struct sctp_sndinfo { u16 sid, flags; u32 ppid, context; s32 assoc_id }
    let mut v = [0u8; 16];
    v[12..].copy_from_slice(&id.to_ne_bytes());
    crate::suites::sctp_repair::sctp_getsockopt(
        sock,
        SCTP_DEFAULT_SNDINFO,
        "SCTP_DEFAULT_SNDINFO",
        &mut v,
    )?;
    Ok((
        u16::from_ne_bytes([v[0], v[1]]),
        u32::from_ne_bytes([v[4], v[5], v[6], v[7]]),
    ))
}

/// A one-to-many socket's own settings and each association's, moved A->B
/// by the crate: SCTP_AUTOCLOSE (3 s) and a different SCTP_DEFAULT_SNDINFO
/// per association come back as they were, and autoclose still works
/// after the thaw: of two eNBs, the one that stays silent is shut down by
/// the restored socket within a few seconds, the one that keeps talking
/// is not.
pub fn one_to_many_options() -> Result<()> {
    use crate::suites::sctp_repair::{sctp_getsockopt, sctp_setsockopt};
    let mut topo = Topology::build()?;
    let mut ctr = topo.container(HOST_A, "manyopt", VETH, SVC)?;
    let at = SocketAddrV4::new(SVC, PORT);
    let sock = net::in_netns(&ctr, move || seqpacket_listener(at))?;
    sctp_setsockopt(
        &sock,
        SCTP_AUTOCLOSE,
        "SCTP_AUTOCLOSE",
        &AUTOCLOSE_SECS.to_ne_bytes(),
    )?;
    crate::sctp_traffic::watch(sock.as_fd())?;
    let (talker, silent) = (connect_from_c(at)?, connect_from_c(at)?);
    let mut ids = Vec::new();
    let mut buf = vec![0u8; 65536];
    for (k, s) in [&talker, &silent].into_iter().enumerate() {
        crate::suites::sctp_repair::tune_timers(s)?;
        crate::sctp_traffic::watch(s.as_fd())?;
        crate::sctp_traffic::send(s.as_fd(), 0, false, format!("hello {k}").as_bytes(), 0)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.len() < 2 {
        ensure!(Instant::now() < deadline, "{} of 2 eNBs heard", ids.len());
        if let Some((m, from)) = crate::sctp_traffic::recv_from(sock.as_fd(), &mut buf)? {
            if m.starts_with(b"hello") {
                ids.push(crate::sctp_traffic::assoc_id_of(sock.as_fd(), &from)?);
            }
        }
    }
    for (id, (sid, ppid)) in ids.iter().zip(SNDINFO) {
        let mut v = [0u8; 16];
        v[..2].copy_from_slice(&sid.to_ne_bytes());
        v[4..8].copy_from_slice(&ppid.to_ne_bytes());
        v[12..].copy_from_slice(&id.to_ne_bytes());
        sctp_setsockopt(&sock, SCTP_DEFAULT_SNDINFO, "SCTP_DEFAULT_SNDINFO", &v)?;
    }
    let (frozen, snap) = sctp_repair::freeze_and_capture(sock.as_fd(), Duration::from_secs(5))?;
    // Kept frozen: closed below, silently.
    frozen.release();
    let bytes = snap.encode();
    net::lock(&ctr)?;
    drop(sock);
    topo.remove_container(&ctr)?;
    ctr = topo.container_locked(HOST_B, "manyopt", VETH, SVC)?;
    let sock = net::in_netns(&ctr, move || {
        let snap = sctp_repair::Snapshot::decode(&bytes)?;
        sctp_repair::restore(&snap).map_err(anyhow::Error::from)
    })?;
    net::unlock(&ctr)?;
    let sock = sock.thaw()?;
    let thawed = Instant::now();
    net::announce(&ctr, "eth0", SVC)?;
    let r = (|| -> Result<String> {
        let mut v = [0u8; 4];
        sctp_getsockopt(&sock, SCTP_AUTOCLOSE, "SCTP_AUTOCLOSE", &mut v)?;
        ensure!(
            u32::from_ne_bytes(v) == AUTOCLOSE_SECS,
            "SCTP_AUTOCLOSE is {} after the move, not {AUTOCLOSE_SECS}",
            u32::from_ne_bytes(v)
        );
        for (id, want) in ids.iter().zip(SNDINFO) {
            let got = default_sndinfo(&sock, *id)?;
            ensure!(
                got == want,
                "association {id}'s send defaults (stream, PPID) are {got:?} after the move, not {want:?}"
            );
        }
        // The talker keeps its association busy, and reads its echoes
        // of nothing: the server side sends nothing, the talker's DATA
        // restarts the autoclose timer on the server.
        let limit = Duration::from_secs(u64::from(AUTOCLOSE_SECS) * 3);
        let mut closed = None;
        while thawed.elapsed() < limit {
            crate::sctp_traffic::send(talker.as_fd(), 0, false, b"still here", 0)?;
            // The server reads on: the autoclose timer runs on idle time.
            while let Some(_m) =
                crate::sctp_traffic::recv_from_flags(sock.as_fd(), &mut buf, libc::MSG_DONTWAIT)?
            {
            }
            if closed.is_none() && sctp_repair::association_count(sock.as_fd())? == 1 {
                closed = Some(thawed.elapsed());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let Some(after) = closed else {
            bail!(
                "the silent association was not closed within {limit:?} of the thaw (autoclose {AUTOCLOSE_SECS} s); {} association(s) left",
                sctp_repair::association_count(sock.as_fd())?
            );
        };
        ensure!(
            peer_status(&talker).is_ok(),
            "the talking eNB's association ended too"
        );
        ensure!(
            peer_status(&silent).is_err(),
            "the silent eNB still sees its association established"
        );
        Ok(format!(
            "autoclose {AUTOCLOSE_SECS} s and per-association send defaults {SNDINFO:?} kept; \
             the silent association was closed {:.1}s after the thaw, the talking one stayed",
            after.as_secs_f64()
        ))
    })();
    drop(topo);
    println!("  {}", r?);
    Ok(())
}

/// Takes association id `id` on this kernel (ids are global to it, not
/// per netns): a loopback association in host B's netns read out and made
/// again under `id` on a one-to-many socket, kept frozen (it never sends).
fn hold_assoc_id(id: i32) -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{self, SockaddrIn};
    use std::os::fd::AsRawFd;
    net::in_netns(HOST_B, move || {
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7399);
        let l = seqpacket_listener(at)?;
        let c = crate::suites::sctp_repair::sctp_socket()?;
        socket::connect(c.as_raw_fd(), &SockaddrIn::from(at)).context("loopback connect")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while sctp_repair::association_count(l.as_fd())? != 1 {
            ensure!(Instant::now() < deadline, "no loopback association");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (frozen, mut snap) =
            sctp_repair::freeze_and_capture(l.as_fd(), Duration::from_secs(5))?;
        frozen.release();
        let m = snap.members.first_mut().context("no member captured")?;
        m.id = id;
        // Closed in repair mode: its own id goes, silently.
        drop(l);
        let held = sctp_repair::restore(&snap)
            .context("taking the id")?
            .release();
        // The stand-in first, then its peer: dropped in that order, the
        // stand-in goes silently (repair mode) before the peer's ABORT.
        Ok((held, c))
    })
}

/// A one-to-many server restored on a host where one of its association
/// ids is already taken (an application knows its peers by those ids, and
/// ids are global to a kernel): the restore fails, naming the id; no
/// restored process or association is left; the base stations, which
/// heard nothing, are served by the same images restored once the id is
/// free, with every message echoed once and in order.
pub fn one_to_many_id_taken() -> Result<()> {
    let rig = Rig::new("shapes-1tom-id", &[SVC])?;
    let mut app = rig.server(&format!("{SVC}:{PORT}"), &[], "one-to-many")?;
    std::thread::sleep(Duration::from_millis(300));
    let enbs = rig.enbs(3)?;
    std::thread::sleep(Duration::from_secs(1));
    let ids = crate::suites::sctp_repair::assoc_ids_in(&rig.ctr)?;
    ensure!(ids.len() == 3, "the server has associations {ids:?}, not 3");
    let dumped = rig.dump_to_b(&mut app, "shapes-1tom-id", &[])?;
    let taken = ids[1];
    let holder = hold_assoc_id(taken)?;
    let r = (|| -> Result<String> {
        let refused = rig.restore_on_b(&dumped.img_b, &[]);
        let log = std::fs::read_to_string(dumped.img_b.join("restore.log")).unwrap_or_default();
        ensure!(
            refused.is_err(),
            "criu restore succeeded although association id {taken} was taken"
        );
        // It names the socket and the id.
        let want = [
            "listening one-to-many SCTP socket of epcmig-sctp-".to_string(),
            format!("on {SVC}:{PORT} (3 association(s))"),
            format!("association id {taken} is taken"),
        ];
        let line = log
            .lines()
            .find(|l| want.iter().all(|w| l.contains(w.as_str())))
            .with_context(|| format!("restore.log does not say {want:?}:\n{log}"))?
            .trim()
            .to_string();
        let left = std::process::Command::new("pgrep")
            .args(["-f", "sctp-server"])
            .output()?;
        ensure!(
            left.stdout.is_empty(),
            "a restored server is left after the failed restore: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        drop(holder);
        let (pid, rs) = rig.restore_on_b(&dumped.img_b, &[])?;
        let again = crate::suites::sctp_repair::assoc_ids_in(&format!("/proc/{pid}/ns/net"))?;
        let summary = finish(enbs, true);
        kill_tree(pid);
        let summary = summary?;
        let mut again = again;
        again.sort_unstable();
        let mut ids = ids;
        ids.sort_unstable();
        ensure!(again == ids, "restored with ids {again:?}, not {ids:?}");
        Ok(format!(
            "refused: {line}\n  then, the id free, restored in {:.2}s under ids {ids:?}: {summary}",
            rs.as_secs_f64()
        ))
    })();
    drop(rig.topo);
    println!("  {}", r?);
    Ok(())
}
