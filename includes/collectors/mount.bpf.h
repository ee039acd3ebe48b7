/* SPDX-License-Identifier: GPL-2.0 */
/* mount: mount and umount calls; return mode counts their errors. Each is an event in every
 * family: its syscall wrapper (trampoline, probe) and its tracepoints. */

KC_COLLECTOR(mount, mount)

KC_SYSCALL(kc_mount_mount, mount, kc_mount_count(KC_MOUNT_MOUNT, 1),
	   kc_mount_error(ret, KC_MOUNT_MOUNT_ERROR))
KC_SYSCALL(kc_mount_umount, umount, kc_mount_count(KC_MOUNT_UMOUNT, 1),
	   kc_mount_error(ret, KC_MOUNT_UMOUNT_ERROR))
