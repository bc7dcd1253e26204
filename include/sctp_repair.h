/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * SCTP repair mode: user-space view of what kernel-patches/ adds to
 * include/uapi/linux/sctp.h. Kept byte-identical in meaning to the kernel
 * patch; a host test compares the two so they cannot drift.
 */
#ifndef EPCMIG_SCTP_REPAIR_H
#define EPCMIG_SCTP_REPAIR_H

#include <linux/types.h>
#include <sys/socket.h>

/* Socket option (level SOL_SCTP): int, one of SCTP_REPAIR_* below.  One-to-one
 * and one-to-many style sockets, and peeled off associations (restored on a
 * one-to-many socket under their id and peeled off again).
 */
#define SCTP_REPAIR		134

#define SCTP_REPAIR_OFF		0	/* leave repair mode, resume the association */
#define SCTP_REPAIR_ON		1	/* freeze: send nothing, drop input silently */

/* Repair mode: the state of the association of a frozen one-to-one style
 * socket, read with getsockopt() and written with setsockopt() to create the
 * association again on a fresh socket in repair mode.  Each option carries a
 * structure below, starting with its version, SCTP_REPAIR_V1.
 */
#define SCTP_REPAIR_ASSOC	135	/* struct sctp_repair_assoc */
#define SCTP_REPAIR_PATHS	136	/* struct sctp_repair_paths */
#define SCTP_REPAIR_STREAMS	137	/* struct sctp_repair_streams */
#define SCTP_REPAIR_TSN_MAP	138	/* struct sctp_repair_tsn_map */

#define SCTP_REPAIR_V1	1

/* sctp_repair_assoc sra_features: what was negotiated with the peer */
#define SCTP_REPAIR_FEAT_ECN	1	/* ECN */
#define SCTP_REPAIR_FEAT_PRSCTP	2	/* PR-SCTP (FORWARD-TSN) */
#define SCTP_REPAIR_FEAT_ASCONF	4	/* ADD-IP (ASCONF) */
#define SCTP_REPAIR_FEAT_RECONF	8	/* stream reconfiguration */
#define SCTP_REPAIR_FEAT_INTL	16	/* I-DATA (user message interleaving) */
#define SCTP_REPAIR_FEAT_AUTH	32	/* SCTP-AUTH, see SCTP_REPAIR_AUTH */
#define SCTP_REPAIR_FEAT_IPV4	64	/* the peer takes IPv4 addresses */
#define SCTP_REPAIR_FEAT_IPV6	128	/* the peer takes IPv6 addresses */
#define SCTP_REPAIR_FEAT_NEED_ECNE	256	/* an ECNE is to be sent */
#define SCTP_REPAIR_FEAT_SACK_DUE	512	/* a SACK is owed to the peer */

/* sctp_repair_path srp_flags */
#define SCTP_REPAIR_PATH_PRIMARY	1	/* the primary path */

/* Most duplicate TSNs an association keeps for its next SACK */
#define SCTP_REPAIR_MAX_DUP_TSNS	16

/* Repair mode: the data queues of the association of a frozen one-to-one
 * style socket.  SCTP_REPAIR_QUEUE (an int) selects one.  Then each
 * recvmsg(MSG_PEEK) returns its next record, a struct sctp_repair_chunk
 * followed by the payload, and 0 at the end; a buffer too short for the
 * record gets MSG_TRUNC and the same record again next time.  On an
 * association created by SCTP_REPAIR_ASSOC, sendmsg() of such a record adds
 * it to the queue, and nothing is sent or delivered before the socket
 * leaves repair mode.
 */
#define SCTP_REPAIR_QUEUE	139

/* SCTP_REPAIR_QUEUE values */
#define SCTP_REPAIR_QUEUE_NONE		0
#define SCTP_REPAIR_QUEUE_SEND_UNSENT	1	/* DATA not sent yet */
#define SCTP_REPAIR_QUEUE_SEND_INFLIGHT	2	/* DATA sent, not acked */
#define SCTP_REPAIR_QUEUE_RECV		3	/* not read by the user yet */

/* sctp_repair_chunk src_flags */
#define SCTP_REPAIR_CHUNK_UNORDERED	1	/* U bit */
#define SCTP_REPAIR_CHUNK_FIRST		2	/* B bit: first fragment */
#define SCTP_REPAIR_CHUNK_LAST		4	/* E bit: last fragment */
#define SCTP_REPAIR_CHUNK_SACK_IMM	8	/* I bit */
#define SCTP_REPAIR_CHUNK_HAS_MID	16	/* src_mid (and src_fsn) are set */
#define SCTP_REPAIR_CHUNK_GAP_ACKED	32	/* in flight, in a gap ack block */
#define SCTP_REPAIR_CHUNK_RETRANSMIT	64	/* in flight, to be retransmitted */
#define SCTP_REPAIR_CHUNK_NOTIFICATION	128	/* received: a notification */
#define SCTP_REPAIR_CHUNK_ORDER		256	/* received: waits for its turn */
#define SCTP_REPAIR_CHUNK_REASM		512	/* received: waits for fragments */
#define SCTP_REPAIR_CHUNK_PD_OPEN	1024	/* received: see below */
#define SCTP_REPAIR_CHUNK_PD_LOBBY	2048	/* received: see below */

/* Repair mode: SCTP-AUTH (RFC 4895) of an association that uses it
 * (SCTP_REPAIR_FEAT_AUTH): the parameters its key is computed from, and its
 * shared keys.  Written once on an association created by SCTP_REPAIR_ASSOC,
 * before its queues; until then the association does not use SCTP-AUTH.
 */
#define SCTP_REPAIR_AUTH	140	/* struct sctp_repair_auth */

/* Repair mode, read only: what the socket options named in struct
 * sctp_repair_sock report for a frozen one-to-one style socket and its
 * association, in one call.  A checkpoint reads thousands of associations;
 * this spares it a dozen calls for each.
 */
#define SCTP_REPAIR_SOCK	141	/* struct sctp_repair_sock */

/* Repair mode of a one-to-many style socket: the association, by its id,
 * that the other SCTP_REPAIR_* options and SCTP_REPAIR_QUEUE records apply
 * to (a sctp_assoc_t, 0 for none).  It need not exist: SCTP_REPAIR_ASSOC
 * creates the association with this id, as the application knew it.
 * Selecting an association starts reading its queues over.  On a listening
 * one-to-one style socket, it selects an association waiting for accept(),
 * and SCTP_REPAIR_ASSOC puts one there.
 */
#define SCTP_REPAIR_ASSOC_ID	142

/* Repair mode, read only: the ids of the associations of a socket in repair
 * mode, as struct sctp_assoc_ids; for a listening one-to-one style socket,
 * those waiting for accept(), in the order accept() returns them.
 */
#define SCTP_REPAIR_ASSOC_IDS	143

/* sctp_repair_auth srau_param_len[]: the parameters, in this order */
#define SCTP_REPAIR_AUTH_RANDOM		0	/* our RANDOM */
#define SCTP_REPAIR_AUTH_CHUNKS		1	/* our CHUNKS */
#define SCTP_REPAIR_AUTH_HMACS		2	/* our HMAC-ALGO */
#define SCTP_REPAIR_AUTH_PEER_RANDOM	3	/* the peer's RANDOM */
#define SCTP_REPAIR_AUTH_PEER_CHUNKS	4	/* the peer's CHUNKS */
#define SCTP_REPAIR_AUTH_PEER_HMACS	5	/* the peer's HMAC-ALGO */
#define SCTP_REPAIR_AUTH_PARAMS		6

/* sctp_repair_auth_key srak_flags */
#define SCTP_REPAIR_AUTH_KEY_DEACTIVATED	1	/* not to send with */

/* SCTP_REPAIR_ASSOC: the association of a one-to-one style socket in repair
 * mode.  All fields are in host byte order, times are in milliseconds.
 */
struct sctp_repair_assoc {
	__u32	sra_version;		/* SCTP_REPAIR_V1 */
	__u32	sra_features;		/* SCTP_REPAIR_FEAT_* */
	struct sockaddr_storage sra_primary_addr; /* the primary peer address */
	__u16	sra_local_port;
	__u16	sra_peer_port;
	__u16	sra_outcnt;		/* outbound streams */
	__u16	sra_incnt;		/* inbound streams */
	__u32	sra_npaths;		/* peer addresses, read only */
	/* Verification tags, and tie tags of a restarted association */
	__u32	sra_my_vtag;
	__u32	sra_peer_vtag;
	__u32	sra_my_ttag;
	__u32	sra_peer_ttag;
	/* Our TSNs */
	__u32	sra_initial_tsn;
	__u32	sra_next_tsn;		/* TSN of the next new DATA chunk */
	__u32	sra_ctsn_ack_point;	/* cumulative TSN acked by the peer */
	__u32	sra_adv_peer_ack_point;	/* PR-SCTP advanced ack point */
	__u32	sra_highest_sacked;
	__u32	sra_last_cwr_tsn;
	/* The peer's TSNs */
	__u32	sra_peer_initial_tsn;
	__u32	sra_peer_ctsn;		/* last TSN received in sequence */
	__u32	sra_last_ecne_tsn;
	/* Receive windows: ours now, ours last advertised, the peer's; what
	 * we received beyond ours, and what buffer pressure withholds of it
	 */
	__u32	sra_rwnd;
	__u32	sra_a_rwnd;
	__u32	sra_peer_rwnd;
	__u32	sra_rwnd_over;
	__u32	sra_rwnd_press;
	/* ADD-IP serial numbers: our next one, the peer's last one */
	__u32	sra_addip_serial;
	__u32	sra_peer_addip_serial;
	/* Stream reconfiguration */
	__u32	sra_strreset_outseq;
	__u32	sra_strreset_inseq;
	__u32	sra_strreset_result[2];
	__u8	sra_strreset_enable;	/* SCTP_ENABLE_*_REQ */
	__u8	sra_dscp;
	__u16	sra_addip_disabled_mask; /* ASCONF parameters the peer refused */
	__u32	sra_peer_adaptation_ind;
	__u32	sra_overall_error_count;
	/* Association parameters */
	__u32	sra_max_retrans;
	__u32	sra_rto_initial;
	__u32	sra_rto_min;
	__u32	sra_rto_max;
	__u32	sra_hbinterval;
	__u32	sra_probe_interval;	/* PLPMTUD, 0 when disabled */
	__u32	sra_sackdelay;
	__u32	sra_sackfreq;
	__u32	sra_param_flags;	/* SPP_* */
	__u32	sra_pathmtu;
	__u32	sra_flowlabel;
	__u32	sra_max_burst;
	__u16	sra_pathmaxrxt;
	__u16	sra_pf_retrans;
	__u16	sra_ps_retrans;
	__u16	sra_encap_port;		/* remote UDP encapsulation port */
};

/* SCTP_REPAIR_PATHS: the peer addresses of the association */
struct sctp_repair_path {
	struct sockaddr_storage srp_addr;
	__u32	srp_state;		/* SCTP_ACTIVE, SCTP_PF, ... */
	__u32	srp_flags;		/* SCTP_REPAIR_PATH_* */
	__u32	srp_pathmtu;
	__u32	srp_rto;
	__u32	srp_srtt;
	__u32	srp_rttvar;
	__u32	srp_cwnd;
	__u32	srp_ssthresh;
	__u32	srp_partial_bytes_acked;
	__u32	srp_error_count;
	__u32	srp_hbinterval;
	__u32	srp_sackdelay;
	__u32	srp_sackfreq;
	__u32	srp_param_flags;
	__u32	srp_flowlabel;
	__u16	srp_pathmaxrxt;
	__u16	srp_pf_retrans;
	__u16	srp_ps_retrans;
	__u16	srp_encap_port;
	__u8	srp_dscp;
	__u8	srp_pl_state;		/* PLPMTUD state, read only */
	__u16	srp_pl_pmtu;		/* PLPMTUD size, read only */
};

struct sctp_repair_paths {
	__u32	srp_version;		/* SCTP_REPAIR_V1 */
	__u32	srp_count;
	struct sctp_repair_path srp_paths[];
};

/* SCTP_REPAIR_STREAMS: the sequence numbers of the streams.  Without I-DATA
 * a "MID" is a 16-bit SSN and the unordered MIDs are 0.
 */
struct sctp_repair_stream {
	__u32	srs_out_mid;		/* next ordered SSN/MID to send */
	__u32	srs_out_mid_uo;		/* next unordered MID to send */
	__u32	srs_in_mid;		/* next ordered SSN/MID expected */
	__u32	srs_in_mid_uo;		/* next unordered MID expected */
	__u8	srs_out_state;		/* 1: open, 0: closed by a reset */
	__u8	srs_reserved[3];
};

struct sctp_repair_streams {
	__u32	srst_version;		/* SCTP_REPAIR_V1 */
	__u16	srst_outcnt;
	__u16	srst_incnt;
	/* max(srst_outcnt, srst_incnt) entries, by stream id */
	struct sctp_repair_stream srst_streams[];
};

/* SCTP_REPAIR_TSN_MAP: the TSNs received from the peer.  Gap ack blocks are
 * offsets from the cumulative TSN, as in a SACK.
 */
struct sctp_repair_gap {
	__u16	srg_start;
	__u16	srg_end;
};

struct sctp_repair_tsn_map {
	__u32	srtm_version;		/* SCTP_REPAIR_V1 */
	__u32	srtm_cum_tsn;
	__u32	srtm_max_tsn_seen;
	__u16	srtm_num_dups;
	__u16	srtm_num_gaps;
	__u32	srtm_dup_tsns[SCTP_REPAIR_MAX_DUP_TSNS];
	struct sctp_repair_gap srtm_gaps[];
};

/* SCTP_REPAIR_QUEUE: a record of a queue, followed by its payload.
 *
 * SEND_UNSENT: a whole message (FIRST and LAST, no HAS_MID), or the rest of
 *   a message partly sent, one fragment per record with its SSN or MID.
 * SEND_INFLIGHT: a DATA chunk with its TSN, SSN or MID, FSN and flags.
 * RECV: a message ready to be read or a NOTIFICATION, in the order the user
 *   would read them (a message delivered partially is in pieces, the first
 *   with FIRST, the last with LAST), then the messages waiting for an
 *   earlier one (ORDER) and the fragments waiting for the others (REASM),
 *   with their TSNs.
 *   If the user has read every piece delivered so far of a message in
 *   partial delivery, a record of PD_OPEN alone and no payload comes
 *   first: the fragments that follow, in reassembly or still to come,
 *   continue that message.
 *   While a message is delivered partially, what is whole (a message, a
 *   notification) of its association and, on a one-to-many style socket or
 *   a listener, what the other associations received since, waits in the
 *   socket's pd lobby until the message is read to its end: such records
 *   carry PD_LOBBY.  They are written back once the message is open again:
 *   on a shared receive queue, first the records of the other associations
 *   without PD_LOBBY, then those of the association delivering partially,
 *   then the records with PD_LOBBY.
 */
struct sctp_repair_chunk {
	__u32	src_version;		/* SCTP_REPAIR_V1 */
	__u32	src_len;		/* this header and the payload */
	__u32	src_flags;		/* SCTP_REPAIR_CHUNK_* */
	__u32	src_tsn;
	__u32	src_mid;		/* SSN, or MID with I-DATA */
	__u32	src_fsn;		/* FSN with I-DATA */
	__u32	src_ppid;		/* as sinfo_ppid */
	__u32	src_context;		/* sent data: sinfo_context */
	__u32	src_timetolive;		/* sent data: sinfo_timetolive */
	__u16	src_sid;
	__u16	src_pr_policy;		/* sent data: SCTP_PR_SCTP_* */
};

/* SCTP_REPAIR_AUTH: srau_data holds the SCTP_REPAIR_AUTH_PARAMS parameters,
 * each as it is in an INIT or INIT ACK chunk (network byte order, as long as
 * its header says) and padded to 4 bytes, 0 bytes for one that is absent
 * (only a CHUNKS parameter can be); then srau_nkeys shared keys, the active
 * one among them.
 */
struct sctp_repair_auth_key {
	__u16	srak_id;
	__u16	srak_flags;		/* SCTP_REPAIR_AUTH_KEY_* */
	__u32	srak_len;		/* bytes of the secret */
	__u8	srak_secret[];		/* padded to 4 bytes */
};

struct sctp_repair_auth {
	__u32	srau_version;		/* SCTP_REPAIR_V1 */
	__u16	srau_active_key_id;
	__u16	srau_nkeys;
	__u16	srau_param_len[SCTP_REPAIR_AUTH_PARAMS];
	__u32	srau_reserved;		/* 0 */
	__u8	srau_data[];
};

/* SCTP_REPAIR_SOCK: each field is what the option named reports, except
 * srso_maxseg: the fragmentation limit the user set with SCTP_MAXSEG (0 if
 * none), where SCTP_MAXSEG reports the fragmentation point in use, and
 * srso_queues: which queues SCTP_REPAIR_QUEUE would read records from (a
 * queue whose bit is clear reads none).
 */
struct sctp_repair_sock {
	__u32	srso_version;		/* SCTP_REPAIR_V1 */
	__u32	srso_sndbuf;		/* SO_SNDBUF */
	__u32	srso_rcvbuf;		/* SO_RCVBUF */
	__u16	srso_subscribe;		/* SCTP_EVENTS: the events enabled,
					 * bit (type - SCTP_SN_TYPE_BASE)
					 */
	__u8	srso_nodelay;		/* SCTP_NODELAY */
	__u8	srso_disable_fragments;	/* SCTP_DISABLE_FRAGMENTS */
	__u8	srso_frag_interleave;	/* SCTP_FRAGMENT_INTERLEAVE */
	__u8	srso_recvrcvinfo;	/* SCTP_RECVRCVINFO */
	__u8	srso_recvnxtinfo;	/* SCTP_RECVNXTINFO */
	__u8	srso_queues;		/* the repair queues with records to
					 * read: bit SCTP_REPAIR_QUEUE_*
					 */
	__u32	srso_pd_point;		/* SCTP_PARTIAL_DELIVERY_POINT */
	__u32	srso_maxseg;		/* see above */
	__u32	srso_rcv_context;	/* SCTP_CONTEXT */
	/* SCTP_DEFAULT_SNDINFO */
	__u16	srso_snd_sid;
	__u16	srso_snd_flags;
	__u32	srso_snd_ppid;
	__u32	srso_snd_context;
};

#endif /* EPCMIG_SCTP_REPAIR_H */
