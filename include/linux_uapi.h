/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The system's uapi headers (linux-libc-dev), for the plain SCTP socket
 * option numbers and the few other kernel constants sctp-repair uses that
 * libc does not export: bindgen reads them here instead of the crate
 * copying the numbers. build.rs keeps only the names it allowlists.
 */
#ifndef EPCMIG_LINUX_UAPI_H
#define EPCMIG_LINUX_UAPI_H

/* linux/sctp.h uses the <stdint.h> types and glibc's sockaddr_storage. */
#include <stdint.h>
#include <sys/socket.h>
#include <linux/sctp.h>
#include <linux/sockios.h>
#include <linux/if_addr.h>
#include <linux/sock_diag.h>

#endif
