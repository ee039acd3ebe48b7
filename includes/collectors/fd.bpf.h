/* SPDX-License-Identifier: GPL-2.0 */
/* fd: file descriptors opened (open, openat, openat2 all go through do_sys_openat2) and
 * closed (the close syscall: the kernel functions behind it changed in 5.11 and 6.8). */

KC_COUNTERS(fd_counters, KC_FD_END);

SEC("kprobe/do_sys_openat2")
int BPF_KPROBE(kc_fd_open)
{
	kc_add(&fd_counters, KC_FD_OPEN, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int kc_fd_close(void *ctx)
{
	kc_add(&fd_counters, KC_FD_CLOSE, 1);
	return 0;
}

#if KC_RETURN_MODE
SEC("kretprobe/do_sys_openat2")
int BPF_KRETPROBE(kc_fd_open_ret, long ret)
{
	if (ret < 0)
		kc_add(&fd_counters, KC_FD_OPEN_ERROR, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_close")
int kc_fd_close_ret(struct trace_event_raw_sys_exit *ctx)
{
	if (KC_READ(ctx, ret) < 0)
		kc_add(&fd_counters, KC_FD_CLOSE_ERROR, 1);
	return 0;
}
#endif
