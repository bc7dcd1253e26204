/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * SCTP repair mode: user-space view of what kernel-patches/ adds to
 * include/uapi/linux/sctp.h. Kept byte-identical in meaning to the kernel
 * patch; a host test compares the two so they cannot drift.
 */
#ifndef EPCMIG_SCTP_REPAIR_H
#define EPCMIG_SCTP_REPAIR_H

/* Socket option (level SOL_SCTP): int, one of SCTP_REPAIR_* below. */
#define SCTP_REPAIR		134

#define SCTP_REPAIR_OFF		0	/* leave repair mode, resume the association */
#define SCTP_REPAIR_ON		1	/* freeze: send nothing, drop input silently */

#endif /* EPCMIG_SCTP_REPAIR_H */
