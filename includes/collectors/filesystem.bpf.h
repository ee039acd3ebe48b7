/* SPDX-License-Identifier: GPL-2.0 */
/* filesystem: read, write, open and fsync calls of ext4, xfs, btrfs and nfs, per application,
 * and in return mode their latency (entry to return) as a histogram per file system and
 * operation (`filesystem_latency`, id = the counter's index: ext4_read 0 ... nfs_fsync 15).
 * Latency seen at the file system, below the VFS and the page cache's hits above it, is what
 * tells a slow disk or server from a slow application (netdata's filesystem charts).
 * Each file system's file operations are a family of targets of their own: xfs, btrfs and nfs
 * are modules (attaching needs them loaded; a trampoline needs the module's BTF, 5.11 on).
 * Families: trampoline and probe; no tracepoint observes these operations on every one of
 * these file systems. */

KC_COLLECTOR(filesystem, filesystem)

#if KC_RETURN_MODE
KC_THREAD_START_MAP(filesystem_starts);
KC_HIST_MAP(filesystem_latency, sizeof(struct kc_filesystem_counters) / sizeof(__u64));
#endif

static __always_inline void kc_filesystem_enter(__u32 op)
{
	kc_filesystem_count(op, 1);
#if KC_RETURN_MODE
	kc_thread_start(&filesystem_starts, bpf_get_current_pid_tgid());
#endif
}

static __always_inline void kc_filesystem_leave(__u32 op)
{
#if KC_RETURN_MODE
	__u64 ns = kc_thread_elapsed(&filesystem_starts, bpf_get_current_pid_tgid());

	if (ns)
		kc_hist_add(&filesystem_latency, op, ns);
#endif
}

/* One operation `op` (counter KC_FILESYSTEM_<OP>) of file system `fs`, implemented by `fn`
 * with `nargs` arguments (latency needs no result). */
#define KC_FS_OP(fs, op, OP, fn, nargs)                                                     \
	KC_FUNC_ENTRY(kc_filesystem_##fs##_##op, fn, kc_filesystem_enter(KC_FILESYSTEM_##OP)) \
	KC_FUNC_RETURN(kc_filesystem_##fs##_##op, fn, long,                                  \
		       ((void)ret, kc_filesystem_leave(KC_FILESYSTEM_##OP)), nargs)

KC_FS_OP(ext4, read, EXT4_READ, ext4_file_read_iter, 2)
KC_FS_OP(ext4, write, EXT4_WRITE, ext4_file_write_iter, 2)
KC_FS_OP(ext4, open, EXT4_OPEN, ext4_file_open, 2)
KC_FS_OP(ext4, fsync, EXT4_FSYNC, ext4_sync_file, 4)

KC_FS_OP(xfs, read, XFS_READ, xfs_file_read_iter, 2)
KC_FS_OP(xfs, write, XFS_WRITE, xfs_file_write_iter, 2)
KC_FS_OP(xfs, open, XFS_OPEN, xfs_file_open, 2)
KC_FS_OP(xfs, fsync, XFS_FSYNC, xfs_file_fsync, 4)

KC_FS_OP(btrfs, read, BTRFS_READ, btrfs_file_read_iter, 2)
KC_FS_OP(btrfs, write, BTRFS_WRITE, btrfs_file_write_iter, 2)
KC_FS_OP(btrfs, open, BTRFS_OPEN, btrfs_file_open, 2)
KC_FS_OP(btrfs, fsync, BTRFS_FSYNC, btrfs_sync_file, 4)

KC_FS_OP(nfs, read, NFS_READ, nfs_file_read, 2)
KC_FS_OP(nfs, write, NFS_WRITE, nfs_file_write, 2)
KC_FS_OP(nfs, open, NFS_OPEN, nfs_file_open, 2)
KC_FS_OP(nfs, fsync, NFS_FSYNC, nfs_file_fsync, 4)
