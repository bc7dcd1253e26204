//! The SPGW (gtp0, its PDP table, the SGi masquerade), alone or with the
//! MME in one container, moved by `criu --lib` under traffic; the rig the
//! fault, soak and bad-input suites build on.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::criu;
use crate::net::{self, Topology, HOST_A, HOST_B, PEER_C};
use crate::sctp_traffic::{Sent, Tally};
use crate::timeline::Timeline;

use super::*;
/// `epcmig-criu-action`, CRIU's `setup-namespaces` script for gtp devices
/// (next to the plugin, as a package would install it).
pub(super) fn action_script() -> String {
    std::path::Path::new(&plugin_dir())
        .join("epcmig-criu-action")
        .to_string_lossy()
        .into_owned()
}

/// What a gtp migration test checks on top of the traffic.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum GtpSockets {
    /// gtp0 on the process's own UDP sockets (OAI, OsmoGGSN).
    Process,
    /// gtp0 on kernel-created sockets (IFLA_GTP_CREATE_SOCKETS).
    Kernel,
}

/// SPGW-like (and, with `mme`, MME-like too, in the same netns): a process
/// in a container on A made gtp0 and holds it; 1,000 PDP contexts (v1
/// IPv4, v1 IPv6, v0), UE traffic from the eNB on C through the tunnels to
/// the SGi host behind the SPGW (masquerade). `criu dump --lib` on A,
/// images over the A–B link, `criu restore --lib --action-script
/// epcmig-criu-action` on B: the re-captured gtp state equals the original
/// field for field, gtp0 uses the restored process's sockets, and every
/// tunnel carries a UDP round trip again. With `mme`, two base stations
/// stream SCTP through the same migration as in [`sctp_mme_migrate`].
pub(super) fn spgw_migrate(mode: GtpSockets, mme: bool) -> Result<EpcFigures> {
    spgw_migrate_with(mode, mme, Ballast::default())
}

/// [`spgw_migrate`] of an SPGW holding `ballast`.
pub(super) fn spgw_migrate_with(
    mode: GtpSockets,
    mme: bool,
    ballast: Ballast,
) -> Result<EpcFigures> {
    let rig = EpcRig::start_with(mode, mme, crate::suites::gtp::N_UES, ballast)?;
    let name = if mme { "plugin-epc" } else { "plugin-spgw" };
    let dir = crate::suites::baseline::work_dir(name)?;
    rig.migrate(&dir, name, "epc", EpcRig::plain_move)
}

/// Memory the SPGW holds besides its sockets and gtp0 (`--ballast-mb`,
/// `--dirty-mb`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ballast {
    /// MiB allocated and written once.
    pub mb: usize,
    /// MiB of it re-written continuously.
    pub dirty_mb: usize,
}

/// The images of a migration on host B, and how they got there.
pub(super) struct Moved {
    /// The (final) dump: the tree is frozen from its start.
    pub(super) checkpoint: Duration,
    /// Moving what the (final) dump wrote to B.
    pub(super) transfer: Duration,
    /// Every byte sent to B, before and after the freeze.
    pub(super) bytes: u64,
    /// Of them, the bytes sent before the freeze (pre-copy).
    pub(super) pre_copied: u64,
    pub(super) img_b: std::path::PathBuf,
    /// When the last image was on B.
    pub(super) sent: Instant,
}

/// An SPGW (and maybe an MME) in a container on host A under traffic, as
/// [`spgw_migrate`] describes; the pieces of a migration as methods.
pub(super) struct EpcRig {
    pub(super) topo: Topology,
    pub(super) _sgi: crate::suites::gtp::NsGuard,
    pub(super) ues: Vec<crate::suites::gtp::Ue>,
    pub(super) mode: GtpSockets,
    pub(super) app: std::process::Child,
    pub(super) src_ns: gtp_state::Netns,
    pub(super) echo: crate::suites::gtp::Echo,
    pub(super) orig: gtp_state::model::GtpState,
    pub(super) enbs: Option<EnbPair>,
    /// The container's first netns (on host A), and where it runs now.
    pub(super) ctr: String,
    pub(super) at: &'static str,
    pub(super) pid: u32,
}

/// A step of a migration the test timed itself: what, from, to.
pub(super) type Step = (&'static str, Instant, Instant);

/// Two streaming base stations and their associations' ids and states
/// before the migration.
pub(super) type EnbPair = ([(i32, i32); 2], Enb, Enb);

/// A criu log of this migration, for its timeline.
pub(super) fn read_log(log: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))
}

/// Prints the plugin's lines of a criu log (with criu's timestamps) when
/// `EPCMIG_VERBOSE` is set.
pub(super) fn plugin_lines(log: &std::path::Path) {
    if std::env::var_os("EPCMIG_VERBOSE").is_none() {
        return;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for l in text.lines().filter(|l| l.contains("epcmig")) {
        println!("    {}", l.trim());
    }
}

/// A new base station connects to the MME at [`EPC_S1AP`] and exchanges
/// 20 numbered messages.
pub(super) fn new_enb_round() -> Result<()> {
    let enb = connect_from_c(EPC_S1AP)?;
    let (mut s, mut t) = (Sent::default(), Tally::default());
    echo_round(&enb, &mut s, &mut t, 20)?;
    println!("  a new base station exchanged 20 messages with the restored MME");
    Ok(())
}

/// Restores so far (for unique outer veth names).
pub(super) static RESTORES: AtomicU64 = AtomicU64::new(0);

pub(crate) const EPC_S1AP: SocketAddrV4 =
    SocketAddrV4::new(crate::suites::gtp::SPGW_ADDR, S1AP_PORT);

impl EpcRig {
    /// The base stations keep S1-style RTOs but retransmit for up to half
    /// an hour before giving up, not the ~40 s of 40 retransmissions: a
    /// migration of this container under TCG on a loaded 2-core host
    /// takes 40 s and more.
    pub(super) fn start(mode: GtpSockets, mme: bool, n_ues: usize) -> Result<EpcRig> {
        Self::start_with(mode, mme, n_ues, Ballast::default())
    }

    /// [`Self::start`] with an SPGW holding `ballast`.
    pub(super) fn start_with(
        mode: GtpSockets,
        mme: bool,
        n_ues: usize,
        ballast: Ballast,
    ) -> Result<EpcRig> {
        use crate::suites::gtp::{self, SPGW_ADDR};
        let mut topo = Topology::build()?;
        gtp::sgi_host()?;
        let sgi = gtp::scopeguard(gtp::SGI_NS);
        let ues = gtp::ues(n_ues);
        let ctr = topo.container(HOST_A, "spgw", "spgw0", SPGW_ADDR)?;
        gtp::cable_spgw(&ctr, HOST_A, "sgi-spgw0")?;
        let listen = EPC_S1AP.to_string();
        let mut args = vec!["spgw"];
        if mode == GtpSockets::Kernel {
            args.push("--kernel-sockets");
        }
        if mme {
            args.extend(["--sctp-echo", &listen]);
        }
        let (mb, dirty) = (ballast.mb.to_string(), ballast.dirty_mb.to_string());
        args.extend(["--ballast-mb", &mb, "--dirty-mb", &dirty]);
        let mut app = crate::apps::spawn_in(&ctr, &args)?;
        let src_ns = gtp::ns_path(&ctr);
        // Writing the ballast comes first (about 1 s per 100 MiB under TCG).
        let limit = Duration::from_secs(15 + ballast.mb as u64 / 20);
        let deadline = Instant::now() + limit;
        while gtp_state::capture(&src_ns, "gtp0").is_err() {
            ensure!(
                Instant::now() < deadline,
                "the SPGW made no gtp0 in {limit:?} (ballast {ballast:?})"
            );
            ensure!(app.try_wait()?.is_none(), "the SPGW exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its control plane: UE pools routed into gtp0, the contexts.
        gtp::spgw_gtp_routes(&ctr)?;
        let pdps: Vec<gtp_state::model::Pdp> = ues.iter().map(|u| u.spgw).collect();
        gtp_state::add_pdps(
            &src_ns,
            gtp::GTP0_INDEX,
            &pdps,
            gtp_state::Install::default(),
        )
        .context("adding contexts")?;
        gtp::enb(&ues)?;
        let echo = gtp::Echo::start()?;
        gtp::check_traffic(&ues, "before")?;
        let orig = gtp_state::capture(&src_ns, "gtp0")?;
        let enbs = if mme {
            let (e1, e2) = (connect_from_c(EPC_S1AP)?, connect_from_c(EPC_S1AP)?);
            let before = [
                crate::suites::sctp_repair::peer_status(&e1)?,
                crate::suites::sctp_repair::peer_status(&e2)?,
            ];
            let (enb1, enb2) = (Enb::start(e1)?, Enb::start(e2)?);
            for e in [&enb1, &enb2] {
                crate::suites::sctp_repair::set_max_retrans(&e.sock, 2000)?;
            }
            Some((before, enb1, enb2))
        } else {
            None
        };
        let pid = app.id();
        Ok(EpcRig {
            topo,
            _sgi: sgi,
            ues,
            mode,
            app,
            src_ns,
            echo,
            orig,
            enbs,
            ctr,
            at: HOST_A,
            pid,
        })
    }

    /// Moves the rig to B under a UE stream (`mv` gets the images there
    /// through `dir`, adding its stages to the timeline), restores it and
    /// checks it as [`spgw_migrate`] describes; prints the timeline
    /// (`tl_name`) of migration `name`, tears the rig down.
    pub(super) fn migrate(
        mut self,
        dir: &std::path::Path,
        name: &str,
        tl_name: &str,
        mv: impl FnOnce(&mut EpcRig, &std::path::Path, &mut Timeline) -> Result<Moved>,
    ) -> Result<EpcFigures> {
        let ((moved, restore, pid, mut timeline), ue) =
            crate::suites::gtp::with_stream(self.ues[0], || {
                let mut tl = Timeline::new(tl_name, Instant::now());
                let m = mv(&mut self, dir, &mut tl)?;
                let (restore, pid, steps) = self.restore_timed(HOST_B, &m.img_b, &[])?;
                tl.restore_log(&read_log(&m.img_b.join("restore.log"))?, m.sent, restore);
                for (what, from, to) in steps {
                    tl.span(what, from, to);
                }
                Ok((m, restore, pid, tl))
            })?;
        if let Some((from, to)) = ue.gap_at {
            timeline.mark("a UE without service", from, to);
        }
        let fig = EpcFigures {
            ue,
            pre_copied_bytes: moved.pre_copied,
            ..self.figures(moved.checkpoint, moved.transfer, moved.bytes, restore)
        };
        let mut fig = self.check_restored_and_finish(pid, fig)?;
        if let Some((from, to)) = fig.sctp.and_then(|s| s.gap_at) {
            timeline.mark("base stations without an echo", from, to);
        }
        timeline.print(&format!("this migration ({name})"));
        println!("  {}", timeline.summary());
        fig.timeline = Some(timeline);
        Ok(fig)
    }

    /// A plain migration's move: one dump, the source retired, the images
    /// over the A-B link.
    pub(super) fn plain_move(&mut self, dir: &std::path::Path, tl: &mut Timeline) -> Result<Moved> {
        let t0 = Instant::now();
        let (checkpoint, transfer, bytes, img_b) = self.dump_and_send_to_b(dir)?;
        let sent = Instant::now();
        tl.dump_log_at(&read_log(&dir.join("images-a/dump.log"))?, t0, checkpoint);
        tl.span("source container removed", t0 + checkpoint, sent - transfer);
        tl.span("image transfer (A->B link)", sent - transfer, sent);
        Ok(Moved {
            checkpoint,
            transfer,
            bytes,
            pre_copied: 0,
            img_b,
            sent,
        })
    }

    /// `criu dump --lib` of the container's process into `img`; on
    /// success the process is gone.
    pub(super) fn dump(&self, img: &std::path::Path, env: &[(&str, &str)]) -> Result<Duration> {
        self.dump_with(img, &[], env)
    }

    /// [`Self::dump`] with more criu options.
    pub(super) fn dump_with(
        &self,
        img: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Duration> {
        let lib = plugin_dir();
        let args: Vec<&str> = ["--lib", &lib]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let took = criu::dump_env(self.at, self.pid, img, &args, env)?;
        plugin_lines(&img.join("dump.log"));
        if self.pid == self.app.id() {
            // Our child, killed by criu: reap it.
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        Ok(took)
    }

    /// Both streaming base stations get echoes again within `limit`.
    pub(super) fn echoes_flow(&self, limit: Duration) -> Result<()> {
        let Some((_, e1, e2)) = &self.enbs else {
            return Ok(());
        };
        let before = [e1, e2].map(|e| e.echoed.load(Ordering::SeqCst));
        let deadline = Instant::now() + limit;
        loop {
            let now = [e1, e2].map(|e| e.echoed.load(Ordering::SeqCst));
            if now[0] > before[0] && now[1] > before[1] {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no echo in {limit:?} (eNB 1: {}; eNB 2: {})",
                e1.failure(),
                e2.failure()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lifts the network lock CRIU put on the source container's netns at
    /// dump time (its iptables CRIU chain, IPv4 and IPv6): a criu that died
    /// mid-dump leaves it, for TCP as for us.
    pub(super) fn lift_criu_lock(&self) -> Result<()> {
        for prog in ["iptables", "ip6tables"] {
            for args in [
                &["-D", "INPUT", "-j", "CRIU"][..],
                &["-D", "OUTPUT", "-j", "CRIU"],
                &["-F", "CRIU"],
                &["-X", "CRIU"],
            ] {
                let st = net::command_in(&self.ctr, prog)?.args(args).status()?;
                ensure!(st.success(), "{prog} {} in {}", args.join(" "), self.ctr);
            }
        }
        Ok(())
    }

    /// A clean dump on A, the source retired, the images over the A-B link
    /// to `dir/images-b`: (checkpoint, transfer, image bytes, images on B).
    pub(super) fn dump_and_send_to_b(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<(Duration, Duration, u64, std::path::PathBuf)> {
        let (img_a, img_b) = (dir.join("images-a"), dir.join("images-b"));
        let checkpoint = self.dump(&img_a, &[])?;
        self.retire_source()?;
        let (transfer, bytes) =
            crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &img_a, &img_b)?;
        Ok((checkpoint, transfer, bytes, img_b))
    }

    /// The figures of a migration of this rig (no UE stream measured).
    pub(super) fn figures(
        &self,
        checkpoint: Duration,
        transfer: Duration,
        bytes: u64,
        restore: Duration,
    ) -> EpcFigures {
        EpcFigures {
            checkpoint,
            transfer,
            restore,
            image_bytes: bytes,
            pre_copied_bytes: 0,
            ue: Default::default(),
            tunnels: self.ues.len(),
            sctp: None,
            timeline: None,
        }
    }

    /// After a successful dump, the source container goes, as an
    /// orchestrator removes it: first its gtp0 (a device on process
    /// sockets would keep the netns, and its address answering ARP, alive),
    /// then its links and netns.
    pub(super) fn retire_source(&mut self) -> Result<()> {
        gtp_state::delete_device(&self.src_ns, "gtp0")?;
        let ctr = self.ctr.clone();
        self.topo.remove_container(&ctr)
    }

    /// `criu restore --lib --action-script epcmig-criu-action` on `host`
    /// from `img`, then the service addresses move over: (time, pid).
    pub(super) fn restore_on(
        &self,
        host: &str,
        img: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<(Duration, u32)> {
        self.restore_timed(host, img, env)
            .map(|(took, pid, _)| (took, pid))
    }

    /// [`Self::restore_on`], with the steps after criu returned timed for
    /// the migration's timeline.
    pub(super) fn restore_timed(
        &self,
        host: &str,
        img: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<(Duration, u32, Vec<Step>)> {
        let lib = plugin_dir();
        let script = action_script();
        let _ = std::fs::remove_file(img.join("restored.pid"));
        // Outer veth names fresh on every restore: the container's old
        // ones may still exist while its netns goes away.
        let n = RESTORES.fetch_add(1, Ordering::Relaxed);
        let (eth, sgi) = (format!("spgw-r{n}"), format!("sgi-r{n}"));
        let (took, pid) = criu::restore_env(
            host,
            img,
            &[
                "--lib",
                &lib,
                "--action-script",
                &script,
                "--external",
                &format!("veth[eth0]:{eth}@br0"),
                "--external",
                &format!("veth[sgi0]:{sgi}@{}", crate::suites::gtp::SGI_BRIDGE),
            ],
            env,
        )?;
        plugin_lines(&img.join("restore.log"));
        let mut steps = Vec::new();
        let t = Instant::now();
        net::announce(
            &format!("/proc/{pid}/ns/net"),
            "eth0",
            crate::suites::gtp::SPGW_ADDR,
        )?;
        // On the SGi LAN too: its bridges learn where sgi0 is now before
        // the first packet from the SGi side.
        net::announce(
            &format!("/proc/{pid}/ns/net"),
            "sgi0",
            crate::suites::gtp::SGI_SPGW,
        )?;
        steps.push(("gratuitous ARPs sent", t, Instant::now()));
        let t = Instant::now();
        let _ = net::ip(&["-n", PEER_C, "neigh", "flush", "dev", "eth0"]);
        steps.push(("C's neighbour cache flushed", t, Instant::now()));
        std::thread::sleep(Duration::from_secs(2));
        Ok((took, pid, steps))
    }

    /// The source after a failed dump: the process runs, gtp0 is as it was
    /// and carries traffic, the base stations' associations are the same.
    pub(super) fn check_source_intact(&mut self, what: &str) -> Result<()> {
        ensure!(
            self.app.try_wait()?.is_none(),
            "{what}: the SPGW process is gone"
        );
        let now = gtp_state::capture(&self.src_ns, "gtp0").context("capturing gtp0")?;
        crate::suites::gtp::compare(&self.orig, &now).with_context(|| format!("{what}: gtp0"))?;
        crate::suites::gtp::check_traffic(&self.ues, what)?;
        if let Some((before, e1, e2)) = &self.enbs {
            let after = [
                crate::suites::sctp_repair::peer_status(&e1.sock)?,
                crate::suites::sctp_repair::peer_status(&e2.sock)?,
            ];
            ensure!(
                after == *before,
                "{what}: a base station's association changed"
            );
        }
        Ok(())
    }

    /// After a successful restore as `pid`: gtp0 equal to the original,
    /// on the restored process's sockets, every tunnel carrying traffic,
    /// the base stations' associations the same.
    pub(super) fn check_restored(&self, pid: u32, quiet: bool) -> Result<()> {
        use crate::suites::gtp;
        let dst_ns = gtp_state::Netns::Pid(pid);
        let again = gtp_state::capture(&dst_ns, "gtp0").context("capturing the restored gtp0")?;
        gtp::compare(&self.orig, &again)?;
        if self.mode == GtpSockets::Process {
            ensure!(
                again.sockets_found.sockets.len() == 2
                    && again
                        .sockets_found
                        .sockets
                        .iter()
                        .all(|s| s.owner.is_some_and(|o| o.pid == pid)),
                "gtp0 does not use the restored SPGW's sockets: {:?}",
                again.sockets_found
            );
        }
        if !quiet {
            println!(
                "  re-captured gtp0 equals the original field for field ({} contexts, {} routes, sockets {:?}{})",
                again.pdps.len(),
                again.routes.len(),
                again.sockets,
                if self.mode == GtpSockets::Process {
                    ", the restored process's own"
                } else {
                    ""
                }
            );
        }
        if quiet {
            let missing = gtp::udp_per_ue(&self.ues, 3)?;
            ensure!(
                missing.is_empty(),
                "{} of {} tunnels carried no UDP round trip",
                missing.len(),
                self.ues.len()
            );
        } else {
            gtp::check_traffic(&self.ues, "after restore")?;
        }
        if let Some((before, enb1, enb2)) = &self.enbs {
            let status = |e: &Enb, k| {
                crate::suites::sctp_repair::peer_status(&e.sock)
                    .with_context(|| format!("eNB {k}: {}", e.failure()))
            };
            let after = [status(enb1, 1)?, status(enb2, 2)?];
            ensure!(after == *before, "a base station's association changed");
        }
        Ok(())
    }

    /// What the restored netns looks like, for a failure report.
    pub(super) fn diagnose(pid: u32) -> String {
        let ns = format!("/proc/{pid}/ns/net");
        let mut out = String::new();
        for (prog, args) in [
            ("ip", &["-br", "link"][..]),
            ("ip", &["-br", "addr"][..]),
            ("ip", &["route"][..]),
            ("ip", &["-6", "route"][..]),
            ("nft", &["list", "ruleset"][..]),
            (
                "sysctl",
                &["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"][..],
            ),
        ] {
            if let Ok(mut c) = net::command_in(&ns, prog) {
                if let Ok(o) = c.args(args).output() {
                    out += &format!(
                        "--- {prog} {}\n{}{}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        out
    }

    /// [`Self::check_restored`], then: a new base station connects, the
    /// streaming ones stop and every message is accounted for. Tears the
    /// rig down.
    pub(super) fn check_restored_and_finish(
        self,
        pid: u32,
        mut fig: EpcFigures,
    ) -> Result<EpcFigures> {
        let result = self
            .check_restored(pid, false)
            .with_context(|| format!("restored netns:\n{}", Self::diagnose(pid)))
            .and_then(|()| {
                let ue = if fig.ue.sent == 0 {
                    String::new()
                } else {
                    format!(
                        "; UE traffic during the migration: {} of {} datagrams echoed, \
                         UE service interrupted {:.2}s, a flow from before the move {}",
                        fig.ue.echoed,
                        fig.ue.sent,
                        fig.ue.max_gap.as_secs_f64(),
                        if fig.ue.old_flow_recovered {
                            "recovered"
                        } else {
                            "did not recover"
                        }
                    )
                };
                println!(
                    "  checkpoint {:.2}s, transfer {:.2}s ({} bytes), restore {:.2}s{ue}; \
                     the SGi host answered {} datagrams in all",
                    fig.checkpoint.as_secs_f64(),
                    fig.transfer.as_secs_f64(),
                    fig.image_bytes,
                    fig.restore.as_secs_f64(),
                    self.echo.count.load(Ordering::Relaxed)
                );
                // Its conntrack entry came with the netns (criu-patches 0002
                // gives it its masquerade binding back).
                ensure!(
                    fig.ue.sent == 0 || fig.ue.old_flow_recovered,
                    "a UE flow through the SGi masquerade from before the move got no echo after it"
                );
                Ok(())
            });
        let dst_ns = gtp_state::Netns::Pid(pid);
        let EpcRig {
            topo,
            src_ns,
            echo,
            enbs,
            ..
        } = self;
        let result = result.and_then(|()| {
            if let Some((_, enb1, enb2)) = enbs {
                fig.sctp = Some(finish_enbs(enb1, enb2)?);
            }
            Ok(fig)
        });
        // A device on process sockets pins its netns (6.12): remove it on
        // both sides, as an orchestrator would once the migration is done.
        let _ = gtp_state::delete_device(&dst_ns, "gtp0");
        let _ = gtp_state::delete_device(&src_ns, "gtp0");
        kill_restored(pid);
        drop(echo);
        drop(topo);
        result
    }
}

/// The figures of one SPGW/EPC migration.
#[derive(Debug, Clone)]
pub struct EpcFigures {
    pub checkpoint: Duration,
    pub transfer: Duration,
    pub restore: Duration,
    /// Every byte sent to B (the network load).
    pub image_bytes: u64,
    /// Of them, those sent before the freeze (pre-copy; 0 for a plain
    /// dump).
    pub pre_copied_bytes: u64,
    pub ue: crate::suites::gtp::UeStream,
    pub tunnels: usize,
    pub sctp: Option<SctpSeen>,
    /// Where the time went (the demo's and the bench's migrations).
    pub timeline: Option<crate::timeline::Timeline>,
}

/// Issue item 2: an SPGW that made gtp0 on its own UDP sockets.
pub fn gtp_spgw_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Process, false).map(|_| ())
}

/// gtp0 on kernel-created sockets, made whole before CRIU restores links.
pub fn gtp_kernel_sockets_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Kernel, false).map(|_| ())
}

/// Issue item 3: MME and SPGW in one container netns, migrated together.
pub fn epc_migrate() -> Result<()> {
    spgw_migrate(GtpSockets::Process, true).map(|_| ())
}

/// The demo's migration: MME and SPGW in one container, under traffic.
pub fn epc_migrate_figures() -> Result<EpcFigures> {
    spgw_migrate(GtpSockets::Process, true)
}
