//! The baseline: stock CRIU `--tcp-established` migration of a TCP echo
//! server in its own netns from host A to host B while a client on peer C
//! keeps sending numbered messages. SCTP work is compared against this.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::bench::Figure;
use crate::criu;
use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};
use crate::suites::plugin::PRECOPY_ROUNDS as ROUNDS;

const SERVICE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PORT: u16 = 7000;
/// Interval between the client's messages.
const PACE: Duration = Duration::from_millis(5);
const RECORD: usize = 16;

pub fn criu_check() -> Result<()> {
    let out = criu::check()?;
    println!("  criu check: {}", out.trim());
    if !out.contains("Looks good") {
        bail!("criu check did not say \"Looks good.\"");
    }
    Ok(())
}

/// Figures of one migration.
pub struct Migration {
    pub checkpoint: Duration,
    pub transfer: Duration,
    pub restore: Duration,
    pub image_bytes: u64,
    /// Longest silence between two echoes seen by the client.
    pub downtime: Duration,
    pub sent: u64,
    pub echoed: u64,
    /// Lost or reordered, duplicated and corrupt echoes, as the client
    /// counted them.
    pub anomalies: u64,
    /// Where the time went.
    pub timeline: crate::timeline::Timeline,
}

impl Migration {
    pub fn total(&self) -> Duration {
        self.checkpoint + self.transfer + self.restore
    }
}

fn check_of(seq: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995
}

/// What the client saw.
#[derive(Default)]
struct Seen {
    next: u64,
    received: u64,
    duplicated: u64,
    lost_or_reordered: u64,
    corrupt: u64,
    last: Option<Instant>,
    max_gap: Duration,
    /// When the longest gap began and ended.
    gap_at: Option<(Instant, Instant)>,
}

struct Client {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
    writer: std::thread::JoinHandle<Result<()>>,
    reader: std::thread::JoinHandle<Result<()>>,
}

impl Client {
    /// Connects from peer C and starts the numbered-message stream.
    fn start() -> Result<Client> {
        let addr = SocketAddr::from((SERVICE, PORT));
        let stream = net::in_netns(PEER_C, move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => return Ok(s),
                    Err(e) if Instant::now() > deadline => {
                        return Err(e).context("client: connecting to the service")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));

        let mut w = stream.try_clone()?;
        let (stop_w, sent_w) = (stop.clone(), sent.clone());
        let writer = std::thread::spawn(move || -> Result<()> {
            let mut seq = 0u64;
            while !stop_w.load(Ordering::SeqCst) {
                let mut rec = [0u8; RECORD];
                rec[..8].copy_from_slice(&seq.to_le_bytes());
                rec[8..].copy_from_slice(&check_of(seq).to_le_bytes());
                w.write_all(&rec).context("client write")?;
                seq += 1;
                sent_w.store(seq, Ordering::SeqCst);
                std::thread::sleep(PACE);
            }
            Ok(())
        });

        let mut r = stream;
        let (stop_r, sent_r, seen_r) = (stop.clone(), sent.clone(), seen.clone());
        let reader = std::thread::spawn(move || -> Result<()> {
            let mut buf = [0u8; RECORD];
            let mut have = 0;
            loop {
                if stop_r.load(Ordering::SeqCst) {
                    let s = seen_r.lock().unwrap_or_else(|p| p.into_inner());
                    if s.received >= sent_r.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
                match r.read(&mut buf[have..]) {
                    Ok(0) => bail!("client: the service closed the connection"),
                    Ok(n) => have += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e).context("client read"),
                }
                if have < RECORD {
                    continue;
                }
                have = 0;
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                let chk = u64::from_le_bytes(buf[8..].try_into().unwrap_or_default());
                let now = Instant::now();
                let mut s = seen_r.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(l) = s.last {
                    if now - l > s.max_gap {
                        s.max_gap = now - l;
                        s.gap_at = Some((l, now));
                    }
                }
                s.last = Some(now);
                s.received += 1;
                if chk != check_of(seq) {
                    s.corrupt += 1;
                } else if seq < s.next {
                    s.duplicated += 1;
                } else {
                    if seq > s.next {
                        s.lost_or_reordered += seq - s.next;
                    }
                    s.next = seq + 1;
                }
            }
        });
        Ok(Client {
            stop,
            sent,
            seen,
            writer,
            reader,
        })
    }

    fn received(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).received
    }

    /// Waits until `n` more echoes than now arrive.
    fn wait_more(&self, n: u64, limit: Duration) -> Result<()> {
        let want = self.received() + n;
        let deadline = Instant::now() + limit;
        while self.received() < want {
            if Instant::now() > deadline {
                bail!(
                    "client: no echoes for {}s (have {}, want {want})",
                    limit.as_secs(),
                    self.received()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops sending, waits for every echo and returns (sent, seen).
    fn finish(self) -> Result<(u64, Seen)> {
        self.stop.store(true, Ordering::SeqCst);
        self.writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.reader.is_finished() {
            if Instant::now() > deadline {
                bail!("client: echoes still missing 30s after the last message");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()));
        Ok((self.sent.load(Ordering::SeqCst), seen))
    }
}

fn start_server(ns: &str) -> Result<Child> {
    crate::apps::spawn_in(ns, &["tcp-echo", "--listen", &format!("0.0.0.0:{PORT}")])
}

pub fn work_dir(name: &str) -> Result<PathBuf> {
    let d = PathBuf::from("/tmp/epcmig").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// One migration A→B under traffic; verifies every message came back once
/// and in order.
pub fn migrate_once(verbose: bool) -> Result<Migration> {
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "svc", "svc0", SERVICE)?;
    let mut server = start_server(&ctr)?;
    let client = Client::start()?;
    client
        .wait_more(50, Duration::from_secs(10))
        .context("traffic before migration")?;

    let dir = work_dir("baseline")?;
    let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
    let t0 = Instant::now();
    let checkpoint = criu::dump(HOST_A, server.id(), &img_a, &["--tcp-established"])?;
    let _ = server.wait();
    let (transfer, image_bytes) =
        crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
    let sent = Instant::now();
    let (restore, pid) = criu::restore(
        HOST_B,
        &img_b,
        &["--tcp-established", "--external", "veth[eth0]:svc0@br0"],
    )?;
    let mut timeline = crate::timeline::Timeline::new("tcp", t0);
    timeline.dump_log(
        &std::fs::read_to_string(img_a.join("dump.log")).unwrap_or_default(),
        checkpoint,
    );
    timeline.span("image transfer (A->B link)", sent - transfer, sent);
    timeline.restore_log(
        &std::fs::read_to_string(img_b.join("restore.log")).unwrap_or_default(),
        sent,
        restore,
    );
    let result = (|| -> Result<Migration> {
        let restored = Instant::now();
        net::announce(&format!("/proc/{pid}/ns/net"), "eth0", SERVICE)?;
        timeline.span("gratuitous ARP", restored, Instant::now());
        client
            .wait_more(50, Duration::from_secs(30))
            .context("traffic after migration")?;
        let (sent, seen) = client.finish()?;
        if verbose {
            println!(
                "  client: {sent} messages sent, {} echoes received: {} lost or reordered, {} duplicated, {} corrupt",
                seen.received, seen.lost_or_reordered, seen.duplicated, seen.corrupt
            );
        }
        if seen.lost_or_reordered + seen.duplicated + seen.corrupt > 0
            || seen.received != sent
            || seen.next != sent
        {
            bail!(
                "per-message check failed: sent {sent}, received {}, next expected {}, lost/reordered {}, duplicated {}, corrupt {}",
                seen.received, seen.next, seen.lost_or_reordered, seen.duplicated, seen.corrupt
            );
        }
        if verbose {
            println!("  per-message check: all {sent} messages came back exactly once, in order, checksums intact");
        }
        Ok(Migration {
            checkpoint,
            transfer,
            restore,
            image_bytes,
            downtime: seen.max_gap,
            sent,
            echoed: seen.received,
            anomalies: seen.lost_or_reordered + seen.duplicated + seen.corrupt,
            timeline: {
                if let Some((from, to)) = seen.gap_at {
                    timeline.mark("the client without an echo", from, to);
                }
                timeline.clone()
            },
        })
    })();
    // SAFETY-free cleanup: the restored server is ours to stop.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    drop(topo);
    result
}

pub fn print_figures(m: &Migration) {
    println!(
        "  checkpoint (criu dump)      {:>8.3} s",
        m.checkpoint.as_secs_f64()
    );
    println!(
        "  image transfer (A->B link)  {:>8.3} s  ({} bytes)",
        m.transfer.as_secs_f64(),
        m.image_bytes
    );
    println!(
        "  restore (criu restore)      {:>8.3} s",
        m.restore.as_secs_f64()
    );
    println!(
        "  migration time              {:>8.3} s",
        m.total().as_secs_f64()
    );
    println!(
        "  downtime seen by the client {:>8.3} s  (longest gap between echoes)",
        m.downtime.as_secs_f64()
    );
    println!(
        "  messages                    {} sent, {} echoed, {} lost, duplicated or reordered",
        m.sent, m.echoed, m.anomalies
    );
}

pub fn tcp_migrate() -> Result<()> {
    let m = migrate_once(true)?;
    print_figures(&m);
    Ok(())
}

/// `cargo vm demo`: the EPC migration (MME and SPGW in one container, A
/// to B under SCTP and GTP-U traffic) with its KPIs, by `criu --lib` and
/// by podman, next to the TCP baseline's, measured in the same run.
pub fn demo() -> Result<()> {
    println!("demo: 1/4 TCP baseline: an echo server in a container on host A, checkpointed by");
    println!("      CRIU (--tcp-established), images over the A-B link, restored on host B while");
    println!("      a client on peer C keeps sending numbered messages.");
    let tcp = migrate_once(true)?;
    print_figures(&tcp);
    println!("demo: 2/4 EPC: an MME (SCTP listener + 2 eNB associations on 4 streams) and an");
    println!("      SPGW (gtp0 on its own UDP sockets, 1,000 PDP contexts, UE traffic to an SGi");
    println!("      host) in one container on host A, migrated to host B with criu --lib");
    println!("      (epcmig plugin) under traffic; images over the A-B link.");
    let epc = crate::suites::plugin::epc_migrate_figures()?;
    println!("demo: 3/4 the same EPC as a podman container (Debian's podman 4.3.1 and runc,");
    println!("      our CRIU with the plugin in its plugin directory, the netns handed to CRIU");
    println!("      as external): `podman container checkpoint --export` on A, the archive over");
    println!("      the A-B link, `podman container restore --import` on B.");
    let pod = crate::suites::runtime::podman_epc_figures()?;
    println!("demo: 4/4 pre-copy: the same EPC holding 100 MiB of memory (10 MiB kept dirty),");
    println!("      moved once by a plain criu dump and once by pre-copy (criu pre-dump rounds");
    println!("      to CRIU's page server on host B while it runs, then a short final dump).");
    let pre = precopy_vs_plain(1)?;
    let (sctp, pod_sctp) = match (epc.sctp, pod.sctp) {
        (Some(a), Some(b)) => (a, b),
        _ => anyhow::bail!("an EPC migration ran without its MME"),
    };
    let s = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    println!();
    println!(
        "  KPI                                  EPC, criu --lib         EPC, podman   TCP baseline"
    );
    let row = |k: &str, a: String, p: String, b: String| {
        println!("  {k:<36} {a:>15}   {p:>17}   {b:>12}")
    };
    row(
        "checkpoint (criu dump / podman)",
        s(epc.checkpoint),
        s(pod.checkpoint),
        s(tcp.checkpoint),
    );
    row(
        "image transfer (A->B link)",
        s(epc.transfer),
        s(pod.transfer),
        s(tcp.transfer),
    );
    row(
        "restore (criu restore / podman)",
        s(epc.restore),
        s(pod.restore),
        s(tcp.restore),
    );
    row(
        "migration time (total)",
        s(epc.checkpoint + epc.transfer + epc.restore),
        s(pod.checkpoint + pod.transfer + pod.restore),
        s(tcp.total()),
    );
    row(
        "downtime seen by the peers",
        s(sctp.max_gap),
        s(pod_sctp.max_gap),
        s(tcp.downtime),
    );
    row(
        "network load (image bytes)",
        format!("{} B", epc.image_bytes),
        format!("{} B", pod.image_bytes),
        format!("{} B", tcp.image_bytes),
    );
    row(
        "UE service recovery (longest gap)",
        s(epc.ue.max_gap),
        s(pod.ue.max_gap),
        "-".into(),
    );
    row(
        "messages sent / echoed (peers' counts)",
        format!("{} / {}", sctp.sent, sctp.messages),
        format!("{} / {}", pod_sctp.sent, pod_sctp.messages),
        format!("{} / {}", tcp.sent, tcp.echoed),
    );
    row(
        "  lost, duplicated or reordered",
        sctp.anomalies.to_string(),
        pod_sctp.anomalies.to_string(),
        tcp.anomalies.to_string(),
    );
    println!(
        "  tunnels carrying traffic after the move: {} of {} (criu --lib), {} of {} (podman)",
        epc.tunnels, epc.tunnels, pod.tunnels, pod.tunnels
    );
    println!(
        "  (the peers' own counts: every SCTP and TCP message came back once, in order, intact,\n   \
         or the demo would have failed; the UE stream is UDP, {} of {} datagrams echoed with\n   \
         criu --lib, {} of {} with podman; podman's times include podman's own work: the\n   \
         archive, its container state)",
        epc.ue.echoed, epc.ue.sent, pod.ue.echoed, pod.ue.sent
    );
    pre.print();
    println!();
    if let Some(t) = &epc.timeline {
        t.print("the EPC migration by criu --lib");
        println!("  {}", t.summary());
    }
    if let Some(t) = &pre.last.timeline {
        t.print("the pre-copy migration of the 100 MB EPC");
        println!("  {}", t.summary());
    }
    tcp.timeline.print("the TCP baseline");
    println!("  {}", tcp.timeline.summary());
    Ok(())
}

/// The median of `f` over `runs`.
fn median_of<T>(runs: &[T], f: impl Fn(&T) -> f64) -> f64 {
    crate::bench::median(runs.iter().map(f))
}

/// What the base stations counted through an EPC migration, which must
/// have had its MME.
fn mme_seen(f: &crate::suites::plugin::EpcFigures) -> Result<crate::suites::plugin::SctpSeen> {
    f.sctp
        .ok_or_else(|| anyhow::anyhow!("an EPC migration ran without its MME"))
}

/// Plain dumps and pre-copies of the same 100 MB EPC the bench runs, in
/// turn: it reports their medians (TCG's timing is noisy; each migration
/// takes about a minute).
const PRECOPY_RUNS: usize = 3;

/// What a plain dump and pre-copy of the same 100 MB EPC cost, the
/// medians of some runs of each.
struct PrecopyVsPlain {
    runs: usize,
    /// Longest silence a base station saw (s).
    plain_downtime: f64,
    precopy_downtime: f64,
    /// Bytes sent to B in all.
    plain_bytes: f64,
    precopy_bytes: f64,
    /// Of them, sent after the freeze.
    precopy_frozen_bytes: f64,
    /// The final dump (s), and the plain one.
    plain_checkpoint: f64,
    precopy_checkpoint: f64,
    /// The last pre-copy (its timeline).
    last: crate::suites::plugin::EpcFigures,
}

/// `runs` plain migrations and `runs` pre-copies of the 100 MB EPC,
/// alternating, in this run.
fn precopy_vs_plain(runs: usize) -> Result<PrecopyVsPlain> {
    use crate::bench::median;
    use crate::suites::plugin::{self, EpcFigures};
    let (mut plain, mut pre): (Vec<EpcFigures>, Vec<EpcFigures>) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        plain.push(
            plugin::plain_100mb_figures()
                .with_context(|| format!("plain dump of the 100 MB EPC, run {i} of {runs}"))?,
        );
        pre.push(
            plugin::precopy_figures()
                .with_context(|| format!("pre-copy of the 100 MB EPC, run {i} of {runs}"))?,
        );
    }
    let gaps = |v: &[EpcFigures]| {
        v.iter()
            .map(|f| mme_seen(f).map(|s| s.max_gap.as_secs_f64()))
            .collect::<Result<Vec<f64>>>()
    };
    let last = pre
        .last()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no pre-copy run"))?;
    Ok(PrecopyVsPlain {
        runs,
        plain_downtime: median(gaps(&plain)?),
        precopy_downtime: median(gaps(&pre)?),
        plain_bytes: median_of(&plain, |f| f.image_bytes as f64),
        precopy_bytes: median_of(&pre, |f| f.image_bytes as f64),
        precopy_frozen_bytes: median_of(&pre, |f| (f.image_bytes - f.pre_copied_bytes) as f64),
        plain_checkpoint: median_of(&plain, |f| f.checkpoint.as_secs_f64()),
        precopy_checkpoint: median_of(&pre, |f| f.checkpoint.as_secs_f64()),
        last,
    })
}

/// How the pre-copy figures are measured against.
const PLAIN_100MB: &str = "plain criu dump of the same 100 MB EPC, same run";

impl PrecopyVsPlain {
    /// Side by side, for the demo.
    fn print(&self) {
        let of = if self.runs > 1 {
            format!(" (medians of {} runs each)", self.runs)
        } else {
            String::new()
        };
        println!();
        println!("  100 MB EPC{of:<32} plain criu dump   pre-copy ({ROUNDS} pre-dumps)");
        let s = |v: f64| format!("{v:.3} s");
        let b = |v: f64| format!("{v:.0} B");
        for (k, plain, pre) in [
            (
                "downtime seen by the base stations",
                s(self.plain_downtime),
                s(self.precopy_downtime),
            ),
            (
                "checkpoint (the final dump)",
                s(self.plain_checkpoint),
                s(self.precopy_checkpoint),
            ),
            (
                "network load (bytes to B)",
                b(self.plain_bytes),
                b(self.precopy_bytes),
            ),
            (
                "  of it sent after the freeze",
                b(self.plain_bytes),
                b(self.precopy_frozen_bytes),
            ),
        ] {
            println!("  {k:<42} {plain:>15}   {pre:>15}");
        }
        println!(
            "  downtime {:.1}x shorter with pre-copy (target: 3x)",
            self.plain_downtime / self.precopy_downtime
        );
    }

    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::secs("migration.precopy.downtime", self.precopy_downtime)
                .against(self.plain_downtime, PLAIN_100MB),
            Figure::amount("migration.precopy.network_bytes", "B", self.precopy_bytes)
                .against(self.plain_bytes, PLAIN_100MB),
            Figure::amount(
                "migration.precopy.frozen_bytes",
                "B",
                self.precopy_frozen_bytes,
            )
            .against(self.plain_bytes, PLAIN_100MB),
        ]
    }
}

/// TCP and EPC migrations the bench runs in turn (`EPCMIG_BENCH_RUNS`
/// overrides): their figures are medians, TCG's timing being noisy.
const MIGRATION_RUNS: usize = 3;

pub fn bench() -> Result<Vec<Figure>> {
    let runs: usize = crate::env_num("EPCMIG_BENCH_RUNS")
        .unwrap_or(MIGRATION_RUNS)
        .max(1);
    let (mut tcps, mut epcs) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        println!("  migration {i} of {runs}: TCP baseline, then the EPC");
        tcps.push(migrate_once(false).with_context(|| format!("TCP baseline, run {i} of {runs}"))?);
        epcs.push(
            crate::suites::plugin::epc_migrate_figures()
                .with_context(|| format!("EPC, run {i} of {runs}"))?,
        );
    }
    let pre = precopy_vs_plain(PRECOPY_RUNS)?;
    let sctp = epcs.iter().map(mme_seen).collect::<Result<Vec<_>>>()?;
    fn d(t: Duration) -> f64 {
        t.as_secs_f64()
    }
    let epc_m = |f: fn(&crate::suites::plugin::EpcFigures) -> f64| median_of(&epcs, f);
    let tcp_m = |f: fn(&Migration) -> f64| median_of(&tcps, f);
    let (tcp, epc) = (
        tcps.last().ok_or_else(|| anyhow::anyhow!("no TCP run"))?,
        epcs.last().ok_or_else(|| anyhow::anyhow!("no EPC run"))?,
    );
    // Each EPC figure against the TCP baseline's from the same run.
    let tcp_is = format!("TCP echo container, CRIU, same run (medians of {runs})");
    const BS: &str = "the base stations' downtime, same migrations";
    for (t, what) in [
        (epc.timeline.as_ref(), "EPC (last run)"),
        (
            pre.last.timeline.as_ref(),
            "pre-copy, 100 MB EPC (last run)",
        ),
        (Some(&tcp.timeline), "TCP (last run)"),
    ] {
        if let Some(t) = t {
            println!("  {what}: {}", t.summary());
        }
    }
    let bs_downtime = median_of(&sctp, |s| d(s.max_gap));
    let tcp_downtime = tcp_m(|t| d(t.downtime));
    let ue_gap = epc_m(|e| d(e.ue.max_gap));
    println!(
        "  medians of {runs}: EPC downtime {bs_downtime:.3} s against TCP {tcp_downtime:.3} s ({:.2}x, target <= 1.1x); \
         UE service interrupted {ue_gap:.3} s against the base stations' {bs_downtime:.3} s (target <=)",
        bs_downtime / tcp_downtime,
    );
    Ok(vec![
        Figure::secs("migration.checkpoint", epc_m(|e| d(e.checkpoint)))
            .against(tcp_m(|t| d(t.checkpoint)), &tcp_is),
        Figure::secs("migration.transfer", epc_m(|e| d(e.transfer)))
            .against(tcp_m(|t| d(t.transfer)), &tcp_is),
        Figure::secs("migration.restore", epc_m(|e| d(e.restore)))
            .against(tcp_m(|t| d(t.restore)), &tcp_is),
        Figure::secs(
            "migration.total",
            epc_m(|e| d(e.checkpoint + e.transfer + e.restore)),
        )
        .against(tcp_m(|t| d(t.total())), &tcp_is),
        // The longest silence a base station saw, against the TCP
        // client's.
        Figure::secs("migration.downtime", bs_downtime).against(tcp_downtime, &tcp_is),
        Figure::amount(
            "migration.image_bytes",
            "B",
            epc_m(|e| e.image_bytes as f64),
        )
        .against(tcp_m(|t| t.image_bytes as f64), &tcp_is),
        // UE service back no later than the base stations'.
        Figure::secs("migration.ue_service_recovery", ue_gap).against(bs_downtime, BS),
        // More messages through the move checked for loss and order.
        Figure::amount(
            "migration.messages_checked",
            "msgs",
            median_of(&sctp, |s| s.messages as f64),
        )
        .against(tcp_m(|t| t.echoed as f64), &tcp_is)
        .higher_is_better(),
        Figure::amount("migration.tunnels", "tunnels", epc.tunnels as f64).higher_is_better(),
    ]
    .into_iter()
    .chain(pre.figures())
    .chain(epc.timeline.iter().flat_map(|t| t.figures()))
    .chain(pre.last.timeline.iter().flat_map(|t| t.figures()))
    .chain(tcp.timeline.figures())
    .collect())
}

/// Our CRIU patch routes SCTP sockets to the plugins' external-file hooks:
/// without a plugin the dump now fails there (naming the socket's
/// protocol) instead of in CRIU's inet code, and the process keeps running.
pub fn criu_patch_offers_sctp_to_plugins() -> Result<()> {
    let mut topo = Topology::build()?;
    let ctr = topo.container(HOST_A, "sctp", "sctp0", Ipv4Addr::new(192, 0, 2, 30))?;
    let mut app = crate::apps::spawn_in(&ctr, &["sctp-listen", "--listen", "192.0.2.30:36412"])?;
    std::thread::sleep(Duration::from_millis(500));
    let dir = work_dir("criu-sctp")?;
    let res = criu::dump(HOST_A, app.id(), &dir.join("images"), &[]);
    let log = std::fs::read_to_string(dir.join("images/dump.log")).unwrap_or_default();
    let alive = app.try_wait()?.is_none();
    let _ = app.kill();
    let _ = app.wait();
    drop(topo);
    ensure!(
        res.is_err(),
        "criu dump of an SCTP socket succeeded without a plugin"
    );
    ensure!(
        !log.contains("Unsupported proto 132"),
        "stock CRIU behaviour: the socket never reached the plugin hooks"
    );
    ensure!(
        log.contains("(socket proto 132)"),
        "the dump did not fail in the external-file path:\n{log}"
    );
    ensure!(alive, "the process did not survive the failed dump");
    println!(
        "  without a plugin: \"Can't dump file ... (socket proto 132)\"; the process kept running"
    );
    Ok(())
}
