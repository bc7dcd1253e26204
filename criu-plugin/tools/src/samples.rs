//! Sample images shaped like what the plugin and `gtp-state capture` write
//! for an MME and an SPGW: the seeds of the fuzz corpora
//! (`examples/fuzz-seeds.rs`) and the valid inputs of the decoder tests.
//! The kernel blobs are laid out field by field with the uapi structs'
//! offsets, so they pass the same checks as captured ones.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, SocketAddr};

use epcmig_sys::sctp_repair as uapi;
use gtp_state::{
    Address, Device, FdOwner, FoundBy, GtpSocket, GtpState, Pdp, Role, Route, SocketId, Sockets,
    SocketsFound, Tunnel,
};
use sctp_repair::{Kind, QueueRecord, Snapshot, SockOpt};

use crate::decode::Image;

const V1: u32 = uapi::SCTP_REPAIR_V1;
const S1AP_PORT: u16 = 36412;

fn set(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A `struct sockaddr_storage` (kernel layout) at `at`.
fn set_sockaddr(b: &mut [u8], at: usize, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            set(b, at, &(libc::AF_INET as u16).to_ne_bytes());
            set(b, at + 2, &v4.port().to_be_bytes());
            set(b, at + 4, &v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            set(b, at, &(libc::AF_INET6 as u16).to_ne_bytes());
            set(b, at + 2, &v6.port().to_be_bytes());
            set(b, at + 8, &v6.ip().octets());
            set(b, at + 24, &v6.scope_id().to_ne_bytes());
        }
    }
}

/// A literal of the samples below.
fn lit<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| unreachable!("sample literal {s}"))
}

fn addr(s: &str) -> SocketAddr {
    lit(s)
}

fn ip(s: &str) -> IpAddr {
    lit(s)
}

macro_rules! at {
    ($t:ident . $f:ident) => {
        offset_of!(uapi::$t, $f)
    };
}

fn assoc_blob(primary: SocketAddr, npaths: u32, streams: u16, features: u32) -> Vec<u8> {
    let mut a = vec![0u8; size_of::<uapi::sctp_repair_assoc>()];
    let u32s: &[(usize, u32)] = &[
        (at!(sctp_repair_assoc.sra_version), V1),
        (at!(sctp_repair_assoc.sra_features), features),
        (at!(sctp_repair_assoc.sra_npaths), npaths),
        (at!(sctp_repair_assoc.sra_my_vtag), 0x5eed_0001),
        (at!(sctp_repair_assoc.sra_peer_vtag), 0x0bad_cafe),
        (at!(sctp_repair_assoc.sra_initial_tsn), 1000),
        (at!(sctp_repair_assoc.sra_next_tsn), 1042),
        (at!(sctp_repair_assoc.sra_ctsn_ack_point), 1039),
        (at!(sctp_repair_assoc.sra_adv_peer_ack_point), 1039),
        (at!(sctp_repair_assoc.sra_highest_sacked), 1039),
        (at!(sctp_repair_assoc.sra_peer_initial_tsn), 77_000),
        (at!(sctp_repair_assoc.sra_peer_ctsn), 77_120),
        (at!(sctp_repair_assoc.sra_rwnd), 106_496),
        (at!(sctp_repair_assoc.sra_a_rwnd), 106_496),
        (at!(sctp_repair_assoc.sra_peer_rwnd), 65_536),
        (at!(sctp_repair_assoc.sra_max_retrans), 10),
        (at!(sctp_repair_assoc.sra_rto_initial), 3000),
        (at!(sctp_repair_assoc.sra_rto_min), 1000),
        (at!(sctp_repair_assoc.sra_rto_max), 60_000),
        (at!(sctp_repair_assoc.sra_hbinterval), 30_000),
        (at!(sctp_repair_assoc.sra_sackdelay), 200),
        (at!(sctp_repair_assoc.sra_sackfreq), 2),
        (at!(sctp_repair_assoc.sra_pathmtu), 1500),
        (at!(sctp_repair_assoc.sra_max_burst), 4),
    ];
    for (off, v) in u32s {
        set(&mut a, *off, &v.to_ne_bytes());
    }
    set_sockaddr(&mut a, at!(sctp_repair_assoc.sra_primary_addr), primary);
    for (off, v) in [
        (at!(sctp_repair_assoc.sra_local_port), S1AP_PORT),
        (at!(sctp_repair_assoc.sra_peer_port), S1AP_PORT),
        (at!(sctp_repair_assoc.sra_outcnt), streams),
        (at!(sctp_repair_assoc.sra_incnt), streams),
        (at!(sctp_repair_assoc.sra_pathmaxrxt), 5),
    ] {
        set(&mut a, off, &v.to_ne_bytes());
    }
    a
}

fn paths_blob(peers: &[SocketAddr]) -> Vec<u8> {
    let hdr = size_of::<uapi::sctp_repair_paths>();
    let size = size_of::<uapi::sctp_repair_path>();
    let mut b = vec![0u8; hdr + peers.len() * size];
    set(&mut b, 0, &V1.to_ne_bytes());
    set(&mut b, 4, &(peers.len() as u32).to_ne_bytes());
    for (i, peer) in peers.iter().enumerate() {
        let at = hdr + i * size;
        set_sockaddr(&mut b, at + at!(sctp_repair_path.srp_addr), *peer);
        let primary = if i == 0 {
            uapi::SCTP_REPAIR_PATH_PRIMARY
        } else {
            0
        };
        for (off, v) in [
            (at!(sctp_repair_path.srp_state), 2u32), // SCTP_ACTIVE
            (at!(sctp_repair_path.srp_flags), primary),
            (at!(sctp_repair_path.srp_pathmtu), 1500),
            (at!(sctp_repair_path.srp_rto), 1000),
            (at!(sctp_repair_path.srp_srtt), 12),
            (at!(sctp_repair_path.srp_rttvar), 6),
            (at!(sctp_repair_path.srp_cwnd), 4380),
            (at!(sctp_repair_path.srp_ssthresh), 65_536),
        ] {
            set(&mut b, at + off, &v.to_ne_bytes());
        }
    }
    b
}

fn streams_blob(n: u16) -> Vec<u8> {
    let hdr = size_of::<uapi::sctp_repair_streams>();
    let size = size_of::<uapi::sctp_repair_stream>();
    let mut b = vec![0u8; hdr + usize::from(n) * size];
    set(&mut b, 0, &V1.to_ne_bytes());
    set(&mut b, 4, &n.to_ne_bytes());
    set(&mut b, 6, &n.to_ne_bytes());
    for sid in 0..usize::from(n) {
        let at = hdr + sid * size;
        let mid = 3 * sid as u32 + 1;
        set(
            &mut b,
            at + at!(sctp_repair_stream.srs_out_mid),
            &mid.to_ne_bytes(),
        );
        set(
            &mut b,
            at + at!(sctp_repair_stream.srs_in_mid),
            &(mid + 1).to_ne_bytes(),
        );
        b[at + at!(sctp_repair_stream.srs_out_state)] = 1;
    }
    b
}

fn tsn_map_blob(cum: u32, dups: &[u32], gaps: &[(u16, u16)]) -> Vec<u8> {
    let hdr = size_of::<uapi::sctp_repair_tsn_map>();
    let gap = size_of::<uapi::sctp_repair_gap>();
    let mut b = vec![0u8; hdr + gaps.len() * gap];
    set(&mut b, 0, &V1.to_ne_bytes());
    set(&mut b, 4, &cum.to_ne_bytes());
    let max = cum + gaps.last().map_or(0, |g| u32::from(g.1));
    set(&mut b, 8, &max.to_ne_bytes());
    set(
        &mut b,
        at!(sctp_repair_tsn_map.srtm_num_dups),
        &(dups.len() as u16).to_ne_bytes(),
    );
    set(
        &mut b,
        at!(sctp_repair_tsn_map.srtm_num_gaps),
        &(gaps.len() as u16).to_ne_bytes(),
    );
    for (i, d) in dups.iter().enumerate() {
        set(
            &mut b,
            at!(sctp_repair_tsn_map.srtm_dup_tsns) + 4 * i,
            &d.to_ne_bytes(),
        );
    }
    for (i, (s, e)) in gaps.iter().enumerate() {
        set(&mut b, hdr + i * gap, &s.to_ne_bytes());
        set(&mut b, hdr + i * gap + 2, &e.to_ne_bytes());
    }
    b
}

/// A queue record: `struct sctp_repair_chunk` and an S1AP-sized payload.
fn record(queue: u32, flags: u32, tsn: u32, sid: u16, payload: &[u8]) -> QueueRecord {
    let hdr = size_of::<uapi::sctp_repair_chunk>();
    let mut b = vec![0u8; hdr];
    for (off, v) in [
        (at!(sctp_repair_chunk.src_version), V1),
        (at!(sctp_repair_chunk.src_len), (hdr + payload.len()) as u32),
        (at!(sctp_repair_chunk.src_flags), flags),
        (at!(sctp_repair_chunk.src_tsn), tsn),
        (at!(sctp_repair_chunk.src_mid), 7),
        (at!(sctp_repair_chunk.src_ppid), 18u32.to_be()), // S1AP
    ] {
        set(&mut b, off, &v.to_ne_bytes());
    }
    set(&mut b, at!(sctp_repair_chunk.src_sid), &sid.to_ne_bytes());
    b.extend_from_slice(payload);
    QueueRecord {
        queue: queue as u8,
        data: b,
    }
}

/// The options `capture` records for an MME's accepted socket.
fn mme_sockopts() -> Vec<SockOpt> {
    let int = |level, name, v: i32| SockOpt {
        level,
        name,
        value: v.to_ne_bytes().to_vec(),
    };
    vec![
        int(libc::SOL_SOCKET, libc::SO_RCVBUF, 212_992),
        int(libc::SOL_SOCKET, libc::SO_SNDBUF, 212_992),
        int(libc::IPPROTO_SCTP, 3, 1),  // SCTP_NODELAY
        int(libc::IPPROTO_SCTP, 19, 0), // SCTP_PARTIAL_DELIVERY_POINT
        SockOpt {
            level: libc::IPPROTO_SCTP,
            name: 11, // SCTP_EVENTS
            value: vec![1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        },
    ]
}

/// An accepted S1-MME association over IPv4 with data in every queue.
pub fn sctp_established_v4() -> Snapshot {
    let peer = addr("192.0.2.3:36412");
    Snapshot {
        kind: Kind::Established,
        family: libc::AF_INET as u16,
        backlog: 0,
        local_addrs: vec![addr("192.0.2.10:36412")],
        assoc: assoc_blob(
            peer,
            1,
            4,
            uapi::SCTP_REPAIR_FEAT_IPV4 | uapi::SCTP_REPAIR_FEAT_PRSCTP,
        ),
        paths: paths_blob(&[peer]),
        streams: streams_blob(4),
        tsn_map: tsn_map_blob(77_120, &[77_118], &[(2, 3), (6, 6)]),
        sockopts: mme_sockopts(),
        queues: vec![
            record(
                uapi::SCTP_REPAIR_QUEUE_SEND_UNSENT,
                uapi::SCTP_REPAIR_CHUNK_FIRST | uapi::SCTP_REPAIR_CHUNK_LAST,
                0,
                1,
                b"\x00\x0c\x40\x3d initial UE message",
            ),
            record(
                uapi::SCTP_REPAIR_QUEUE_SEND_INFLIGHT,
                uapi::SCTP_REPAIR_CHUNK_FIRST | uapi::SCTP_REPAIR_CHUNK_LAST,
                1040,
                2,
                &[0x20, 0x11, 0, 0x25],
            ),
            record(
                uapi::SCTP_REPAIR_QUEUE_RECV,
                uapi::SCTP_REPAIR_CHUNK_FIRST | uapi::SCTP_REPAIR_CHUNK_REASM,
                77_122,
                3,
                &[0x5a; 64],
            ),
        ],
        auth: Vec::new(),
        members: Vec::new(),
    }
}

/// A multi-homed association over IPv6 (two addresses each side), on an
/// AF_INET6 socket, idle.
pub fn sctp_established_v6() -> Snapshot {
    let peers = [addr("[2001:db8::3]:36412"), addr("[2001:db8:1::3]:36412")];
    Snapshot {
        kind: Kind::Established,
        family: libc::AF_INET6 as u16,
        backlog: 0,
        local_addrs: vec![addr("[2001:db8::10]:36412"), addr("[2001:db8:1::10]:36412")],
        assoc: assoc_blob(
            peers[0],
            2,
            2,
            uapi::SCTP_REPAIR_FEAT_IPV6 | uapi::SCTP_REPAIR_FEAT_IPV4,
        ),
        paths: paths_blob(&peers),
        streams: streams_blob(2),
        tsn_map: tsn_map_blob(5, &[], &[]),
        sockopts: Vec::new(),
        queues: Vec::new(),
        auth: Vec::new(),
        members: Vec::new(),
    }
}

/// The MME's listening socket.
pub fn sctp_listener() -> Snapshot {
    Snapshot {
        kind: Kind::Listen,
        family: libc::AF_INET as u16,
        backlog: 16,
        local_addrs: vec![addr("0.0.0.0:36412")],
        assoc: Vec::new(),
        paths: Vec::new(),
        streams: Vec::new(),
        tsn_map: Vec::new(),
        sockopts: mme_sockopts(),
        queues: Vec::new(),
        auth: Vec::new(),
        members: Vec::new(),
    }
}

/// A one-to-many MME socket (srsEPC's shape) with two eNBs, known to the
/// application by association ids 7 and 12.
pub fn sctp_one_to_many() -> Snapshot {
    let member = |id: i32, peer: &str| {
        let mut snap = sctp_established_v4();
        let peer = addr(peer);
        snap.assoc = assoc_blob(peer, 1, 4, uapi::SCTP_REPAIR_FEAT_IPV4);
        snap.paths = paths_blob(&[peer]);
        sctp_repair::Member { id, snap }
    };
    Snapshot {
        kind: Kind::OneToMany { listening: true },
        members: vec![member(7, "192.0.2.3:36412"), member(12, "192.0.2.4:36412")],
        ..sctp_listener()
    }
}

/// An SPGW's gtp0 with its own UDP sockets and `n` PDP contexts mixing
/// GTPv1 IPv4, GTPv1 IPv6 and GTPv0, one with an IPv6 eNB.
pub fn gtp_table(n: u32) -> GtpState {
    let enb = ip("192.0.2.3");
    let mut pdps: Vec<Pdp> = (0..n)
        .map(|i| {
            let (tunnel, ms) = match i % 3 {
                0 => (
                    Tunnel::V1 {
                        i_tei: 0x100 + i,
                        o_tei: 0x8000 + i,
                    },
                    IpAddr::from([10, 45, (i >> 8) as u8, i as u8]),
                ),
                1 => (
                    Tunnel::V1 {
                        i_tei: 0x100 + i,
                        o_tei: 0x8000 + i,
                    },
                    IpAddr::from([0x2001, 0xdb8, 0x45, i as u16, 0, 0, 0, 0]),
                ),
                _ => (
                    Tunnel::V0 {
                        tid: 0x0262_0100_0000_0000 | u64::from(i),
                        flow: i as u16,
                    },
                    IpAddr::from([10, 46, (i >> 8) as u8, i as u8]),
                ),
            };
            Pdp {
                tunnel,
                peer: enb,
                ms,
            }
        })
        .collect();
    pdps.push(Pdp {
        tunnel: Tunnel::V1 {
            i_tei: 0xfff0,
            o_tei: 0xfff1,
        },
        peer: ip("2001:db8::3"),
        ms: ip("2001:db8:46::7"),
    });
    GtpState {
        device: Device {
            name: "gtp0".into(),
            ifindex: 5,
            role: Role::Ggsn,
            hash_size: 1024,
            restart_count: 1,
            mtu: 1452,
            up: true,
        },
        sockets: Sockets::Process {
            gtp0: Some(addr("192.0.2.10:3386")),
            gtp1u: Some(addr("192.0.2.10:2152")),
        },
        // As the kernel reports them (kernel-patches/gtp/0002), held by the
        // SPGW's fds 5 and 6.
        sockets_found: SocketsFound {
            by: FoundBy::Kernel,
            sockets: vec![
                SocketId {
                    which: GtpSocket::Gtp0,
                    inode: 40_001,
                    owner: Some(FdOwner { pid: 4242, fd: 5 }),
                },
                SocketId {
                    which: GtpSocket::Gtp1u,
                    inode: 40_002,
                    owner: Some(FdOwner { pid: 4242, fd: 6 }),
                },
            ],
        },
        addresses: vec![Address {
            local: ip("10.45.0.1"),
            prefix_len: 16,
            peer: None,
            scope: 0,
            flags: 0x80,
        }],
        routes: vec![
            // The UE pools behind the tunnel: a kernel route (scope link)
            // and a static one with a metric.
            route("10.46.0.0", 16, Some("10.45.0.1"), 2, 253, None),
            route("2001:db8:45::", 48, None, 4, 0, Some(1024)),
        ],
        pdps,
    }
}

fn route(
    dst: &str,
    dst_len: u8,
    pref_src: Option<&str>,
    protocol: u8,
    scope: u8,
    priority: Option<u32>,
) -> Route {
    Route {
        dst: ip(dst),
        dst_len,
        gateway: None,
        pref_src: pref_src.map(ip),
        table: 254, // main
        protocol,
        scope,
        kind: 1, // RTN_UNICAST
        priority,
    }
}

/// An eNB-side device with kernel-created sockets and no contexts.
pub fn gtp_table_kernel_sockets() -> GtpState {
    let mut g = gtp_table(0);
    g.device.name = "gtp-enb".into();
    g.device.role = Role::Sgsn;
    g.sockets = Sockets::Kernel {
        local: Some(ip("192.0.2.3")),
    };
    g.addresses.clear();
    g.routes.clear();
    g.pdps.clear();
    g
}

/// Every sample, with the file name it would have in an image directory.
pub fn all() -> Vec<(String, Image)> {
    vec![
        (
            epcmig_criu::images::sctp_image_name(0x0c),
            Image::Sctp(sctp_established_v4()),
        ),
        (
            epcmig_criu::images::sctp_image_name(0x0d),
            Image::Sctp(sctp_established_v6()),
        ),
        (
            epcmig_criu::images::sctp_image_name(0x0b),
            Image::Sctp(sctp_listener()),
        ),
        (
            epcmig_criu::images::sctp_image_name(0x0e),
            Image::Sctp(sctp_one_to_many()),
        ),
        ("gtp0.state".into(), Image::Gtp(gtp_table(30))),
        (
            "gtp-enb.state".into(),
            Image::Gtp(gtp_table_kernel_sockets()),
        ),
    ]
}
