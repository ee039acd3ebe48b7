// SPDX-License-Identifier: GPL-2.0
/* A test build of the vfs collector for `cargo xtask test kernel-accounting`: the collector as
 * shipped, plus two more tracepoint-family programs on its read event (a role of kc_vfs_read,
 * so they attach whenever that family is chosen for the event) that count every read(2) and
 * pread64(2) a second time. The kernel's own syscr disagrees with it: the judge must fail. Never shipped. */
#include "kc_core.h"
#include "collectors/vfs.bpf.h"

SEC("tracepoint/syscalls/sys_enter_read")
int kc_vfs_read__tracepoint_doubled(void *ctx)
{
	kc_vfs_count(KC_VFS_READ, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_pread64")
int kc_vfs_read__tracepoint_doubled_pread(void *ctx)
{
	kc_vfs_count(KC_VFS_READ, 1);
	return 0;
}
