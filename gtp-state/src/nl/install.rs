//! Installing and reading PDP contexts: a generic-netlink socket with the
//! `gtp` family resolved, and the install strategies (bulk, batched, one
//! by one).

use std::sync::mpsc;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, OpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;

use super::encode::*;
use super::family::*;
use super::*;
use crate::model::Pdp;
use crate::Error;

/// PDP contexts per send() when installing them: per GTP_CMD_NEWPDPS
/// request, or GTP_CMD_NEWPDP requests per datagram. Only failed requests
/// and the last one of a batch are answered, so the receive buffer does
/// not limit it; past a few hundred contexts the syscalls saved no longer
/// matter (measured in the guest).
pub const DEFAULT_BATCH: usize = 1024;
/// The largest batch: a datagram must fit the socket's send buffer
/// (netlink refuses a longer one with EMSGSIZE); 2048 of the longest
/// requests fit the default (2 x net.core.wmem_max, 416 KiB).
pub(super) const MAX_BATCH: usize = 2048;
/// The PDP attributes of one context are at most this long (v0, IPv6
/// peer and MS).
pub(super) const PDP_ATTRS_MAX_LEN: usize = 8 + 12 + 8 + 20 + 8 + 20;
/// A GTP_CMD_NEWPDP request is at most this long.
pub(super) const NEWPDP_MAX_LEN: usize = 16 + 4 + 8 + PDP_ATTRS_MAX_LEN;

/// How PDP contexts are handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// GTP_CMD_NEWPDPS requests of up to this many contexts each, where
    /// the kernel has the command (kernel-patches/gtp/0005); otherwise as
    /// [`Install::Batched`].
    Bulk(usize),
    /// This many GTP_CMD_NEWPDP requests per send(), only the last acked:
    /// what a stock kernel allows.
    Batched(usize),
    /// One GTP_CMD_NEWPDP request and its ack at a time: what per-tunnel
    /// tools (libgtpnl's gtp-tunnel) do. The benchmarks' baseline.
    OneByOne,
}

impl Default for Install {
    fn default() -> Self {
        Install::Bulk(DEFAULT_BATCH)
    }
}
pub(super) const NEWPDP_FLAGS: u16 =
    netlink_packet_core::NLM_F_EXCL | netlink_packet_core::NLM_F_CREATE;

/// A generic-netlink socket with the `gtp` family resolved.
pub(crate) struct GtpNl {
    pub nl: Nl,
    pub family: u16,
    /// The kernel has GTP_CMD_NEWPDPS (it lists it among the family's
    /// operations).
    pub bulk: bool,
}

impl GtpNl {
    pub fn open() -> Result<GtpNl, Error> {
        let mut nl = Nl::generic()?;
        let req = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("gtp".into())],
        });
        let replies = match nl.request(req, 0, "resolving the gtp genetlink family") {
            Ok(r) => r,
            Err(Error::Netlink { errno, .. }) if errno == libc::ENOENT => {
                return Err(Error::NoGtpSupport)
            }
            Err(e) => return Err(e),
        };
        let mut family = None;
        let mut bulk = false;
        for r in replies {
            for a in r.payload.nlas {
                match a {
                    GenlCtrlAttrs::FamilyId(id) => family = Some(id),
                    GenlCtrlAttrs::Ops(ops) => {
                        bulk |= ops.iter().flatten().any(
                            |o| matches!(o, OpAttrs::Id(id) if *id == u32::from(GTP_CMD_NEWPDPS)),
                        )
                    }
                    _ => {}
                }
            }
        }
        match family {
            Some(family) => Ok(GtpNl { nl, family, bulk }),
            None => Err(Error::NoGtpSupport),
        }
    }

    fn msg(&self, cmd: u8, attrs: Vec<GtpAttr>) -> GenlMessage<GtpMsg> {
        let mut m = GenlMessage::from_payload(GtpMsg { cmd, attrs });
        m.set_resolved_family_id(self.family);
        m
    }

    /// Every PDP context of device `ifindex` (GTP_CMD_GETPDP dump; the
    /// kernel dumps every gtp device of the netns, we keep ours).
    pub fn dump_pdps(&mut self, ifindex: u32) -> Result<Vec<Pdp>, Error> {
        let req = self.msg(GTP_CMD_GETPDP, vec![]);
        let replies = self.nl.request(req, NLM_F_DUMP, "dumping PDP contexts")?;
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            let (link, pdp) = pdp_from_attrs(&r.payload.attrs)?;
            if link == ifindex {
                out.push(pdp);
            }
        }
        Ok(out)
    }

    /// Installs `pdps` on `ifindex` as `how` says. An existing context is
    /// never updated in place (NLM_F_EXCL; GTP_CMD_NEWPDPS always adds).
    /// The first context refused is named in the error; the ones before it
    /// stay (the caller removes the device on error).
    pub fn add_pdps(&mut self, ifindex: u32, pdps: &[Pdp], how: Install) -> Result<(), Error> {
        match how {
            Install::Bulk(n) if self.bulk => self.add_pdps_bulk(ifindex, pdps, n),
            Install::Bulk(n) | Install::Batched(n) => self.add_pdps_batched(ifindex, pdps, n),
            Install::OneByOne => self.add_pdps_batched(ifindex, pdps, 1),
        }
    }

    /// `batch` GTP_CMD_NEWPDP requests per send(). Only the last request
    /// of a batch asks for an ack: the kernel reports every failed request
    /// anyway, with its sequence number, so the first context refused is
    /// still named exactly. Requests after a refused one in the same batch
    /// are still carried out by the kernel.
    fn add_pdps_batched(&mut self, ifindex: u32, pdps: &[Pdp], batch: usize) -> Result<(), Error> {
        let batch = batch.clamp(1, MAX_BATCH);
        let mut buf = Vec::with_capacity(batch * NEWPDP_MAX_LEN);
        for chunk in pdps.chunks(batch) {
            buf.clear();
            let first = self.nl.reserve_seqs(chunk.len());
            for (i, p) in chunk.iter().enumerate() {
                let seq = first.wrapping_add(i as u32);
                let ack = if i + 1 == chunk.len() { NLM_F_ACK } else { 0 };
                put_newpdp(&mut buf, self.family, ack | NEWPDP_FLAGS, seq, ifindex, p);
            }
            if let Some((idx, errno)) =
                self.nl
                    .send_batch(&buf, first, chunk.len(), "adding PDP contexts")?
            {
                return Err(pdp_error(chunk.get(idx), errno));
            }
        }
        Ok(())
    }

    /// One GTP_CMD_NEWPDPS request of up to `batch` contexts per send().
    /// The kernel stops a request at the first context it refuses and
    /// points at its nest in the extended ack.
    ///
    /// The kernel adds a request's contexts within our send(), so with
    /// more than one request the next is encoded on a second thread
    /// meanwhile, on another CPU where there is one.
    fn add_pdps_bulk<'p>(
        &mut self,
        ifindex: u32,
        pdps: &'p [Pdp],
        batch: usize,
    ) -> Result<(), Error> {
        let batch = batch.clamp(1, MAX_BATCH);
        let requests = pdps.len().div_ceil(batch);
        let first = self.nl.reserve_seqs(requests);
        let family = self.family;
        let encode = move |i: usize, chunk: &'p [Pdp], mut req: Request<'p>| {
            req.buf.clear();
            // No NLM_F_EXCL: genetlink refuses it on new commands, and
            // GTP_CMD_NEWPDPS never updates a context in place anyway.
            let seq = first.wrapping_add(i as u32);
            put_newpdps(
                &mut req.buf,
                family,
                NLM_F_ACK,
                seq,
                ifindex,
                chunk,
                &mut req.nests,
            );
            req.seq = seq;
            req.chunk = chunk;
            req
        };
        if requests <= 1 {
            let mut req = Request::with_capacity(batch);
            for (i, chunk) in pdps.chunks(batch).enumerate() {
                req = encode(i, chunk, req);
                self.send_newpdps(&req)?;
            }
            return Ok(());
        }
        // Two requests in flight at most: one being sent, one encoded.
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Request>(1);
        let (spare_tx, spare_rx) = mpsc::channel::<Request>();
        std::thread::scope(|s| {
            s.spawn(move || {
                for (i, chunk) in pdps.chunks(batch).enumerate() {
                    let req = spare_rx
                        .try_recv()
                        .unwrap_or_else(|_| Request::with_capacity(batch));
                    // The sender stopped (an error): stop too.
                    if ready_tx.send(encode(i, chunk, req)).is_err() {
                        return;
                    }
                }
            });
            // Dropping `ready_rx` on an error ends the encoder.
            for req in ready_rx {
                self.send_newpdps(&req)?;
                // The encoder may have finished: then nobody reuses it.
                let _ = spare_tx.send(req);
            }
            Ok(())
        })
    }

    /// Sends one encoded GTP_CMD_NEWPDPS request and reads its ack.
    fn send_newpdps(&mut self, req: &Request) -> Result<(), Error> {
        const OP: &str = "adding PDP contexts";
        self.nl.send(&req.buf, OP)?;
        let ack = self.nl.ack(req.seq, OP)?;
        if ack.errno != 0 {
            // Without an offset (a kernel that does not report one) the
            // context is not known: name none.
            let idx = ack
                .offset
                .and_then(|o| req.nests.binary_search(&(o as usize)).ok());
            return Err(pdp_error(idx.and_then(|i| req.chunk.get(i)), ack.errno));
        }
        Ok(())
    }
}

/// An encoded GTP_CMD_NEWPDPS request for the contexts of `chunk`.
pub(super) struct Request<'p> {
    buf: Vec<u8>,
    /// Offset of each context's nest in `buf`.
    nests: Vec<usize>,
    seq: u32,
    chunk: &'p [Pdp],
}

impl Request<'_> {
    fn with_capacity(batch: usize) -> Self {
        Request {
            buf: Vec::with_capacity(20 + batch * (4 + PDP_ATTRS_MAX_LEN)),
            nests: Vec::with_capacity(batch),
            seq: 0,
            chunk: &[],
        }
    }
}

/// The error for a context the kernel refused with `errno`.
pub(super) fn pdp_error(pdp: Option<&Pdp>, errno: i32) -> Error {
    let pdp = pdp.map(|p| p.to_string()).unwrap_or_default();
    match errno {
        libc::EPERM => Error::PermissionDenied("adding PDP contexts"),
        libc::EEXIST => Error::PdpConflict(format!("{pdp} exists")),
        _ => Error::PdpRejected {
            pdp,
            source: std::io::Error::from_raw_os_error(errno),
        },
    }
}
