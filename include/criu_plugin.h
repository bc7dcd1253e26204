/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CRIU plugin ABI as epcmig uses it.
 *
 * CRIU dlopen()s every .so in its plugin directory (--libdir/-L, default
 * /usr/lib/criu) and looks up one symbol, CR_PLUGIN_DESC, of the type
 * below. Hooks are called through the hooks[] table; CRIU only reads the
 * first max_hooks entries and refuses descriptors whose version or
 * max_hooks exceed what it knows, so a plugin built against these numbers
 * loads in CRIU 4.1.1 (hooks 0..11) and any later release.
 *
 * Written from CRIU's documented behaviour; numbers must match CRIU's
 * criu/include/criu-plugin.h, which is what a test checks.
 */
#ifndef EPCMIG_CRIU_PLUGIN_H
#define EPCMIG_CRIU_PLUGIN_H

/* Descriptor layout version understood by CRIU 4.x: 0.2.0, as major << 16 |
 * minor << 8 | sublevel.
 */
#define CRIU_PLUGIN_VERSION 0x000200

enum cr_plugin_hook {
	CR_PLUGIN_HOOK__DUMP_UNIX_SK = 0,
	CR_PLUGIN_HOOK__RESTORE_UNIX_SK = 1,
	CR_PLUGIN_HOOK__DUMP_EXT_FILE = 2,	/* int (int fd, int id) */
	CR_PLUGIN_HOOK__RESTORE_EXT_FILE = 3,	/* int (int id): returns the fd */
	CR_PLUGIN_HOOK__DUMP_EXT_MOUNT = 4,
	CR_PLUGIN_HOOK__RESTORE_EXT_MOUNT = 5,
	CR_PLUGIN_HOOK__DUMP_EXT_LINK = 6,	/* int (int ifindex, int type, char *kind) */
	CR_PLUGIN_HOOK__HANDLE_DEVICE_VMA = 7,
	CR_PLUGIN_HOOK__UPDATE_VMA_MAP = 8,
	CR_PLUGIN_HOOK__RESUME_DEVICES_LATE = 9,	/* int (int pid) */
	CR_PLUGIN_HOOK__PAUSE_DEVICES = 10,
	CR_PLUGIN_HOOK__CHECKPOINT_DEVICES = 11,
	/* Hooks known to CRIU 4.1.1; upstream later added 12..14. */
	CR_PLUGIN_HOOK__MAX_4_1 = 12,
};

enum cr_plugin_stage {
	CR_PLUGIN_STAGE__DUMP = 0,
	CR_PLUGIN_STAGE__PRE_DUMP = 1,
	CR_PLUGIN_STAGE__RESTORE = 2,
};

typedef struct {
	const char *name;
	int (*init)(int stage);
	void (*exit)(int stage, int ret);
	unsigned int version;
	unsigned int max_hooks;
	void *hooks[CR_PLUGIN_HOOK__MAX_4_1];
} cr_plugin_desc_t;

/* Exported by the criu binary for plugins: an fd of the image directory. */
extern int criu_get_image_dir(void);

#endif /* EPCMIG_CRIU_PLUGIN_H */
