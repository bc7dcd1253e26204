//! A listener's backlog and accept queue, and whether a port has a
//! listener, from sock_diag.
//!
//! No socket option reports the backlog a socket was given with listen();
//! sctp_diag does, as the "send queue" of a listening endpoint
//! (`idiag_wqueue = sk_max_ack_backlog`, net/sctp/diag.c). The dump is
//! filtered by family and port and our socket found by its inode. sock_diag
//! answers for the network namespace of the netlink socket, so that socket
//! is opened in the namespace of the SCTP socket (which may not be the
//! caller's: CRIU captures the sockets of a container from outside it).

use std::io;

use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

use crate::{sys, Error, Result};

/// Most dump messages read before giving up (a namespace with that many
/// SCTP endpoints on one port does not exist; a broken answer might).
const MAX_MESSAGES: usize = 1 << 16;

fn os(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Os { op, source }
}

/// (device, inode) of the calling thread's network namespace.
fn own_netns() -> io::Result<(u64, u64)> {
    let f = std::fs::File::open("/proc/thread-self/ns/net")?;
    sys::file_id(f.as_fd())
}

/// A sock_diag netlink socket in the network namespace of `sock`.
fn diag_socket_for(sock: BorrowedFd<'_>) -> Result<Socket> {
    let ns = sys::netns_of(sock).map_err(os("ioctl(SIOCGSKNS)"))?;
    let here = own_netns().map_err(os("/proc/thread-self/ns/net"))?;
    let there = sys::file_id(ns.as_fd()).map_err(os("fstat(netns)"))?;
    if here == there {
        return Socket::new(NETLINK_SOCK_DIAG).map_err(os("socket(NETLINK_SOCK_DIAG)"));
    }
    // A socket stays in the namespace it was made in: make it in a thread
    // of its own that enters the namespace and ends.
    std::thread::scope(|s| {
        s.spawn(|| {
            // Only this short-lived thread changes namespace.
            sys::enter_netns(ns.as_fd()).map_err(os("setns(socket's netns)"))?;
            Socket::new(NETLINK_SOCK_DIAG).map_err(os("socket(NETLINK_SOCK_DIAG)"))
        })
        .join()
        .map_err(|_| os("sock_diag socket")(io::Error::other("the thread making it panicked")))?
    })
}

/// What sock_diag reports of a listening SCTP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerQueues {
    /// The listen() backlog (`sk_max_ack_backlog`).
    pub backlog: u32,
    /// Associations established on it and not yet accept()ed
    /// (`sk_ack_backlog`: sctp_endpoint_add_asoc() counts them in).
    pub pending: u32,
}

/// The backlog and accept queue of the listening SCTP socket `sock`,
/// bound to `port` (host order), of `family`.
pub(crate) fn listener_queues(
    sock: BorrowedFd<'_>,
    family: u16,
    port: u16,
) -> Result<ListenerQueues> {
    let (_, inode) = sys::file_id(sock).map_err(os("fstat(socket)"))?;
    let family = u8::try_from(family).map_err(|_| Error::NotSctp)?;
    let nl = diag_socket_for(sock)?;
    listeners(nl, family, port)?
        .into_iter()
        .find(|(ino, _)| u64::from(*ino) == inode)
        .map(|(_, q)| q)
        .ok_or_else(|| bad_answer(format!("no listening SCTP socket with inode {inode}")))
}

/// Whether a listening SCTP socket of either family is bound to `port` in
/// the caller's network namespace.
pub(crate) fn port_has_listener(port: u16) -> Result<bool> {
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let nl = Socket::new(NETLINK_SOCK_DIAG).map_err(os("socket(NETLINK_SOCK_DIAG)"))?;
        if !listeners(nl, family, port)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn bad_answer(what: String) -> Error {
    os("sock_diag answer")(io::Error::new(io::ErrorKind::InvalidData, what))
}

/// The listening SCTP endpoints of `family` bound to `port` in the
/// namespace of `nl`: (inode, queues) each.
fn listeners(mut nl: Socket, family: u8, port: u16) -> Result<Vec<(u32, ListenerQueues)>> {
    let mut socket_id = if i32::from(family) == libc::AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    socket_id.source_port = port;
    nl.bind_auto().map_err(os("bind(NETLINK_SOCK_DIAG)"))?;
    nl.connect(&SocketAddr::new(0, 0))
        .map_err(os("connect(NETLINK_SOCK_DIAG)"))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(
        hdr,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: libc::IPPROTO_SCTP as u8,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    nl.send(&buf, 0).map_err(os("send(sock_diag request)"))?;

    let mut found = Vec::new();
    let mut rx = vec![0u8; 64 << 10];
    let mut seen = 0;
    loop {
        let n = nl
            .recv(&mut &mut rx[..], 0)
            .map_err(os("recv(sock_diag answer)"))?;
        let mut at = 0;
        while at < n {
            seen += 1;
            if seen > MAX_MESSAGES {
                return Err(bad_answer("the dump does not end".into()));
            }
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[at..n])
                .map_err(|e| bad_answer(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(os("sock_diag dump")(
                        e.code
                            .map(|c| io::Error::from_raw_os_error(-c.get()))
                            .unwrap_or_else(|| io::Error::other("error without a code")),
                    ));
                }
                // The kernel filters by state and family; the port is
                // checked here too, in case a kernel ignores that filter.
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                    if r.header.socket_id.source_port == port =>
                {
                    found.push((
                        r.header.inode,
                        ListenerQueues {
                            backlog: r.header.send_queue,
                            pending: r.header.recv_queue,
                        },
                    ));
                }
                _ => {}
            }
            if len == 0 {
                return Err(bad_answer("a message of length 0".into()));
            }
            // Messages are 4-byte aligned (NLMSG_ALIGN).
            at = at.saturating_add(len.saturating_add(3) & !3);
        }
        if n == 0 {
            return Err(bad_answer("the dump ended without NLMSG_DONE".into()));
        }
    }
}
