/* SPDX-License-Identifier: GPL-2.0 */
/* sync: the syscalls that flush data to storage; return mode counts their errors. Each is an
 * event in every family: its syscall wrapper (trampoline, probe) and its tracepoints. */

KC_COLLECTOR(sync, sync)

#define KC_SYNC(call, counter) \
	KC_SYSCALL(kc_sync_##call, call, kc_sync_count(counter, 1), kc_sync_error(ret, KC_SYNC_ERROR))

KC_SYNC(sync, KC_SYNC_SYNC)
KC_SYNC(fsync, KC_SYNC_FSYNC)
KC_SYNC(fdatasync, KC_SYNC_FDATASYNC)
KC_SYNC(syncfs, KC_SYNC_SYNCFS)
KC_SYNC(msync, KC_SYNC_MSYNC)
KC_SYNC(sync_file_range, KC_SYNC_SYNC_FILE_RANGE)
