//! The association's data queues (kernel SCTP_REPAIR_QUEUE): read record
//! by record with recvmsg(MSG_PEEK) on a frozen socket, written back with
//! one sendmsg() per record on a restored one before it is thawed.

use std::io;
use std::os::fd::BorrowedFd;

use epcmig_sys::linux;
use epcmig_sys::sctp_repair as uapi;

use crate::sys;
use crate::{classify, Result};

/// Queues in the order they are read and written.
pub(crate) const QUEUES: [u32; 3] = [
    uapi::SCTP_REPAIR_QUEUE_SEND_UNSENT,
    uapi::SCTP_REPAIR_QUEUE_SEND_INFLIGHT,
    uapi::SCTP_REPAIR_QUEUE_RECV,
];

/// Size of `struct sctp_repair_chunk`, the header of every record.
pub(crate) const RECORD_HDR: usize = std::mem::size_of::<uapi::sctp_repair_chunk>();
/// Largest record we accept (a message is bounded by the socket buffers).
pub(crate) const MAX_RECORD: usize = 16 << 20;

/// One queued record: which queue, and the kernel's record (header and
/// payload) as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub queue: u8,
    pub data: Vec<u8>,
}

fn select(sock: BorrowedFd<'_>, q: u32) -> Result<()> {
    sys::setsockopt(sock, sys::RepairQueue, &q)
        .map_err(|e| classify("setsockopt(SCTP_REPAIR_QUEUE)", e))
}

/// `src_len` of a record header.
pub(crate) fn record_len(rec: &[u8]) -> Option<usize> {
    word(rec, 4).map(|n| n as usize)
}

/// The u32 at byte `at` of a record header.
fn word(rec: &[u8], at: usize) -> Option<u32> {
    rec.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// `src_flags` of a record header (SCTP_REPAIR_CHUNK_*).
pub(crate) fn record_flags(rec: &[u8]) -> u32 {
    word(rec, 8).unwrap_or(0)
}

impl QueueRecord {
    /// A received record that waited in the socket's pd lobby.
    pub(crate) fn in_pd_lobby(&self) -> bool {
        u32::from(self.queue) == uapi::SCTP_REPAIR_QUEUE_RECV
            && record_flags(&self.data) & uapi::SCTP_REPAIR_CHUNK_PD_LOBBY != 0
    }

    /// The flags of a record of the receive queue proper (not waiting
    /// for order or fragments, not in the pd lobby).
    fn on_receive_queue(&self) -> Option<u32> {
        let f = record_flags(&self.data);
        let elsewhere = uapi::SCTP_REPAIR_CHUNK_ORDER
            | uapi::SCTP_REPAIR_CHUNK_REASM
            | uapi::SCTP_REPAIR_CHUNK_PD_LOBBY;
        (u32::from(self.queue) == uapi::SCTP_REPAIR_QUEUE_RECV && f & elsewhere == 0).then_some(f)
    }
}

/// When an association's records for the shared receive queue of a
/// one-to-many socket or a listener are written, among the others'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RecvTurn {
    /// It continues a message the user has begun to read: nothing of the
    /// others comes before it (the marker of a message read so far, or a
    /// piece without the first one).
    First,
    /// Its messages are whole: anywhere.
    Any,
    /// A message of it is delivered partially, its end still to come:
    /// nothing of the others may follow on the receive queue.
    Last,
}

/// [`RecvTurn`] of an association's records.
pub(crate) fn recv_turn(records: &[QueueRecord]) -> RecvTurn {
    let whole = uapi::SCTP_REPAIR_CHUNK_FIRST | uapi::SCTP_REPAIR_CHUNK_LAST;
    let is_piece = |f: u32| f & uapi::SCTP_REPAIR_CHUNK_NOTIFICATION == 0 && f & whole != whole;
    let mut recv = records.iter().filter_map(QueueRecord::on_receive_queue);
    let Some(head) = recv.next() else {
        return RecvTurn::Any;
    };
    if head & uapi::SCTP_REPAIR_CHUNK_PD_OPEN != 0
        || (is_piece(head) && head & uapi::SCTP_REPAIR_CHUNK_FIRST == 0)
    {
        return RecvTurn::First;
    }
    // The last piece seen opens a message or continues one not ended.
    let open = std::iter::once(head)
        .chain(recv)
        .rfind(|&f| is_piece(f))
        .is_some_and(|f| f & uapi::SCTP_REPAIR_CHUNK_LAST == 0);
    if open {
        RecvTurn::Last
    } else {
        RecvTurn::Any
    }
}

/// An index into SO_MEMINFO's array.
const SK_MEMINFO_WMEM_QUEUED: usize = linux::SK_MEMINFO_WMEM_QUEUED as usize;
/// Entries of SO_MEMINFO's array.
const SK_MEMINFO_VARS: usize = linux::SK_MEMINFO_VARS as usize;

/// Whether the association may have DATA to send or in flight. Every DATA
/// chunk is charged to the socket's sk_wmem_queued from the moment it is
/// queued (or written back in repair mode) until it is acknowledged, so 0
/// there means both send queues are empty: one call instead of four to
/// select and read them. The receive queue has no such test: a partial
/// delivery the user has read up to is a record with no memory behind it.
fn may_have_outbound(sock: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4 * SK_MEMINFO_VARS];
    match sys::get(sock, libc::SOL_SOCKET, libc::SO_MEMINFO, &mut buf) {
        Ok(n) if n == buf.len() => {
            let at = 4 * SK_MEMINFO_WMEM_QUEUED;
            buf[at..at + 4].iter().any(|&b| b != 0)
        }
        // Cannot tell: read the queues.
        _ => true,
    }
}

/// The queues to read when the kernel does not say (no SCTP_REPAIR_SOCK),
/// as a bit per queue: the receive queue always, the send queues if
/// something may be queued to send.
fn queues_to_read(sock: BorrowedFd<'_>) -> u8 {
    let recv = 1 << uapi::SCTP_REPAIR_QUEUE_RECV;
    if may_have_outbound(sock) {
        QUEUES.iter().fold(0, |m, q| m | 1 << q)
    } else {
        recv
    }
}

/// Reads the queues of a frozen socket that `which` flags (a bit per
/// queue, SCTP_REPAIR_SOCK's srso_queues); all that may hold records if
/// `None`. A queue not flagged holds none: an idle association costs no
/// call here.
pub(crate) fn read_all(sock: BorrowedFd<'_>, which: Option<u8>) -> Result<Vec<QueueRecord>> {
    let mut out = Vec::new();
    let which = which.unwrap_or_else(|| queues_to_read(sock));
    if which == 0 {
        return Ok(out);
    }
    // Most records are a chunk of at most a path MTU; a bigger one (a
    // whole received message) comes back truncated and the buffer grows.
    // Small, because an idle socket reads no record into it at all, and a
    // big zeroed buffer per capture is a cost of its own.
    let mut small = [0u8; RECORD_HDR + 1500];
    let mut big = Vec::new();
    for q in QUEUES {
        if which & 1 << q == 0 {
            continue;
        }
        select(sock, q)?;
        loop {
            let buf: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
            let (n, trunc) = sys::recv_peek(sock, buf)
                .map_err(|e| classify("recvmsg(MSG_PEEK) of a repair queue", e))?;
            if n == 0 {
                break;
            }
            let want = record_len(&buf[..n]).unwrap_or(0);
            if trunc || want != n {
                // The kernel hands the same record again: make room for it.
                if want <= buf.len() || want > MAX_RECORD {
                    return Err(classify(
                        "reading a repair queue",
                        io::Error::from_raw_os_error(libc::EMSGSIZE),
                    ));
                }
                big.resize(want, 0);
                continue;
            }
            out.push(QueueRecord {
                queue: q as u8,
                data: buf[..n].to_vec(),
            });
        }
    }
    select(sock, uapi::SCTP_REPAIR_QUEUE_NONE)?;
    Ok(out)
}

/// Writes the records back, queue by queue, in the order read.
pub(crate) fn write_all(sock: BorrowedFd<'_>, records: &[QueueRecord]) -> Result<()> {
    write_some(sock, records, |_| true)
}

/// [`write_all`] of the records `which` takes.
pub(crate) fn write_some(
    sock: BorrowedFd<'_>,
    records: &[QueueRecord],
    which: impl Fn(&QueueRecord) -> bool,
) -> Result<()> {
    let mut any = false;
    for q in QUEUES {
        let mut selected = false;
        for (i, r) in records
            .iter()
            .filter(|r| u32::from(r.queue) == q && which(r))
            .enumerate()
        {
            if !selected {
                select(sock, q)?;
                selected = true;
                any = true;
            }
            if let Err(e) = sys::send(sock, &r.data) {
                // Name the record: which queue, which one, its flags and TSN.
                return Err(crate::Error::Rejected {
                    op: "sendmsg of a repair queue record",
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "{e}: queue {q} record {i}: {} bytes, flags {:#x}, tsn {}",
                            r.data.len(),
                            record_flags(&r.data),
                            word(&r.data, 12).unwrap_or(0)
                        ),
                    ),
                });
            }
        }
    }
    if any {
        select(sock, uapi::SCTP_REPAIR_QUEUE_NONE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A received record with `flags`.
    fn rec(flags: u32) -> QueueRecord {
        let mut data = vec![0u8; RECORD_HDR];
        data[8..12].copy_from_slice(&flags.to_ne_bytes());
        QueueRecord {
            queue: uapi::SCTP_REPAIR_QUEUE_RECV as u8,
            data,
        }
    }

    const FIRST: u32 = uapi::SCTP_REPAIR_CHUNK_FIRST;
    const LAST: u32 = uapi::SCTP_REPAIR_CHUNK_LAST;
    const WHOLE: u32 = FIRST | LAST;

    #[test]
    fn whole_messages_go_anywhere() {
        assert_eq!(recv_turn(&[]), RecvTurn::Any);
        let r = [
            rec(WHOLE),
            rec(uapi::SCTP_REPAIR_CHUNK_NOTIFICATION),
            rec(WHOLE),
        ];
        assert_eq!(recv_turn(&r), RecvTurn::Any);
        // Fragments in reassembly are not on the receive queue.
        let r = [rec(WHOLE), rec(uapi::SCTP_REPAIR_CHUNK_REASM | FIRST)];
        assert_eq!(recv_turn(&r), RecvTurn::Any);
        // A message delivered in pieces, all of them here, is closed.
        let r = [rec(WHOLE), rec(FIRST), rec(0), rec(LAST), rec(WHOLE)];
        assert_eq!(recv_turn(&r), RecvTurn::Any);
    }

    #[test]
    fn a_message_begun_comes_first_one_still_open_last() {
        // The user read its first pieces: the rest of it heads the queue.
        assert_eq!(recv_turn(&[rec(0), rec(LAST), rec(WHOLE)]), RecvTurn::First);
        assert_eq!(
            recv_turn(&[rec(uapi::SCTP_REPAIR_CHUNK_PD_OPEN)]),
            RecvTurn::First
        );
        // Its first pieces wait, its end is still to come.
        assert_eq!(recv_turn(&[rec(WHOLE), rec(FIRST), rec(0)]), RecvTurn::Last);
        // What waits in the pd lobby does not count.
        let lobby = rec(WHOLE | uapi::SCTP_REPAIR_CHUNK_PD_LOBBY);
        assert!(lobby.in_pd_lobby());
        assert_eq!(recv_turn(&[rec(FIRST), lobby]), RecvTurn::Last);
    }
}
