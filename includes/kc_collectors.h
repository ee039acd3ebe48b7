/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Each collector's counters, listed once as X(COLLECTOR, INDEX, name). The list makes the enum
 * the programs index with (KC_<COLLECTOR>_<INDEX>) and the struct its maps hold
 * (struct kc_<collector>_counters, one __u64 per counter): that struct's BTF names every
 * counter for user space, so the loader and an agent's skeleton need no copy of the names. */
#ifndef KC_COLLECTORS_H
#define KC_COLLECTORS_H

#define KC_PROCESS_COUNTERS(X)                                                              \
	X(PROCESS, FORK, fork) X(PROCESS, EXEC, exec) X(PROCESS, EXIT, exit)                \
	X(PROCESS, RELEASE, release) X(PROCESS, CLONE_CALL, clone_call)                     \
	X(PROCESS, CLONE_ERROR, clone_error)

#define KC_VFS_COUNTERS(X)                                                                  \
	X(VFS, READ, read) X(VFS, READ_BYTES, read_bytes) X(VFS, READ_ERROR, read_error)    \
	X(VFS, WRITE, write) X(VFS, WRITE_BYTES, write_bytes) X(VFS, WRITE_ERROR, write_error) \
	X(VFS, OPEN, open) X(VFS, OPEN_ERROR, open_error) X(VFS, CREATE, create)            \
	X(VFS, CREATE_ERROR, create_error) X(VFS, UNLINK, unlink)                           \
	X(VFS, UNLINK_ERROR, unlink_error) X(VFS, FSYNC, fsync) X(VFS, FSYNC_ERROR, fsync_error)

#define KC_CACHESTAT_COUNTERS(X)                                                            \
	X(CACHESTAT, ACCESS, access) X(CACHESTAT, ADD, add) X(CACHESTAT, DIRTY, dirty)      \
	X(CACHESTAT, BUFFER_DIRTY, buffer_dirty)

#define KC_DISK_COUNTERS(X)                                                                 \
	X(DISK, ISSUE, issue) X(DISK, COMPLETE, complete) X(DISK, ERROR, error) X(DISK, BYTES, bytes)

#define KC_FD_COUNTERS(X)                                                                   \
	X(FD, OPEN, open) X(FD, OPEN_ERROR, open_error) X(FD, CLOSE, close) X(FD, CLOSE_ERROR, close_error)

#define KC_SYNC_COUNTERS(X)                                                                 \
	X(SYNC, SYNC, sync) X(SYNC, FSYNC, fsync) X(SYNC, FDATASYNC, fdatasync)             \
	X(SYNC, SYNCFS, syncfs) X(SYNC, MSYNC, msync) X(SYNC, SYNC_FILE_RANGE, sync_file_range) \
	X(SYNC, ERROR, error)

#define KC_SWAP_COUNTERS(X) X(SWAP, READ, read) X(SWAP, WRITE, write)

#define KC_OOMKILL_COUNTERS(X) X(OOMKILL, KILL, kill) X(OOMKILL, VICTIM, victim)

#define KC_MOUNT_COUNTERS(X)                                                                \
	X(MOUNT, MOUNT, mount) X(MOUNT, UMOUNT, umount) X(MOUNT, MOUNT_ERROR, mount_error)  \
	X(MOUNT, UMOUNT_ERROR, umount_error)

/* hardirq and softirq. */
#define KC_IRQ_COUNTERS(X) X(IRQ, ENTRY, entry) X(IRQ, EXIT, exit)

#define KC_SOCKET_COUNTERS(X)                                                               \
	X(SOCKET, TCP_SEND, tcp_send) X(SOCKET, TCP_SEND_BYTES, tcp_send_bytes)             \
	X(SOCKET, TCP_RECV, tcp_recv) X(SOCKET, TCP_RECV_BYTES, tcp_recv_bytes)             \
	X(SOCKET, TCP_CONNECT_V4, tcp_connect_v4) X(SOCKET, TCP_CONNECT_V6, tcp_connect_v6) \
	X(SOCKET, TCP_CLOSE, tcp_close) X(SOCKET, TCP_RETRANSMIT, tcp_retransmit)           \
	X(SOCKET, UDP_SEND, udp_send) X(SOCKET, UDP_SEND_BYTES, udp_send_bytes)             \
	X(SOCKET, UDP_RECV, udp_recv) X(SOCKET, UDP_RECV_BYTES, udp_recv_bytes)             \
	X(SOCKET, ERROR, error)

#define KC_SHM_COUNTERS(X)                                                                  \
	X(SHM, SHMGET, shmget) X(SHM, SHMGET_ERROR, shmget_error) X(SHM, SHMAT, shmat)      \
	X(SHM, SHMAT_ERROR, shmat_error) X(SHM, SHMDT, shmdt) X(SHM, SHMDT_ERROR, shmdt_error) \
	X(SHM, SHMCTL, shmctl) X(SHM, SHMCTL_ERROR, shmctl_error)

#define KC_DC_COUNTERS(X) X(DC, REFERENCE, reference) X(DC, SLOW, slow) X(DC, MISS, miss)

#define KC_SIGNAL_COUNTERS(X) X(SIGNAL, GENERATE, generate) X(SIGNAL, DELIVER, deliver)

#define KC_PAGEFAULT_COUNTERS(X) X(PAGEFAULT, FAULT, fault) X(PAGEFAULT, MAJOR, major) X(PAGEFAULT, ERROR, error)

#define KC_MDFLUSH_COUNTERS(X) X(MDFLUSH, FLUSH, flush)

#define KC_SCHEDLAT_COUNTERS(X) X(SCHEDLAT, WAKEUP, wakeup) X(SCHEDLAT, SWITCH_IN, switch_in) X(SCHEDLAT, QUEUED, queued)

#define KC_NETDEV_COUNTERS(X)                                                                \
	X(NETDEV, XMIT, xmit) X(NETDEV, XMIT_BYTES, xmit_bytes) X(NETDEV, XMIT_ERROR, xmit_error) \
	X(NETDEV, RECEIVE, receive) X(NETDEV, RECEIVE_BYTES, receive_bytes)

/* Per file system, in the order of filesystem_latency's ids. */
#define KC_FILESYSTEM_OPS(X, FS, fs)                                                           \
	X(FILESYSTEM, FS##_READ, fs##_read) X(FILESYSTEM, FS##_WRITE, fs##_write)                \
	X(FILESYSTEM, FS##_OPEN, fs##_open) X(FILESYSTEM, FS##_FSYNC, fs##_fsync)
#define KC_FILESYSTEM_COUNTERS(X)                                                              \
	KC_FILESYSTEM_OPS(X, EXT4, ext4) KC_FILESYSTEM_OPS(X, XFS, xfs)                          \
	KC_FILESYSTEM_OPS(X, BTRFS, btrfs) KC_FILESYSTEM_OPS(X, NFS, nfs)

#define KC_COUNTER_INDEX(c, i, name) KC_##c##_##i,
#define KC_COUNTER_FIELD(c, i, name) __u64 name;
#define KC_DEFINE_COUNTERS(lower, UPPER)                                   \
	enum kc_##lower##_counter { KC_##UPPER##_COUNTERS(KC_COUNTER_INDEX) KC_##UPPER##_END }; \
	struct kc_##lower##_counters {                                     \
		KC_##UPPER##_COUNTERS(KC_COUNTER_FIELD)                    \
	};

KC_DEFINE_COUNTERS(process, PROCESS)
KC_DEFINE_COUNTERS(vfs, VFS)
KC_DEFINE_COUNTERS(cachestat, CACHESTAT)
KC_DEFINE_COUNTERS(disk, DISK)
KC_DEFINE_COUNTERS(fd, FD)
KC_DEFINE_COUNTERS(sync, SYNC)
KC_DEFINE_COUNTERS(swap, SWAP)
KC_DEFINE_COUNTERS(oomkill, OOMKILL)
KC_DEFINE_COUNTERS(mount, MOUNT)
KC_DEFINE_COUNTERS(irq, IRQ)
KC_DEFINE_COUNTERS(socket, SOCKET)
KC_DEFINE_COUNTERS(shm, SHM)
KC_DEFINE_COUNTERS(dc, DC)
KC_DEFINE_COUNTERS(signal, SIGNAL)
KC_DEFINE_COUNTERS(pagefault, PAGEFAULT)
KC_DEFINE_COUNTERS(mdflush, MDFLUSH)
KC_DEFINE_COUNTERS(filesystem, FILESYSTEM)
KC_DEFINE_COUNTERS(schedlat, SCHEDLAT)
KC_DEFINE_COUNTERS(netdev, NETDEV)

#endif
