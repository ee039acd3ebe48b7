/* SPDX-License-Identifier: GPL-2.0 */
/* vfs: calls, bytes and errors of read, write, open, create, unlink and fsync. Entry mode
 * counts calls; return mode counts transferred bytes and errors too (the bytes asked for are
 * not those moved: entry mode leaves bytes unobserved).
 * Families (see kc_bpf.h): the vfs_* functions (trampoline, probe); the system calls that
 * reach them from user space (tracepoint):
 *   read   read, pread64            write  write, pwrite64
 *   open   open, openat, openat2, creat (their errors include failed path lookups)
 *   create creat, and open/openat with O_CREAT: calls that may create a file
 *   unlink unlink, unlinkat without AT_REMOVEDIR (errors: of unlinkat with it too)
 *   fsync  fsync, fdatasync, in every family (see below)
 * and read and write count the vector calls too, in every family by the system calls (readv,
 * preadv, preadv2; writev, pwritev, pwritev2), whose own functions (vfs_readv, vfs_writev)
 * are static ones the compiler may inline: so a process's calls and bytes are those the kernel
 * counts in /proc/<pid>/io (syscr and rchar, syscw and wchar count them too). */

KC_COLLECTOR(vfs, vfs)

#define KC_O_CREAT 0100
#define KC_AT_REMOVEDIR 0x200
/* 5.12 gave vfs_create and vfs_unlink a first argument, the mount's user namespace (an idmap
 * from 6.3, when the return comes by helper anyway): a vfsmount field of the same commit tells. */
#if KC_CORE
struct vfsmount___userns {
	void *mnt_userns;
} __attribute__((preserve_access_index));
#define KC_VFS_IDMAP_ARG bpf_core_field_exists(struct vfsmount___userns, mnt_userns)
#endif

static __always_inline void kc_vfs_transfer(long ret, __u32 bytes, __u32 errors)
{
	if (ret < 0)
		kc_vfs_count(errors, 1);
	else
		kc_vfs_count(bytes, ret);
}

KC_FUNC_ENTRY(kc_vfs_read, vfs_read, kc_vfs_count(KC_VFS_READ, 1))
KC_FUNC_RETURN(kc_vfs_read, vfs_read, long, kc_vfs_transfer(ret, KC_VFS_READ_BYTES, KC_VFS_READ_ERROR), 4)
/* read and pread64 (write and pwrite64). */
#define KC_VFS_TRANSFER_TP(ev, call, CALLS, BYTES, ERRORS) \
	KC_SYSCALL_TP(ev, call, kc_vfs_count(CALLS, 1), kc_vfs_transfer(ret, BYTES, ERRORS))
KC_VFS_TRANSFER_TP(kc_vfs_read, read, KC_VFS_READ, KC_VFS_READ_BYTES, KC_VFS_READ_ERROR)
KC_VFS_TRANSFER_TP(kc_vfs_read, pread64, KC_VFS_READ, KC_VFS_READ_BYTES, KC_VFS_READ_ERROR)

KC_FUNC_ENTRY(kc_vfs_write, vfs_write, kc_vfs_count(KC_VFS_WRITE, 1))
KC_FUNC_RETURN(kc_vfs_write, vfs_write, long, kc_vfs_transfer(ret, KC_VFS_WRITE_BYTES, KC_VFS_WRITE_ERROR), 4)
KC_VFS_TRANSFER_TP(kc_vfs_write, write, KC_VFS_WRITE, KC_VFS_WRITE_BYTES, KC_VFS_WRITE_ERROR)
KC_VFS_TRANSFER_TP(kc_vfs_write, pwrite64, KC_VFS_WRITE, KC_VFS_WRITE_BYTES, KC_VFS_WRITE_ERROR)
/* The vector calls, in every family. */
#define KC_VFS_VECTOR(ev, call, CALLS, BYTES, ERRORS) \
	KC_SYSCALL_AS(ev, _##call, call, kc_vfs_count(CALLS, 1), kc_vfs_transfer(ret, BYTES, ERRORS))
#define KC_VFS_READV(call) KC_VFS_VECTOR(kc_vfs_read, call, KC_VFS_READ, KC_VFS_READ_BYTES, KC_VFS_READ_ERROR)
#define KC_VFS_WRITEV(call) KC_VFS_VECTOR(kc_vfs_write, call, KC_VFS_WRITE, KC_VFS_WRITE_BYTES, KC_VFS_WRITE_ERROR)
KC_VFS_READV(readv) KC_VFS_READV(preadv) KC_VFS_READV(preadv2)
KC_VFS_WRITEV(writev) KC_VFS_WRITEV(pwritev) KC_VFS_WRITEV(pwritev2)

#define KC_VFS_OPEN_TP(call)                                                               \
	KC_SYSCALL_TP(kc_vfs_open, call, kc_vfs_count(KC_VFS_OPEN, 1), \
		      kc_vfs_error(ret, KC_VFS_OPEN_ERROR))
KC_FUNC_ENTRY(kc_vfs_open, vfs_open, kc_vfs_count(KC_VFS_OPEN, 1))
KC_FUNC_RETURN(kc_vfs_open, vfs_open, int, kc_vfs_error(ret, KC_VFS_OPEN_ERROR), 2)
KC_OPEN_SYSCALLS(KC_VFS_OPEN_TP)

/* open(path, flags) and openat(dirfd, path, flags) with O_CREAT (argument 1 or 2): the exit
 * record has no flags, so the entry marks the thread for it. */
#if KC_RETURN_MODE
KC_THREAD_START_MAP(vfs_create_starts);
#endif

static __always_inline void kc_vfs_create_call(int creates)
{
	if (!creates)
		return;
	kc_vfs_count(KC_VFS_CREATE, 1);
#if KC_RETURN_MODE
	kc_thread_start(&vfs_create_starts, bpf_get_current_pid_tgid());
#endif
}

static __always_inline void kc_vfs_create_ret(long ret)
{
#if KC_RETURN_MODE
	if (kc_thread_elapsed(&vfs_create_starts, bpf_get_current_pid_tgid()))
		kc_vfs_error(ret, KC_VFS_CREATE_ERROR);
#endif
}

#define KC_VFS_CREATE_TP(call, creates) \
	KC_SYSCALL_TP(kc_vfs_create, call, kc_vfs_create_call(creates), kc_vfs_create_ret(ret))
KC_FUNC_ENTRY(kc_vfs_create, vfs_create, kc_vfs_count(KC_VFS_CREATE, 1))
KC_FUNC_RETURN(kc_vfs_create, vfs_create, int, kc_vfs_error(ret, KC_VFS_CREATE_ERROR), KC_VFS_IDMAP_ARG + 4)
KC_VFS_CREATE_TP(creat, 1)
KC_VFS_CREATE_TP(open, ctx->args[1] & KC_O_CREAT)
KC_VFS_CREATE_TP(openat, ctx->args[2] & KC_O_CREAT)

KC_FUNC_ENTRY(kc_vfs_unlink, vfs_unlink, kc_vfs_count(KC_VFS_UNLINK, 1))
KC_FUNC_RETURN(kc_vfs_unlink, vfs_unlink, int, kc_vfs_error(ret, KC_VFS_UNLINK_ERROR), KC_VFS_IDMAP_ARG + 3)
KC_SYSCALL_TP(kc_vfs_unlink, unlink, kc_vfs_count(KC_VFS_UNLINK, 1),
	      kc_vfs_error(ret, KC_VFS_UNLINK_ERROR))
KC_SYSCALL_TP(kc_vfs_unlink, unlinkat, if (!(ctx->args[2] & KC_AT_REMOVEDIR)) kc_vfs_count(KC_VFS_UNLINK, 1),
	      kc_vfs_error(ret, KC_VFS_UNLINK_ERROR))

/* In every family the system calls themselves: vfs_fsync is inlined into them, and 7.x inlines
 * vfs_fsync_range into vfs_fsync, so no kernel function sees each call on every kernel. */
KC_SYSCALL_AS(kc_vfs_fsync, _fsync, fsync, kc_vfs_count(KC_VFS_FSYNC, 1), kc_vfs_error(ret, KC_VFS_FSYNC_ERROR))
KC_SYSCALL_AS(kc_vfs_fsync, _fdatasync, fdatasync, kc_vfs_count(KC_VFS_FSYNC, 1),
	      kc_vfs_error(ret, KC_VFS_FSYNC_ERROR))
