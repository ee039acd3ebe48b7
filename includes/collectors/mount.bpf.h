/* SPDX-License-Identifier: GPL-2.0 */
/* mount: mount and umount calls; return mode counts their errors. */

KC_COUNTERS(mount_counters, KC_MOUNT_END);

SEC("tracepoint/syscalls/sys_enter_mount")
int kc_mount_mount(void *ctx)
{
	kc_add(&mount_counters, KC_MOUNT_MOUNT, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_umount")
int kc_mount_umount(void *ctx)
{
	kc_add(&mount_counters, KC_MOUNT_UMOUNT, 1);
	return 0;
}

#if KC_RETURN_MODE
SEC("tracepoint/syscalls/sys_exit_mount")
int kc_mount_mount_ret(struct trace_event_raw_sys_exit *ctx)
{
	if (KC_READ(ctx, ret) < 0)
		kc_add(&mount_counters, KC_MOUNT_MOUNT_ERROR, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_umount")
int kc_mount_umount_ret(struct trace_event_raw_sys_exit *ctx)
{
	if (KC_READ(ctx, ret) < 0)
		kc_add(&mount_counters, KC_MOUNT_UMOUNT_ERROR, 1);
	return 0;
}
#endif
