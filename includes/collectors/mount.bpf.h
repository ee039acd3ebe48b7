/* SPDX-License-Identifier: GPL-2.0 */
/* mount: mount and umount calls; return mode counts their errors. Each is an event in every
 * family: its syscall wrapper (trampoline, probe) and its tracepoints. */

KC_COUNTERS(mount_counters, KC_MOUNT_END);

static __always_inline void kc_mount_error(long ret, __u32 errors)
{
	if (ret < 0)
		kc_add(&mount_counters, errors, 1);
}

KC_SYSCALL(kc_mount_mount, mount, kc_add(&mount_counters, KC_MOUNT_MOUNT, 1),
	   kc_mount_error(ret, KC_MOUNT_MOUNT_ERROR))
KC_SYSCALL(kc_mount_umount, umount, kc_add(&mount_counters, KC_MOUNT_UMOUNT, 1),
	   kc_mount_error(ret, KC_MOUNT_UMOUNT_ERROR))
