//! The CRIU plugin with our patched CRIU: real `criu dump/restore --lib`
//! of processes holding SCTP associations, between hosts A and B.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::socket::{self, SockaddrIn};

use crate::net::{self, PEER_C};
use crate::sctp_traffic::{self, Sent, Tally};

mod badinput;
mod epc;
mod fault;
mod precopy;
mod sctp;
mod soak;

pub use badinput::badinput_images;
pub(crate) use epc::EPC_S1AP;
pub use epc::{
    epc_migrate, epc_migrate_figures, gtp_kernel_sockets_migrate, gtp_spgw_migrate, EpcFigures,
};
pub use fault::{fault_criu_killed, fault_every_step};
pub use precopy::{
    plain_100mb_figures, plugin_untouched_by_predump, precopy_epc_migrate, precopy_figures,
    ROUNDS as PRECOPY_ROUNDS,
};
pub use sctp::{
    iperf3_sctp_migrate, sctp_host_netns_migrate, sctp_leave_running_and_default_dir,
    sctp_mme_migrate,
};
pub use soak::soak;

pub(crate) const MME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 40);
pub(crate) const S1AP_PORT: u16 = 36412;

pub(crate) fn plugin_dir() -> String {
    crate::vm_dir()
        .join("lib")
        .join("criu")
        .to_string_lossy()
        .into_owned()
}

/// Ends a process CRIU restored (not our child: no wait).
pub(crate) fn kill_restored(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Streams the eNBs use (the echo server answers on the same one).
pub(crate) const STREAMS: u16 = 4;

pub(crate) fn connect_from_c(to: SocketAddrV4) -> Result<OwnedFd> {
    net::in_netns(PEER_C, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = crate::suites::sctp_repair::sctp_socket()?;
            crate::suites::sctp_repair::set_streams(&s, STREAMS)?;
            match socket::connect(s.as_raw_fd(), &SockaddrIn::from(to)) {
                Ok(()) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context("connecting to the MME")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}

pub(crate) fn echo_round(s: &OwnedFd, sent: &mut Sent, tally: &mut Tally, n: u64) -> Result<()> {
    for _ in 0..n {
        let i = sent.count;
        sent.send_next(s.as_fd(), STREAMS, i)?;
    }
    let mut buf = vec![0u8; 65536];
    let tv = nix::sys::time::TimeVal::new(0, 200_000);
    socket::setsockopt(s, socket::sockopt::ReceiveTimeout, &tv)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.received < sent.count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {} echoes came back",
            tally.received,
            sent.count
        );
        if let Some(m) = sctp_traffic::recv(s.as_fd(), &mut buf)? {
            tally.check(&m);
        }
    }
    tally.complete(&sent.next)
}

/// A base station streaming numbered messages to the MME on several
/// streams, ordered and unordered, and checking the echoes, until told to
/// stop. Any association event (COMM_LOST, RESTART, ABORT) fails it.
pub(crate) struct Enb {
    pub(crate) sock: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    /// Set once the writer is done: the reader then drains what is due.
    drain: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Result<Sent>>,
    reader: std::thread::JoinHandle<Result<(Tally, Duration)>>,
    /// Why the reader stopped early (an association event), and when
    /// after the start, for a failure report while it is still joined.
    failed: Arc<std::sync::Mutex<Option<String>>>,
    /// Echoes received so far.
    echoed: Arc<AtomicU64>,
    /// When the longest silence so far began and ended.
    gap_at: GapAt,
}

/// Where the longest silence of a stream lies: (last message before it,
/// first after it).
pub(crate) type GapAt = Arc<std::sync::Mutex<Option<(Instant, Instant)>>>;

impl Enb {
    pub(crate) fn start(sock: OwnedFd) -> Result<Enb> {
        // S1-style timers (RTO 100..1000 ms), as base stations tune SCTP:
        // with the defaults (up to 60 s) the eNB's retransmission timer
        // backs off so far during the migration that it resumes long
        // after the MME is back.
        crate::suites::sctp_repair::tune_timers(&sock)?;
        sctp_traffic::watch(sock.as_fd())?;
        let tv = nix::sys::time::TimeVal::new(0, 200_000);
        socket::setsockopt(&sock, socket::sockopt::ReceiveTimeout, &tv)?;
        socket::setsockopt(&sock, socket::sockopt::SendTimeout, &tv)?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        // Messages sent so far: after stop, the reader waits for all of
        // their echoes (or 15 s of silence).
        let count = Arc::new(AtomicU64::new(0));
        let (s, st, n) = (sock.clone(), stop.clone(), count.clone());
        let writer = std::thread::spawn(move || -> Result<Sent> {
            let mut sent = Sent::default();
            while !st.load(Ordering::SeqCst) {
                // Blocks up to 200 ms while the MME is frozen and the
                // window fills; the same message is tried again then.
                sent.try_send_next(s.as_fd(), STREAMS, sent.count, 0)?;
                n.store(sent.count, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(sent)
        });
        let drain = Arc::new(AtomicBool::new(false));
        let (s, st, n) = (sock.clone(), drain.clone(), count);
        let failed = Arc::new(std::sync::Mutex::new(None));
        let echoed = Arc::new(AtomicU64::new(0));
        let gap_at = GapAt::default();
        let (why, started, e, g) = (
            failed.clone(),
            Instant::now(),
            echoed.clone(),
            gap_at.clone(),
        );
        let reader = std::thread::spawn(move || -> Result<(Tally, Duration)> {
            let r = Self::read_echoes(&s, &st, &n, &e, &g);
            if let Err(e) = &r {
                if let Ok(mut w) = why.lock() {
                    *w = Some(format!(
                        "{e:#} ({:.1}s after it started)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            r
        });
        Ok(Enb {
            sock,
            stop,
            drain,
            writer,
            reader,
            failed,
            echoed,
            gap_at,
        })
    }

    /// The reader: every echo checked until drained.
    fn read_echoes(
        s: &OwnedFd,
        st: &AtomicBool,
        n: &AtomicU64,
        echoed: &AtomicU64,
        gap_at: &GapAt,
    ) -> Result<(Tally, Duration)> {
        let mut t = Tally::default();
        let mut buf = vec![0u8; 65536];
        let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
        let mut idle = 0;
        while !st.load(Ordering::SeqCst) || (t.received < n.load(Ordering::SeqCst) && idle < 75) {
            match sctp_traffic::recv(s.as_fd(), &mut buf)? {
                Some(m) => {
                    t.check(&m);
                    echoed.store(t.received, Ordering::SeqCst);
                    let now = Instant::now();
                    if now - last > gap {
                        gap = now - last;
                        *gap_at.lock().unwrap_or_else(|p| p.into_inner()) = Some((last, now));
                    }
                    last = now;
                    idle = 0;
                }
                None => idle += 1,
            }
        }
        Ok((t, gap))
    }

    /// When this eNB's longest silence so far began and ended.
    pub(crate) fn gap_at(&self) -> Option<(Instant, Instant)> {
        *self.gap_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Echoes received so far.
    pub(crate) fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::SeqCst)
    }

    /// What the reader saw go wrong, if it has stopped on an error.
    pub(crate) fn failure(&self) -> String {
        match self.failed.lock().ok().and_then(|w| w.clone()) {
            Some(why) => format!("its reader stopped: {why}"),
            None => "its reader saw no association event".into(),
        }
    }

    /// Stops the traffic, waits for the last echoes; the messages sent and
    /// the longest time without an echo (the downtime this eNB saw).
    pub(crate) fn finish(self) -> Result<(Tally, Duration, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("eNB writer panicked"));
        // Only now is the count of messages sent final.
        self.drain.store(true, Ordering::SeqCst);
        let sent = sent?.context("eNB writer")?;
        let (tally, gap) = self
            .reader
            .join()
            .map_err(|_| anyhow::anyhow!("eNB reader panicked"))?
            .context("eNB reader")?;
        tally.complete(&sent.next)?;
        ensure!(
            Arc::strong_count(&self.sock) == 1,
            "eNB socket still shared"
        );
        Ok((tally, gap, sent.count))
    }
}

/// Our CRIU's default plugin directory (its `--libdir` default, built in
/// with `PLUGINDIR`; the harness's `criu::PLUGIN_DIR`), where the README
/// tells users to install the plugin: a container runtime's criu finds it
/// there without any configuration, and Debian's own criu never looks
/// there.
pub(crate) const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/epcmig/criu";

/// Installs our plugin in [`DEFAULT_PLUGIN_DIR`] for as long as it lives.
pub(crate) struct Installed(std::path::PathBuf);

impl Installed {
    pub(crate) fn new() -> Result<Installed> {
        let dir = std::path::Path::new(DEFAULT_PLUGIN_DIR);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {DEFAULT_PLUGIN_DIR} (overlay in the guest)"))?;
        let to = dir.join("libepcmig_criu.so");
        std::fs::copy(
            std::path::Path::new(&plugin_dir()).join("libepcmig_criu.so"),
            &to,
        )
        .with_context(|| format!("installing the plugin as {}", to.display()))?;
        Ok(Installed(to))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A new base station connects to the restored MME; the two streaming
/// ones stop, and every message they sent must have come back.
pub(crate) fn finish_enbs(enb1: Enb, enb2: Enb) -> Result<SctpSeen> {
    let enb3 = connect_from_c(EPC_S1AP)?;
    let (mut s3, mut t3) = (Sent::default(), Tally::default());
    echo_round(&enb3, &mut s3, &mut t3, 5)?;
    // The longer silence of the two, as a span.
    let gap_at = match (enb1.gap_at(), enb2.gap_at()) {
        (Some(a), Some(b)) => Some(if a.1 - a.0 >= b.1 - b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let (t1, gap1, sent1) = enb1.finish().context("eNB 1")?;
    let (t2, gap2, sent2) = enb2.finish().context("eNB 2")?;
    println!(
        "  MME in the same netns: {} + {} messages echoed on {STREAMS} streams, \
         0 lost, duplicated or reordered; longest silence {:.2}s; same associations; \
         a new eNB connected",
        t1.received,
        t2.received,
        gap1.max(gap2).as_secs_f64()
    );
    Ok(SctpSeen {
        sent: sent1 + sent2,
        messages: t1.received + t2.received,
        anomalies: t1.errors.len() + t2.errors.len(),
        max_gap: gap1.max(gap2),
        gap_at,
    })
}

/// What the base stations' SCTP peers counted through a migration.
#[derive(Debug, Clone, Copy)]
pub struct SctpSeen {
    /// Messages the eNBs sent.
    pub sent: u64,
    /// Lost, duplicated, reordered or corrupt messages the eNBs counted.
    pub anomalies: usize,
    /// Messages echoed back, each checked (none lost, duplicated,
    /// reordered or corrupt, or the test fails).
    pub messages: u64,
    /// Longest silence an eNB saw: the MME's downtime.
    pub max_gap: Duration,
    /// When it began and ended.
    pub gap_at: Option<(Instant, Instant)>,
}
