/* SPDX-License-Identifier: GPL-2.0 */
/* sync: the syscalls that flush data to storage; return mode counts their errors. */

KC_COUNTERS(sync_counters, KC_SYNC_END);

#if KC_RETURN_MODE
#define KC_SYNC_EXIT(call)                                         \
	SEC("tracepoint/syscalls/sys_exit_" #call)                 \
	int kc_sync_##call##_ret(struct trace_event_raw_sys_exit *ctx) \
	{                                                          \
		if (KC_READ(ctx, ret) < 0)                         \
			kc_add(&sync_counters, KC_SYNC_ERROR, 1);  \
		return 0;                                          \
	}
#else
#define KC_SYNC_EXIT(call)
#endif

#define KC_SYNC(call, counter)                      \
	SEC("tracepoint/syscalls/sys_enter_" #call) \
	int kc_sync_##call(void *ctx)               \
	{                                           \
		kc_add(&sync_counters, counter, 1); \
		return 0;                           \
	}                                           \
	KC_SYNC_EXIT(call)

KC_SYNC(sync, KC_SYNC_SYNC)
KC_SYNC(fsync, KC_SYNC_FSYNC)
KC_SYNC(fdatasync, KC_SYNC_FDATASYNC)
KC_SYNC(syncfs, KC_SYNC_SYNCFS)
KC_SYNC(msync, KC_SYNC_MSYNC)
KC_SYNC(sync_file_range, KC_SYNC_SYNC_FILE_RANGE)
