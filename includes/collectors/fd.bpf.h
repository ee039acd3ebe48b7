/* SPDX-License-Identifier: GPL-2.0 */
/* fd: file descriptors opened (open, openat, openat2 all go through do_sys_openat2) and
 * closed. Families: do_sys_openat2 (trampoline, probe) or the open syscalls' tracepoints;
 * close is the close syscall itself in every family (the kernel functions behind it changed
 * in 5.11 and 6.8). */

KC_COLLECTOR(fd, fd)

#define KC_FD_OPEN_TP(call) \
	KC_SYSCALL_TP(kc_fd_open, call, kc_fd_count(KC_FD_OPEN, 1), kc_fd_error(ret, KC_FD_OPEN_ERROR))

KC_FUNC_ENTRY(kc_fd_open, do_sys_openat2, kc_fd_count(KC_FD_OPEN, 1))
KC_FUNC_RETURN(kc_fd_open, do_sys_openat2, int, kc_fd_error(ret, KC_FD_OPEN_ERROR), 3)
KC_OPEN_SYSCALLS(KC_FD_OPEN_TP)

KC_SYSCALL(kc_fd_close, close, kc_fd_count(KC_FD_CLOSE, 1), kc_fd_error(ret, KC_FD_CLOSE_ERROR))
