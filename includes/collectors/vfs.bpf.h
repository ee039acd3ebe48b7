/* SPDX-License-Identifier: GPL-2.0 */
/* vfs: calls, bytes and errors of read, write, open, create, unlink and fsync. Entry mode
 * counts calls and requested bytes; return mode counts transferred bytes and errors. */

KC_COUNTERS(vfs_counters, KC_VFS_END);

#define KC_VFS_ENTRY(func, counter)                 \
	SEC("kprobe/" #func)                        \
	int BPF_KPROBE(kc_vfs_##func)               \
	{                                           \
		kc_add(&vfs_counters, counter, 1);  \
		return 0;                           \
	}

#define KC_VFS_RETURN(func, error_counter)                    \
	SEC("kretprobe/" #func)                               \
	int BPF_KRETPROBE(kc_vfs_##func##_ret, long ret)      \
	{                                                     \
		if (ret < 0)                                  \
			kc_add(&vfs_counters, error_counter, 1); \
		return 0;                                     \
	}

SEC("kprobe/vfs_read")
int BPF_KPROBE(kc_vfs_vfs_read, void *file, void *buf, unsigned long count)
{
	kc_add(&vfs_counters, KC_VFS_READ, 1);
	if (!KC_RETURN_MODE)
		kc_add(&vfs_counters, KC_VFS_READ_BYTES, count);
	return 0;
}

SEC("kprobe/vfs_write")
int BPF_KPROBE(kc_vfs_vfs_write, void *file, void *buf, unsigned long count)
{
	kc_add(&vfs_counters, KC_VFS_WRITE, 1);
	if (!KC_RETURN_MODE)
		kc_add(&vfs_counters, KC_VFS_WRITE_BYTES, count);
	return 0;
}

KC_VFS_ENTRY(vfs_open, KC_VFS_OPEN)
KC_VFS_ENTRY(vfs_create, KC_VFS_CREATE)
KC_VFS_ENTRY(vfs_unlink, KC_VFS_UNLINK)
KC_VFS_ENTRY(vfs_fsync_range, KC_VFS_FSYNC)

#if KC_RETURN_MODE
static __always_inline void kc_vfs_transfer(long ret, __u32 bytes, __u32 errors)
{
	if (ret < 0)
		kc_add(&vfs_counters, errors, 1);
	else
		kc_add(&vfs_counters, bytes, ret);
}

SEC("kretprobe/vfs_read")
int BPF_KRETPROBE(kc_vfs_vfs_read_ret, long ret)
{
	kc_vfs_transfer(ret, KC_VFS_READ_BYTES, KC_VFS_READ_ERROR);
	return 0;
}

SEC("kretprobe/vfs_write")
int BPF_KRETPROBE(kc_vfs_vfs_write_ret, long ret)
{
	kc_vfs_transfer(ret, KC_VFS_WRITE_BYTES, KC_VFS_WRITE_ERROR);
	return 0;
}

KC_VFS_RETURN(vfs_open, KC_VFS_OPEN_ERROR)
KC_VFS_RETURN(vfs_create, KC_VFS_CREATE_ERROR)
KC_VFS_RETURN(vfs_unlink, KC_VFS_UNLINK_ERROR)
KC_VFS_RETURN(vfs_fsync_range, KC_VFS_FSYNC_ERROR)
#endif
