//! CRIU as container hosts run it: through Debian's runc (RPC mode, the
//! container's netns made beforehand and handed to CRIU as external), with
//! the plugin installed where the README says, next to Debian's own CRIU.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::net::{self, Topology, HOST_A, HOST_B};
use crate::runc::{self, Bundle, Container};
use crate::suites::plugin::{
    connect_from_c, echo_round, finish_enbs, Enb, EpcFigures, Installed, DEFAULT_PLUGIN_DIR,
    EPC_S1AP, MME, S1AP_PORT,
};
use crate::suites::sctp_repair::{peer_status, set_max_retrans};

/// Debian bookworm's own CRIU 3.17.1 (unpacked by the harness), which
/// knows 10 plugin hooks and refuses a plugin declaring more (ours
/// declares 4.1.1's 12), failing every dump and restore while such a
/// plugin is in its directory. With ours installed where the README says
/// (our CRIU's plugin directory, not /usr/lib/criu), it never sees the
/// plugin and moves a TCP-only container A->B under traffic, losing
/// nothing.
pub fn plugin_beside_bookworm_criu() -> Result<()> {
    let criu = crate::vm_dir().join("bookworm-criu");
    let criu = criu.to_string_lossy().into_owned();
    let v = std::process::Command::new(&criu)
        .arg("--version")
        .output()
        .with_context(|| format!("running {criu} (the harness unpacks Debian's criu there)"))?;
    let version = String::from_utf8_lossy(&v.stdout).into_owned();
    ensure!(
        version.contains("Version: 3.17"),
        "{criu} is not bookworm's CRIU 3.17: {version}"
    );
    let installed = Installed::new()?;
    let m = crate::criu::with_program(&criu, || crate::suites::baseline::migrate_once(true));
    drop(installed);
    let m = m.context("bookworm's criu with the plugin installed")?;
    // Where migrate_once() put its images (baseline::work_dir("baseline")).
    let dump_log = Path::new("/tmp/epcmig/baseline/images-a/dump.log");
    let log = std::fs::read_to_string(dump_log).unwrap_or_default();
    ensure!(
        !log.contains("Corrupted plugin")
            && !log.contains("libepcmig_criu")
            && !log.contains("epcmig:"),
        "criu 3.17.1 looked at the plugin installed in {DEFAULT_PLUGIN_DIR}"
    );
    println!(
        "  {}: untouched by the plugin in {DEFAULT_PLUGIN_DIR}; a TCP container moved A->B, \
         downtime {:.2}s",
        version.lines().next().unwrap_or_default(),
        m.downtime.as_secs_f64()
    );
    Ok(())
}

/// The lock tables the plugin made in netns `ns`, if any.
fn plugin_locks_in(ns: &str) -> usize {
    net::command_in(ns, "nft")
        .ok()
        .and_then(|mut c| c.args(["list", "tables"]).output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("epcmig_lock_"))
                .count()
        })
        .unwrap_or(0)
}

/// Runs `restore` (a runtime's restore into the netns `ns` the test
/// made, as podman does) in a thread; once the plugin has locked the
/// associations there, the address is announced on B, so that the base
/// stations' retransmissions reach the netns while CRIU is still
/// restoring: they must be dropped, not answered with an ABORT. Returns
/// what `restore` returned and how many lock tables were seen.
fn restore_announced<T: Send + 'static>(
    ns: &str,
    addr: std::net::Ipv4Addr,
    restore: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<(T, usize)> {
    let restorer = std::thread::spawn(restore);
    let mut locks = 0;
    runc::wait_for(Duration::from_secs(180), "the restore", || {
        locks = locks.max(plugin_locks_in(ns));
        locks > 0 || restorer.is_finished()
    })?;
    net::announce(&format!("/run/netns/{ns}"), "eth0", addr)?;
    let done = restorer
        .join()
        .map_err(|_| anyhow::anyhow!("the restore thread panicked"))??;
    let _ = net::ip(&["-n", crate::net::PEER_C, "neigh", "flush", "dev", "eth0"]);
    Ok((done, locks))
}

/// `runc restore` of `images` as container `id` from `bundle`, announced
/// as [`restore_announced`] does.
fn runc_restore_announced(
    id: &str,
    bundle: Bundle,
    images: &Path,
    work: &Path,
    ns: &str,
    addr: std::net::Ipv4Addr,
) -> Result<(Container, usize)> {
    let (id, images, work) = (id.to_string(), images.to_path_buf(), work.to_path_buf());
    restore_announced(ns, addr, move || {
        Container::restore(&id, &bundle, &images, &work)
    })
}

/// `podman container restore --import ARCHIVE` by `podman`, announced as
/// [`restore_announced`] does; the podman back.
fn podman_restore_announced(
    podman: crate::podman::Podman,
    archive: &Path,
    ns: &str,
    addr: std::net::Ipv4Addr,
) -> Result<(crate::podman::Podman, usize)> {
    let archive = archive.to_string_lossy().into_owned();
    restore_announced(ns, addr, move || {
        podman
            .run(
                &["container", "restore", "--import", &archive],
                "container restore --import",
            )
            .with_context(podman_criu_log)
            .map(|_| podman)
    })
}

/// How a container is run and moved: by runc or by podman.
trait Mover {
    /// Runs `app ARGS` in a container in the netns at path `netns`.
    fn start(&mut self, netns: &str, args: &[&str]) -> Result<()>;
    /// Checkpoints the container with `--leave-running`; CRIU's log of it.
    fn checkpoint_left(&mut self) -> Result<String>;
    /// Whether the runtime shows the container on A running.
    fn running(&self) -> bool;
    /// Checkpoints the container (its tasks die, which is checked); CRIU's
    /// log of it.
    fn checkpoint(&mut self) -> Result<String>;
    /// The checkpoint over the A-B link: (time, bytes).
    fn transfer(&mut self) -> Result<(Duration, u64)>;
    /// Restores it into netns `ns` (a name), announcing `addr` there once
    /// the plugin's lock is seen; the restored first process's pid.
    fn restore(&mut self, ns: &str, addr: std::net::Ipv4Addr) -> Result<u32>;
    /// The plugin and error lines of the last CRIU log.
    fn log(&self) -> String;
}

struct RuncMover {
    id: &'static str,
    dir: std::path::PathBuf,
    args: Vec<String>,
    ctr: Option<Container>,
}

impl RuncMover {
    fn new(id: &'static str, dir: std::path::PathBuf) -> RuncMover {
        RuncMover {
            id,
            dir,
            args: Vec::new(),
            ctr: None,
        }
    }
}

impl Mover for RuncMover {
    fn start(&mut self, netns: &str, args: &[&str]) -> Result<()> {
        self.args = args.iter().map(|a| a.to_string()).collect();
        let b = Bundle::new(&self.dir.join("bundle-a"), netns, args)?;
        self.ctr = Some(Container::run(self.id, &b)?);
        Ok(())
    }

    fn checkpoint_left(&mut self) -> Result<String> {
        let ctr = self.ctr.as_ref().context("no container")?;
        let work = self.dir.join("work-left");
        ctr.checkpoint(&self.dir.join("images-left"), &work, &["--leave-running"])?;
        Ok(std::fs::read_to_string(work.join("dump.log")).unwrap_or_default())
    }

    fn running(&self) -> bool {
        self.ctr.as_ref().is_some_and(Container::running)
    }

    fn checkpoint(&mut self) -> Result<String> {
        let ctr = self.ctr.take().context("no container")?;
        ctr.checkpoint(&self.dir.join("images-a"), &self.dir.join("work-a"), &[])?;
        ensure!(
            !ctr.running(),
            "the container still runs after runc checkpoint"
        );
        Ok(std::fs::read_to_string(self.dir.join("work-a/dump.log")).unwrap_or_default())
    }

    fn transfer(&mut self) -> Result<(Duration, u64)> {
        let (a, b) = (self.dir.join("images-a"), self.dir.join("images-b"));
        crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &a, &b)
    }

    fn restore(&mut self, ns: &str, addr: std::net::Ipv4Addr) -> Result<u32> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let b = Bundle::new(
            &self.dir.join("bundle-b"),
            &format!("/run/netns/{ns}"),
            &args,
        )?;
        let (images, work) = (self.dir.join("images-b"), self.dir.join("work-b"));
        let (ctr, locks) = runc_restore_announced(self.id, b, &images, &work, ns, addr)?;
        ensure!(
            locks > 0,
            "no lock of the plugin's appeared in the runtime's netns during the restore\n{}",
            self.log()
        );
        let pid = ctr.pid()?;
        self.ctr = Some(ctr);
        Ok(pid)
    }

    fn log(&self) -> String {
        runc::criu_log(&self.dir.join("work-b"), "restore.log")
    }
}

struct PodmanMover {
    id: &'static str,
    dir: std::path::PathBuf,
    a: Option<crate::podman::Podman>,
    b: Option<crate::podman::Podman>,
}

impl PodmanMover {
    /// Host A's podman and host B's, each with its own state, B holding
    /// A's image.
    fn new(id: &'static str, dir: &Path) -> Result<PodmanMover> {
        use crate::podman::Podman;
        let a = Podman::new(&dir.join("podman-a"))?;
        let b = Podman::with_image_of(&dir.join("podman-b"), &a)?;
        Ok(PodmanMover {
            id,
            dir: dir.to_path_buf(),
            a: Some(a),
            b: Some(b),
        })
    }
}

impl Mover for PodmanMover {
    fn start(&mut self, netns: &str, args: &[&str]) -> Result<()> {
        self.a
            .as_ref()
            .context("no podman")?
            .start(self.id, netns, args)
    }

    fn checkpoint_left(&mut self) -> Result<String> {
        let left = self.dir.join("left.tar.gz");
        self.a
            .as_ref()
            .context("no podman")?
            .run(
                &[
                    "container",
                    "checkpoint",
                    "--leave-running",
                    "--export",
                    &left.to_string_lossy(),
                    self.id,
                ],
                "container checkpoint --leave-running",
            )
            .with_context(podman_criu_log)?;
        Ok(std::fs::read_to_string(crate::podman::criu_log()).unwrap_or_default())
    }

    fn running(&self) -> bool {
        self.a.as_ref().is_some_and(|a| a.running(self.id))
    }

    fn checkpoint(&mut self) -> Result<String> {
        let out = self.dir.join("out-a");
        std::fs::create_dir_all(&out)?;
        let archive = out.join("epc.tar.gz");
        let a = self.a.as_ref().context("no podman")?;
        a.run(
            &[
                "container",
                "checkpoint",
                "--export",
                &archive.to_string_lossy(),
                self.id,
            ],
            "container checkpoint --export",
        )
        .with_context(podman_criu_log)?;
        let log = std::fs::read_to_string(crate::podman::criu_log()).unwrap_or_default();
        ensure!(
            !a.running(self.id),
            "the container still runs after the checkpoint"
        );
        a.run(&["rm", "--force", self.id], "rm")?;
        Ok(log)
    }

    fn transfer(&mut self) -> Result<(Duration, u64)> {
        let (a, b) = (self.dir.join("out-a"), self.dir.join("in-b"));
        crate::transfer::send_dir(HOST_A, HOST_B, net::host_addr(HOST_B), &a, &b)
    }

    fn restore(&mut self, ns: &str, addr: std::net::Ipv4Addr) -> Result<u32> {
        let pb = self.b.take().context("no podman")?;
        let archive = self.dir.join("in-b/epc.tar.gz");
        let (pb, locks) = podman_restore_announced(pb, &archive, ns, addr)?;
        ensure!(
            locks > 0,
            "no lock of the plugin's appeared in the netns during the restore\n{}",
            self.log()
        );
        ensure!(
            pb.running(self.id),
            "podman does not show the restored container running"
        );
        let pid = pb
            .run(
                &["inspect", "--format", "{{.State.Pid}}", self.id],
                "inspect",
            )?
            .trim()
            .parse()
            .context("podman inspect: the restored container's pid")?;
        self.b = Some(pb);
        Ok(pid)
    }

    fn log(&self) -> String {
        podman_criu_log()
    }
}

/// An association's status as the peer sees it (`peer_status`).
type PeerStatus = (i32, i32);

/// Two base stations on C connected to `to`, streaming on 4 streams both
/// ways, retransmitting for long enough to outlast a migration: their
/// associations' status before the move, and the two.
fn streaming_enbs(to: SocketAddrV4) -> Result<([PeerStatus; 2], Enb, Enb)> {
    let (e1, e2) = (connect_from_c(to)?, connect_from_c(to)?);
    let before = [peer_status(&e1)?, peer_status(&e2)?];
    let (enb1, enb2) = (Enb::start(e1)?, Enb::start(e2)?);
    for e in [&enb1, &enb2] {
        set_max_retrans(&e.sock, 2000)?;
    }
    Ok((before, enb1, enb2))
}

/// The two base stations' associations are as [`streaming_enbs`] found
/// them (no ABORT, COMM_LOST or RESTART in between).
fn same_associations(before: &[PeerStatus; 2], enb1: &Enb, enb2: &Enb) -> Result<()> {
    let after = [
        peer_status(&enb1.sock).with_context(|| format!("eNB 1: {}", enb1.failure()))?,
        peer_status(&enb2.sock).with_context(|| format!("eNB 2: {}", enb2.failure()))?,
    ];
    ensure!(after == *before, "a base station's association changed");
    Ok(())
}

/// An MME (one-to-one SCTP echo listener) started by `mover` in a netns
/// on A, two base stations streaming to it, and a `--leave-running`
/// checkpoint, after which it must serve on with its associations thawed
/// (under RPC the plugin learns that from criu, criu-patches/0003, not from
/// a command line): the netns, the MME's address, the associations'
/// status before, and the two base stations.
fn mme_left_running(
    topo: &mut Topology,
    mover: &mut dyn Mover,
) -> Result<(String, SocketAddrV4, [PeerStatus; 2], Enb, Enb)> {
    let ns_a = topo.container(HOST_A, "mme", "mmea0", MME)?;
    let listen = format!("{MME}:{S1AP_PORT}");
    mover.start(
        &format!("/run/netns/{ns_a}"),
        &["sctp-echo", "--listen", &listen],
    )?;
    let to = SocketAddrV4::new(MME, S1AP_PORT);
    let (before, enb1, enb2) = streaming_enbs(to)?;
    std::thread::sleep(Duration::from_secs(1));

    let log = mover.checkpoint_left()?;
    ensure!(mover.running(), "the MME stopped after --leave-running");
    ensure!(
        log.contains("the dumped tasks live on: thawing"),
        "the plugin did not thaw after a --leave-running checkpoint:\n{}",
        mover.log()
    );
    let was = [enb1.echoed(), enb2.echoed()];
    runc::wait_for(
        Duration::from_secs(10),
        "echoes after the --leave-running checkpoint",
        || enb1.echoed() > was[0] + 20 && enb2.echoed() > was[1] + 20,
    )?;
    Ok((ns_a, to, before, enb1, enb2))
}

/// An MME (one-to-one SCTP echo listener) in a container `mover` runs, in
/// a netns made beforehand (as podman's netavark or CNI makes it; podman
/// joins it with `--network ns:`), serving two base stations on C that
/// stream on 4 streams both ways. A `--leave-running` checkpoint first
/// (what Kubernetes' checkpoint does): it keeps serving with its
/// associations thawed (under RPC the plugin learns that from criu,
/// criu-patches/0003, not from a command line). Then a checkpoint on A,
/// the images over the A-B link, the netns made anew on B with the same
/// address, the restore: 0 messages lost, duplicated or reordered, the
/// same associations (no ABORT, COMM_LOST or RESTART), no lock of the
/// plugin's left behind, a new eNB served, and the plugin's restore-time
/// lock seen in the netns before the address was announced there.
fn mme_moved_by(what: &str, mover: &mut dyn Mover) -> Result<()> {
    let mut topo = Topology::build()?;
    let (ns_a, to, before, enb1, enb2) = mme_left_running(&mut topo, mover)?;

    let t = std::time::Instant::now();
    mover.checkpoint()?;
    let checkpoint = t.elapsed();
    let (transfer, _) = mover.transfer()?;
    // The runtime tears the old netns down and makes one on B (the same
    // path: a podman checkpoint names it).
    topo.remove_container(&ns_a)?;
    let ns_b = topo.container(HOST_B, "mme", "mmeb0", MME)?;
    let t = std::time::Instant::now();
    mover.restore(&ns_b, MME)?;
    let restore = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    same_associations(&before, &enb1, &enb2)?;
    ensure!(
        plugin_locks_in(&ns_b) == 0,
        "the plugin's lock tables stayed in the runtime's netns after the thaw"
    );
    let enb3 = connect_from_c(to)?;
    let (mut s3, mut t3) = Default::default();
    echo_round(&enb3, &mut s3, &mut t3, 5)?;
    let (t1, gap1, _) = enb1.finish().context("eNB 1")?;
    let (t2, gap2, _) = enb2.finish().context("eNB 2")?;
    println!(
        "  {what}: --leave-running kept the MME serving; moved A->B (checkpoint {:.2}s, transfer \
         {:.2}s, restore {:.2}s): {} + {} messages echoed, 0 lost, duplicated or reordered, \
         longest silence {:.2}s, same associations, the plugin's lock in the runtime's netns \
         before the address moved there, a new eNB served",
        checkpoint.as_secs_f64(),
        transfer.as_secs_f64(),
        restore.as_secs_f64(),
        t1.received,
        t2.received,
        gap1.max(gap2).as_secs_f64()
    );
    Ok(())
}

/// [`mme_moved_by`] runc (`runc checkpoint [--leave-running]`, `runc
/// restore` from a bundle naming the netns made on B).
pub fn runc_moves_mme() -> Result<()> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-runc-mme")?;
    mme_moved_by("runc", &mut RuncMover::new("epc-mme", dir))
}

/// [`mme_moved_by`] podman (`container checkpoint [--leave-running]
/// --export` on host A's podman, `container restore --import` on host
/// B's, each with its own state).
pub fn podman_moves_mme() -> Result<()> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-podman-mme")?;
    mme_moved_by("podman", &mut PodmanMover::new("mme", &dir)?)
}

/// The SCTP associations in netns `ns` (a path), from
/// /proc/net/sctp/assocs: one line each after the header.
fn sctp_assocs_in(ns: &str) -> Result<usize> {
    crate::suites::sctp_repair::assoc_ids_in(ns).map(|ids| ids.len())
}

/// Kubernetes' way: a checkpoint with the container left running (the
/// kubelet's checkpoint API), then, once A's copy is gone, a restore of
/// that very export on B. The MME serves on after the checkpoint; when
/// A's copy is removed its associations end and the base stations see it,
/// as with any MME that dies. The export restores on B: the MME serves a
/// new base station there, and the associations it brings back, stale
/// since the checkpoint, are refused by their peers (an ABORT answers
/// them) and go, loudly, instead of lingering half-open.
pub fn podman_restores_left_export() -> Result<()> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-podman-left")?;
    let mut mover = PodmanMover::new("mme-left", &dir)?;
    let mut topo = Topology::build()?;
    let (ns_a, to, _, enb1, enb2) = mme_left_running(&mut topo, &mut mover)?;

    // A's copy goes: its associations end, and the base stations see it.
    mover
        .a
        .as_ref()
        .context("no podman")?
        .run(&["rm", "--force", "--time", "0", mover.id], "rm")?;
    runc::wait_for(
        Duration::from_secs(20),
        "both base stations seeing their association end",
        || {
            [&enb1, &enb2]
                .iter()
                .all(|e| e.failure().starts_with("its reader stopped"))
        },
    )?;
    let ended = format!("eNB 1: {}; eNB 2: {}", enb1.failure(), enb2.failure());
    let _ = enb1.finish();
    let _ = enb2.finish();

    let out = dir.join("out-a");
    std::fs::create_dir_all(&out)?;
    std::fs::copy(dir.join("left.tar.gz"), out.join("epc.tar.gz"))?;
    mover.transfer()?;
    topo.remove_container(&ns_a)?;
    let ns_b = topo.container(HOST_B, "mme", "mmeb0", MME)?;
    let pid = mover.restore(&ns_b, MME)?;
    let ns = format!("/proc/{pid}/ns/net");
    // The two associations, stale, came back and were thawed (their peers
    // then refuse them); the listener is restored unfrozen.
    let log = mover.log();
    let thawed: usize = log
        .lines()
        .find_map(|l| {
            l.split("thawed ")
                .nth(1)?
                .split(" SCTP socket(s)")
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| format!("no thaw in the restore's log:\n{log}"))?;
    ensure!(
        thawed == 2,
        "{thawed} SCTP sockets thawed, not the 2 associations"
    );
    let enb3 = connect_from_c(to)?;
    let (mut s3, mut t3) = Default::default();
    echo_round(&enb3, &mut s3, &mut t3, 20)?;
    let mut left = usize::MAX;
    runc::wait_for(
        Duration::from_secs(30),
        "the stale associations refused by their peers",
        || {
            left = sctp_assocs_in(&ns).unwrap_or(usize::MAX);
            left == 1
        },
    )
    .with_context(|| format!("{left} associations in the restored netns\n{}", mover.log()))?;
    println!(
        "  podman: checkpoint --leave-running --export, the MME served on; A's copy removed \
         ({ended}); that export restored on B: the listener and both associations came back, \
         the associations stale, refused by their peers and gone; a new eNB exchanged 20 \
         messages with the restored MME"
    );
    Ok(())
}

/// An SPGW with an MME in the same container, run by `mover`: gtp0 on the
/// process's own UDP sockets with 1,000 PDP contexts, the UE routes, the
/// SGi masquerade and forwarding on, two base stations streaming SCTP and
/// a UE sending through its tunnel for the whole migration.
/// The runtime's netns is external to CRIU, which then dumps and restores
/// none of its links, addresses, routes, rules or sysctls: the plugin
/// carries gtp0 and the netns's forwarding and ruleset itself. On B the
/// test makes the netns as a runtime with two networks would (eth0 and
/// sgi0, nothing else); after the restore gtp0 equals the original field
/// for field on the restored process's sockets, every tunnel carries UE
/// traffic through the masquerade, and the associations are the same with
/// nothing lost. Returns the migration's figures (`cargo vm demo`).
fn epc_moved_by(what: &str, mover: &mut dyn Mover) -> Result<EpcFigures> {
    use crate::suites::gtp::{self, SPGW_ADDR};
    let mut topo = Topology::build()?;
    gtp::sgi_host()?;
    let _sgi = gtp::scopeguard(gtp::SGI_NS);
    let ues = gtp::ues(gtp::N_UES);
    let ns_a = topo.container(HOST_A, "epc-spgw", "espgwa0", SPGW_ADDR)?;
    gtp::cable_spgw(&ns_a, HOST_A, "sgi-espgwa")?;
    let listen = EPC_S1AP.to_string();
    mover.start(
        &format!("/run/netns/{ns_a}"),
        &["spgw", "--sctp-echo", &listen],
    )?;
    let src_ns = gtp::ns_path(&ns_a);
    runc::wait_for(Duration::from_secs(15), "gtp0 made by the SPGW", || {
        gtp_state::capture(&src_ns, "gtp0").is_ok()
    })?;
    gtp::spgw_gtp_routes(&ns_a)?;
    let pdps: Vec<gtp_state::model::Pdp> = ues.iter().map(|u| u.spgw).collect();
    gtp_state::add_pdps(
        &src_ns,
        gtp::GTP0_INDEX,
        &pdps,
        gtp_state::Install::default(),
    )
    .context("adding contexts")?;
    gtp::enb(&ues)?;
    let _echo = gtp::Echo::start()?;
    gtp::check_traffic(&ues, "before")?;
    legacy_rules_add(&ns_a)?;
    let legacy_before = legacy_rules(&ns_a)?;
    let orig = gtp_state::capture(&src_ns, "gtp0")?;
    let (before, enb1, enb2) = streaming_enbs(EPC_S1AP)?;
    std::thread::sleep(Duration::from_secs(1));

    let ((checkpoint, transfer, image_bytes, restore, pid), ue) = gtp::with_stream(ues[0], || {
        let t = Instant::now();
        let log = mover.checkpoint()?;
        let checkpoint = t.elapsed();
        ensure!(
            log.contains("dumped gtp device gtp0") && log.contains("epcmig-netconf.img"),
            "the plugin did not capture gtp0 and the netns settings from the external netns"
        );
        let (transfer, bytes) = mover.transfer()?;
        // The old netns goes: its gtp0 first (on the dead process's
        // sockets it would keep the netns and its sgi0 alive).
        gtp_state::delete_device(&src_ns, "gtp0")?;
        topo.remove_container(&ns_a)?;
        let ns_b = topo.container(HOST_B, "epc-spgw", "espgwb0", SPGW_ADDR)?;
        gtp::cable_sgi_link(&ns_b, HOST_B, "sgi-espgwb")?;
        gtp::sgi_host_forgets_the_spgw()?;
        let t = Instant::now();
        let pid = mover.restore(&ns_b, SPGW_ADDR)?;
        Ok((checkpoint, transfer, bytes, t.elapsed(), pid))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let dst_ns = gtp_state::Netns::Pid(pid);
    let result = (|| -> Result<()> {
        let again = gtp_state::capture(&dst_ns, "gtp0").context("capturing the restored gtp0")?;
        gtp::compare(&orig, &again)?;
        ensure!(
            again
                .sockets_found
                .sockets
                .iter()
                .all(|s| s.owner.is_some_and(|o| o.pid == pid)),
            "gtp0 does not use the restored SPGW's sockets: {:?}",
            again.sockets_found
        );
        gtp::check_traffic(&ues, "after restore")?;
        same_associations(&before, &enb1, &enb2)?;
        let legacy_after = legacy_rules(&format!("/proc/{pid}/ns/net"))?;
        ensure!(
            legacy_after == legacy_before,
            "the iptables-legacy rules differ after the restore:\nbefore:\n{legacy_before}\nafter:\n{legacy_after}"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("{}", mover.log());
    }
    result?;
    let sctp = finish_enbs(enb1, enb2)?;
    println!(
        "  {what}, external netns: gtp0 ({} contexts, {} routes) re-created on the restored \
         process's sockets, forwarding, masquerade and iptables-legacy rules carried, every \
         tunnel carries traffic; the plugin's lock in the runtime's netns before the address moved there",
        orig.pdps.len(),
        orig.routes.len()
    );
    println!(
        "  checkpoint {:.2}s, transfer {:.2}s ({image_bytes} bytes), restore {:.2}s; UE traffic \
         during the migration: {} of {} datagrams echoed, UE service interrupted {:.2}s; a UE \
         flow from before the move {}",
        checkpoint.as_secs_f64(),
        transfer.as_secs_f64(),
        restore.as_secs_f64(),
        ue.echoed,
        ue.sent,
        ue.max_gap.as_secs_f64(),
        if ue.old_flow_recovered {
            "recovered"
        } else {
            "did not recover (its conntrack entry is not carried out of a runtime's netns)"
        }
    );
    let _ = gtp_state::delete_device(&dst_ns, "gtp0");
    Ok(EpcFigures {
        checkpoint,
        transfer,
        restore,
        image_bytes,
        pre_copied_bytes: 0,
        ue,
        tunnels: ues.len(),
        sctp: Some(sctp),
        // podman's log does not carry CRIU's stages.
        timeline: None,
    })
}

/// x_tables rules an SPGW set with iptables-legacy (which `nft list
/// ruleset` does not show), IPv4 and IPv6, a user chain among them.
fn legacy_rules_add(ns: &str) -> Result<()> {
    for (prog, args) in [
        ("iptables-legacy", &["-N", "SPGW_FWD"][..]),
        (
            "iptables-legacy",
            &["-A", "SPGW_FWD", "-i", "gtp0", "-j", "ACCEPT"],
        ),
        ("iptables-legacy", &["-A", "FORWARD", "-j", "SPGW_FWD"]),
        (
            "ip6tables-legacy",
            &["-A", "INPUT", "-p", "sctp", "-j", "ACCEPT"],
        ),
    ] {
        let o = net::command_in(ns, prog)?.args(args).output()?;
        ensure!(
            o.status.success(),
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// The iptables-legacy rules of netns `ns` (a name or path), both
/// families, without counters.
fn legacy_rules(ns: &str) -> Result<String> {
    let mut all = String::new();
    for prog in ["iptables-legacy", "ip6tables-legacy"] {
        let o = net::command_in(ns, prog)?.arg("-S").output()?;
        ensure!(o.status.success(), "{prog} -S in {ns} failed");
        all += &String::from_utf8_lossy(&o.stdout);
    }
    Ok(all)
}

/// [`epc_moved_by`] runc (`runc checkpoint`, `runc restore`).
pub fn runc_moves_epc() -> Result<()> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-runc-epc")?;
    epc_moved_by("runc", &mut RuncMover::new("epc-spgw", dir)).map(|_| ())
}

/// [`epc_moved_by`] podman (`container checkpoint --export` on host A's
/// podman, `container restore --import` on host B's).
pub fn podman_moves_epc() -> Result<()> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-podman-epc")?;
    epc_moved_by("podman", &mut PodmanMover::new("epc", &dir)?).map(|_| ())
}

/// The demo's third part: the EPC moved by podman, with its figures.
pub fn podman_epc_figures() -> Result<EpcFigures> {
    let _installed = Installed::new()?;
    let dir = crate::suites::baseline::work_dir("runtime-podman-epc")?;
    epc_moved_by("podman", &mut PodmanMover::new("epc", &dir)?)
}

/// An SPGW in criu's own network namespace (the host's, no container):
/// CRIU dumps none of that netns's links, and the host's gtp devices are
/// not the process's to take. Its gtp0 is on the process's own sockets, so
/// a restore would bring it back without its tunnels: the dump fails with
/// an error naming the device, the process and its fd, and the process
/// and gtp0 are as they were.
pub fn gtp_in_host_netns_refused() -> Result<()> {
    let topo = Topology::build()?;
    let mut app = crate::apps::spawn_in(HOST_A, &["spgw"])?;
    let ns = crate::suites::gtp::ns_path(HOST_A);
    let result = (|| -> Result<()> {
        runc::wait_for(Duration::from_secs(15), "gtp0 made by the SPGW", || {
            gtp_state::capture(&ns, "gtp0").is_ok()
        })?;
        // The SPGW sets gtp0 up (MTU) right after making it.
        std::thread::sleep(Duration::from_secs(1));
        let before = gtp_state::capture(&ns, "gtp0")?;
        let dir = crate::suites::baseline::work_dir("runtime-gtp-host-netns")?;
        let lib = crate::suites::plugin::plugin_dir();
        let r = crate::criu::dump(HOST_A, app.id(), &dir.join("images"), &["--lib", &lib]);
        ensure!(
            r.is_err(),
            "criu dump of an SPGW in the host's netns succeeded"
        );
        let log = std::fs::read_to_string(dir.join("images/dump.log")).unwrap_or_default();
        let line = log
            .lines()
            .find(|l| l.contains("epcmig: gtp device gtp0 is in criu's own network namespace"))
            .with_context(|| format!("no epcmig error naming gtp0 in criu's log:\n{log}"))?;
        ensure!(
            line.contains(&format!("task {} holds its socket", app.id())),
            "the error does not name the process: {line}"
        );
        ensure!(
            app.try_wait()?.is_none(),
            "the SPGW exited after the failed dump"
        );
        let after = gtp_state::capture(&ns, "gtp0")?;
        crate::suites::gtp::compare(&before, &after)?;
        println!("  refused: {}", line.trim());
        Ok(())
    })();
    let _ = app.kill();
    let _ = app.wait();
    let _ = gtp_state::delete_device(&ns, "gtp0");
    drop(topo);
    result
}

/// The plugin and error lines of CRIU's log of the last podman
/// checkpoint or restore.
fn podman_criu_log() -> String {
    let p = crate::podman::criu_log();
    let dir = p.parent().unwrap_or(Path::new("/"));
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    runc::criu_log(dir, name)
}
