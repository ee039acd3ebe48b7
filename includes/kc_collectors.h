/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Each collector's counters, listed once as X(COLLECTOR, INDEX, name, source). The list makes
 * the enum the programs index with (KC_<COLLECTOR>_<INDEX>) and the struct its maps hold
 * (struct kc_<collector>_counters, one __u64 per counter): that struct's BTF names every
 * counter for user space, so the loader and an agent's skeleton need no copy of the names.
 *
 * `source` says where a counter's figure comes from, as BTF declaration tags on its member
 * (kc_bpf.h turns them into tags in BPF objects; user space compiles them to nothing):
 *   KC_FROM(ev)        the event kc_<collector>_<ev> feeds it (several: all of them do)
 *   KC_RETURN_ONLY     only return mode counts it (r and CO-RE objects): a call's result, or
 *                      an entry paired with its end
 *   KC_BLIND(f, why)   family f observes the event but cannot know this counter
 *   KC_X86_ONLY(why)   only x86 has its event (elsewhere the object says why not)
 *   KC_CORE_ONLY(why)  only CO-RE objects have its event (a legacy object says why not)
 * In the object, the tags read "kc_event:<ev>", "kc_unobserved:<why>" (a `p` object's
 * return-only counters, another architecture's x86-only ones) and "kc_blind:<family>:<why>". A counter is *unobserved* in a run when
 * the object's own tag says so, when no family observes one of its events (the kernel lacks
 * every target, or the object has no program for it), or when the family that does is blind
 * to it: kc-loader then reports it as null with the reason (`"unobserved"`), never as 0. An
 * agent reading the maps itself must do the same: a 0 in an unobserved counter's slot means
 * nothing was looked at, not that nothing happened. `cargo xtask verify` checks every
 * counter names an event its object has. */
#ifndef KC_COLLECTORS_H
#define KC_COLLECTORS_H

#ifndef KC_FROM
#define KC_FROM(ev)
#define KC_RETURN_ONLY
#define KC_BLIND(family, why)
#define KC_X86_ONLY(why)
#define KC_CORE_ONLY(why)
#endif

/* Why a legacy object has no release or stream events: they read the released task (not the
 * current one) at the bucket's offsets, which later kernels of the bucket moved (task_struct
 * changes with every release: vmtest saw the 6.12 bucket's reads wrong on 6.16 to 7.1). */
#define KC_PROCESS_RELEASED_LEGACY \
	"a legacy object would read the released task at its bucket's offsets, which later kernels of the bucket moved: only CO-RE objects see which task was released"

#define KC_PROCESS_COUNTERS(X)                                                              \
	X(PROCESS, FORK, fork, KC_FROM(fork))                                               \
	X(PROCESS, EXEC, exec, KC_FROM(exec))                                               \
	X(PROCESS, EXIT, exit, KC_FROM(exit))                                               \
	X(PROCESS, RELEASE, release, KC_FROM(release) KC_CORE_ONLY(KC_PROCESS_RELEASED_LEGACY)) \
	X(PROCESS, CLONE_CALL, clone_call, KC_FROM(clone) KC_RETURN_ONLY)                   \
	X(PROCESS, CLONE_ERROR, clone_error, KC_FROM(clone) KC_RETURN_ONLY)                 \
	X(PROCESS, STREAMED, streamed, KC_FROM(stream) KC_CORE_ONLY(KC_PROCESS_RELEASED_LEGACY)) \
	X(PROCESS, STREAM_LOST, stream_lost, KC_FROM(stream) KC_CORE_ONLY(KC_PROCESS_RELEASED_LEGACY))

/* Entry mode sees the bytes asked for, not those moved: bytes are return-only. */
#define KC_VFS_COUNTERS(X)                                                                  \
	X(VFS, READ, read, KC_FROM(read))                                                   \
	X(VFS, READ_BYTES, read_bytes, KC_FROM(read) KC_RETURN_ONLY)                        \
	X(VFS, READ_ERROR, read_error, KC_FROM(read) KC_RETURN_ONLY)                        \
	X(VFS, WRITE, write, KC_FROM(write))                                                \
	X(VFS, WRITE_BYTES, write_bytes, KC_FROM(write) KC_RETURN_ONLY)                     \
	X(VFS, WRITE_ERROR, write_error, KC_FROM(write) KC_RETURN_ONLY)                     \
	X(VFS, OPEN, open, KC_FROM(open))                                                   \
	X(VFS, OPEN_ERROR, open_error, KC_FROM(open) KC_RETURN_ONLY)                        \
	X(VFS, CREATE, create, KC_FROM(create))                                             \
	X(VFS, CREATE_ERROR, create_error, KC_FROM(create) KC_RETURN_ONLY)                  \
	X(VFS, UNLINK, unlink, KC_FROM(unlink))                                             \
	X(VFS, UNLINK_ERROR, unlink_error, KC_FROM(unlink) KC_RETURN_ONLY)                  \
	X(VFS, FSYNC, fsync, KC_FROM(fsync))                                                \
	X(VFS, FSYNC_ERROR, fsync_error, KC_FROM(fsync) KC_RETURN_ONLY)

#define KC_CACHESTAT_COUNTERS(X)                                                            \
	X(CACHESTAT, ACCESS, access, KC_FROM(access))                                       \
	X(CACHESTAT, ADD, add, KC_FROM(add))                                                \
	X(CACHESTAT, DIRTY, dirty, KC_FROM(dirty))                                          \
	X(CACHESTAT, BUFFER_DIRTY, buffer_dirty, KC_FROM(buffer_dirty))

/* A completion's error comes in its record or argument: entry mode sees it. */
#define KC_DISK_COUNTERS(X)                                                                 \
	X(DISK, ISSUE, issue, KC_FROM(issue))                                               \
	X(DISK, COMPLETE, complete, KC_FROM(complete))                                      \
	X(DISK, ERROR, error, KC_FROM(complete))                                            \
	X(DISK, BYTES, bytes, KC_FROM(issue))

#define KC_FD_COUNTERS(X)                                                                   \
	X(FD, OPEN, open, KC_FROM(open))                                                    \
	X(FD, OPEN_ERROR, open_error, KC_FROM(open) KC_RETURN_ONLY)                         \
	X(FD, CLOSE, close, KC_FROM(close))                                                 \
	X(FD, CLOSE_ERROR, close_error, KC_FROM(close) KC_RETURN_ONLY)

#define KC_SYNC_COUNTERS(X)                                                                 \
	X(SYNC, SYNC, sync, KC_FROM(sync))                                                  \
	X(SYNC, FSYNC, fsync, KC_FROM(fsync))                                               \
	X(SYNC, FDATASYNC, fdatasync, KC_FROM(fdatasync))                                   \
	X(SYNC, SYNCFS, syncfs, KC_FROM(syncfs))                                            \
	X(SYNC, MSYNC, msync, KC_FROM(msync))                                               \
	X(SYNC, SYNC_FILE_RANGE, sync_file_range, KC_FROM(sync_file_range))                 \
	X(SYNC, ERROR, error,                                                               \
	  KC_FROM(sync) KC_FROM(fsync) KC_FROM(fdatasync) KC_FROM(syncfs) KC_FROM(msync)    \
		  KC_FROM(sync_file_range) KC_RETURN_ONLY)

#define KC_SWAP_COUNTERS(X) X(SWAP, READ, read, KC_FROM(read)) X(SWAP, WRITE, write, KC_FROM(write))

#define KC_OOMKILL_COUNTERS(X) X(OOMKILL, KILL, kill, KC_FROM(kill)) X(OOMKILL, VICTIM, victim, KC_FROM(victim))

#define KC_MOUNT_COUNTERS(X)                                                                \
	X(MOUNT, MOUNT, mount, KC_FROM(mount))                                              \
	X(MOUNT, UMOUNT, umount, KC_FROM(umount))                                           \
	X(MOUNT, MOUNT_ERROR, mount_error, KC_FROM(mount) KC_RETURN_ONLY)                   \
	X(MOUNT, UMOUNT_ERROR, umount_error, KC_FROM(umount) KC_RETURN_ONLY)

/* hardirq and softirq. */
#define KC_IRQ_COUNTERS(X) X(IRQ, ENTRY, entry, KC_FROM(entry)) X(IRQ, EXIT, exit, KC_FROM(exit) KC_RETURN_ONLY)

/* Send and receive bytes: those moved (tracepoints, receives) or asked for (sends through the
 * functions, which are nearly always all sent). `error`: TCP sends and UDP receives that
 * failed, and in the tracepoint family UDP sends too. */
#define KC_SOCKET_COUNTERS(X)                                                               \
	X(SOCKET, TCP_SEND, tcp_send, KC_FROM(tcp_send))                                    \
	X(SOCKET, TCP_SEND_BYTES, tcp_send_bytes, KC_FROM(tcp_send))                        \
	X(SOCKET, TCP_RECV, tcp_recv, KC_FROM(tcp_recv))                                    \
	X(SOCKET, TCP_RECV_BYTES, tcp_recv_bytes, KC_FROM(tcp_recv))                        \
	X(SOCKET, TCP_CONNECT_V4, tcp_connect_v4, KC_FROM(tcp_connect))                     \
	X(SOCKET, TCP_CONNECT_V6, tcp_connect_v6, KC_FROM(tcp_connect))                     \
	X(SOCKET, TCP_CLOSE, tcp_close, KC_FROM(tcp_close))                                 \
	X(SOCKET, TCP_RETRANSMIT, tcp_retransmit, KC_FROM(tcp_retransmit))                  \
	X(SOCKET, UDP_SEND, udp_send, KC_FROM(udp_send))                                    \
	X(SOCKET, UDP_SEND_BYTES, udp_send_bytes, KC_FROM(udp_send))                        \
	X(SOCKET, UDP_RECV, udp_recv, KC_FROM(udp_recv))                                    \
	X(SOCKET, UDP_RECV_BYTES, udp_recv_bytes, KC_FROM(udp_recv) KC_RETURN_ONLY)         \
	X(SOCKET, ERROR, error, KC_FROM(tcp_send) KC_FROM(udp_recv) KC_RETURN_ONLY)

#define KC_SHM_COUNTERS(X)                                                                  \
	X(SHM, SHMGET, shmget, KC_FROM(shmget))                                             \
	X(SHM, SHMGET_ERROR, shmget_error, KC_FROM(shmget) KC_RETURN_ONLY)                  \
	X(SHM, SHMAT, shmat, KC_FROM(shmat))                                                \
	X(SHM, SHMAT_ERROR, shmat_error, KC_FROM(shmat) KC_RETURN_ONLY)                     \
	X(SHM, SHMDT, shmdt, KC_FROM(shmdt))                                                \
	X(SHM, SHMDT_ERROR, shmdt_error, KC_FROM(shmdt) KC_RETURN_ONLY)                     \
	X(SHM, SHMCTL, shmctl, KC_FROM(shmctl))                                             \
	X(SHM, SHMCTL_ERROR, shmctl_error, KC_FROM(shmctl) KC_RETURN_ONLY)

#define KC_DC_COUNTERS(X)                                                                   \
	X(DC, REFERENCE, reference, KC_FROM(reference))                                     \
	X(DC, SLOW, slow, KC_FROM(slow))                                                    \
	X(DC, MISS, miss, KC_FROM(slow) KC_RETURN_ONLY)

#define KC_SIGNAL_COUNTERS(X)                                                               \
	X(SIGNAL, GENERATE, generate, KC_FROM(generate)) X(SIGNAL, DELIVER, deliver, KC_FROM(deliver))

#define KC_PAGEFAULT_COUNTERS(X)                                                            \
	X(PAGEFAULT, FAULT, fault, KC_FROM(fault) KC_RETURN_ONLY)                           \
	X(PAGEFAULT, MAJOR, major, KC_FROM(fault) KC_RETURN_ONLY)                           \
	X(PAGEFAULT, ERROR, error, KC_FROM(fault) KC_RETURN_ONLY)                           \
	X(PAGEFAULT, EXCEPTION, exception,                                                  \
	  KC_FROM(exception) KC_X86_ONLY("exceptions/page_fault_user is x86's: this architecture has no page-fault tracepoint"))

#define KC_MDFLUSH_COUNTERS(X) X(MDFLUSH, FLUSH, flush, KC_FROM(flush))

#define KC_SCHEDLAT_COUNTERS(X)                                                             \
	X(SCHEDLAT, WAKEUP, wakeup, KC_FROM(wakeup))                                        \
	X(SCHEDLAT, SWITCH_IN, switch_in, KC_FROM(switch))                                  \
	X(SCHEDLAT, QUEUED, queued, KC_FROM(switch) KC_RETURN_ONLY)

#define KC_NETDEV_COUNTERS(X)                                                               \
	X(NETDEV, XMIT, xmit, KC_FROM(xmit))                                                \
	X(NETDEV, XMIT_BYTES, xmit_bytes, KC_FROM(xmit))                                    \
	X(NETDEV, XMIT_ERROR, xmit_error, KC_FROM(xmit))                                    \
	X(NETDEV, RECEIVE, receive, KC_FROM(receive))                                       \
	X(NETDEV, RECEIVE_BYTES, receive_bytes, KC_FROM(receive))

/* Per file system, in the order of filesystem_latency's ids. */
#define KC_FILESYSTEM_OPS(X, FS, fs)                                                        \
	X(FILESYSTEM, FS##_READ, fs##_read, KC_FROM(fs##_read))                             \
	X(FILESYSTEM, FS##_WRITE, fs##_write, KC_FROM(fs##_write))                          \
	X(FILESYSTEM, FS##_OPEN, fs##_open, KC_FROM(fs##_open))                             \
	X(FILESYSTEM, FS##_FSYNC, fs##_fsync, KC_FROM(fs##_fsync))
#define KC_FILESYSTEM_COUNTERS(X)                                                           \
	KC_FILESYSTEM_OPS(X, EXT4, ext4) KC_FILESYSTEM_OPS(X, XFS, xfs)                       \
	KC_FILESYSTEM_OPS(X, BTRFS, btrfs) KC_FILESYSTEM_OPS(X, NFS, nfs)

/* A query on a connected socket is known as DNS by its connect; `unparsed` counts what went
 * to port 53 but is not one query (another opcode, several questions, a TCP message's length
 * sent apart from it with a send of its own); `query_tcp` counts the queries sent over TCP
 * (length-prefixed), also in `query`; a timeout is a query still unanswered when its
 * socket is closed, with close(2) or by its process's exit (return mode: an entry-only object
 * sees no answers). Per server (`dns_servers`, return mode): a timeout is its server's when its
 * socket (at a close) or its process (at an exit) asked that server only;
 * `timeout_unattributed` counts the others (also in `timeout`); `servers_tracked` counts the
 * table's rows added (evicted = tracked - rows). */
#define KC_DNS_COUNTERS(X)                                                                  \
	X(DNS, CONNECT, connect, KC_FROM(connect))                                          \
	X(DNS, QUERY, query, KC_FROM(connect) KC_FROM(query))                               \
	X(DNS, QUERY_A, query_a, KC_FROM(connect) KC_FROM(query))                           \
	X(DNS, QUERY_AAAA, query_aaaa, KC_FROM(connect) KC_FROM(query))                     \
	X(DNS, QUERY_OTHER, query_other, KC_FROM(connect) KC_FROM(query))                   \
	X(DNS, QUERY_V6, query_v6, KC_FROM(connect) KC_FROM(query))                         \
	X(DNS, RESEND, resend, KC_FROM(connect) KC_FROM(query))                             \
	X(DNS, UNPARSED, unparsed, KC_FROM(connect) KC_FROM(query))                         \
	X(DNS, RESPONSE, response, KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)          \
	X(DNS, NOERROR, noerror, KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)            \
	X(DNS, NXDOMAIN, nxdomain, KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)          \
	X(DNS, SERVFAIL, servfail, KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)          \
	X(DNS, RCODE_OTHER, rcode_other, KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)    \
	X(DNS, TIMEOUT, timeout, KC_FROM(query) KC_FROM(response) KC_FROM(close) KC_FROM(exit) KC_RETURN_ONLY) \
	/* last: the counters above keep their ids, which are dns_latency's too */                \
	X(DNS, QUERY_TCP, query_tcp, KC_FROM(connect) KC_FROM(query))                       \
	X(DNS, TIMEOUT_UNATTRIBUTED, timeout_unattributed,                                  \
	  KC_FROM(connect) KC_FROM(query) KC_FROM(response) KC_FROM(close) KC_FROM(exit) KC_RETURN_ONLY) \
	X(DNS, SERVERS_TRACKED, servers_tracked,                                            \
	  KC_FROM(connect) KC_FROM(query) KC_FROM(response) KC_RETURN_ONLY)

/* TCP flows, counted where they open and close (not per process: a passive open, a close after
 * the peer's FIN and a retransmit happen in softirq, on whichever task was interrupted). The
 * flow table's own accounting: `tracked` rows added, `untracked` rows it could not add (a full
 * LRU evicts instead, silently, and a closed row not yet read gives way to a new flow in its
 * socket's memory: either loss is tracked - streamed rows - rows present), `streamed`
 * closed rows moved to the close stream, `stream_lost` closes the ring had no room for (their
 * rows stay in the table, as closed). */
/* UDP has no record that carries a socket's tuple: a flow's is read from the socket itself. */
#define KC_CONNECTIONS_UDP_LEGACY \
	"a legacy object would read the UDP socket's addresses at its bucket's offsets: only CO-RE objects see UDP flows"

#define KC_CONNECTIONS_COUNTERS(X)                                                          \
	X(CONNECTIONS, TCP_ACTIVE, tcp_active, KC_FROM(state))                              \
	X(CONNECTIONS, TCP_PASSIVE, tcp_passive, KC_FROM(state))                            \
	X(CONNECTIONS, TCP_CLOSED, tcp_closed, KC_FROM(state))                              \
	X(CONNECTIONS, TCP_RETRANSMIT, tcp_retransmit, KC_FROM(retransmit))                 \
	X(CONNECTIONS, ACCEPTED, accepted, KC_FROM(accept) KC_RETURN_ONLY)                  \
	X(CONNECTIONS, TRACKED, tracked, KC_FROM(state))                                    \
	X(CONNECTIONS, UNTRACKED, untracked, KC_FROM(state))                                \
	X(CONNECTIONS, STREAMED, streamed, KC_FROM(stream))                                 \
	X(CONNECTIONS, STREAM_LOST, stream_lost, KC_FROM(stream))                           \
	X(CONNECTIONS, UDP_SENT, udp_sent, KC_FROM(udp) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_RECEIVED, udp_received, KC_FROM(udp) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_CLOSED, udp_closed, KC_FROM(udp) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_TRACKED, udp_tracked, KC_FROM(udp) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_UNTRACKED, udp_untracked, KC_FROM(udp) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_STREAMED, udp_streamed, KC_FROM(udp_stream) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY)) \
	X(CONNECTIONS, UDP_STREAM_LOST, udp_stream_lost, KC_FROM(udp_stream) KC_CORE_ONLY(KC_CONNECTIONS_UDP_LEGACY))

#define KC_COUNTER_INDEX(c, i, name, source) KC_##c##_##i,
#define KC_COUNTER_FIELD(c, i, name, source) __u64 name source;
#define KC_DEFINE_COUNTERS(lower, UPPER)                                   \
	enum kc_##lower##_counter { KC_##UPPER##_COUNTERS(KC_COUNTER_INDEX) KC_##UPPER##_END }; \
	struct kc_##lower##_counters {                                     \
		KC_##UPPER##_COUNTERS(KC_COUNTER_FIELD)                    \
	};

KC_DEFINE_COUNTERS(process, PROCESS)

/* One record of `process_exits` (a ring buffer): a process (thread group) whose threads are all
 * gone (released; in the tracepoint family, its last thread's exit), with its final row of process_apps when the table is keyed by process. The
 * row moves: it is removed from the table as the record is submitted, so an agent reading the
 * stream never walks the table for exited processes. When the ring has no room the row stays
 * in the table (the hash path: reported as exited there) and `stream_lost` counts it. */
struct kc_process_exit {
	__u64 start_ns;	 /* task->start_time: CLOCK_MONOTONIC at fork */
	__u64 exit_ns;	 /* CLOCK_MONOTONIC at release (tracepoint family: at its last thread's exit) */
	__u32 tgid;
	__u32 ppid;	 /* its parent's tgid at release (the reaper, if it was reparented) */
	__u32 exit_code; /* as wait(2) reports it: exit status << 8, or the killing signal */
	__u32 has_row;	 /* 1: `row` is its row of process_apps (removed from the table) */
	char comm[16];
	struct kc_process_counters row;
};
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
KC_DEFINE_COUNTERS(dns, DNS)
KC_DEFINE_COUNTERS(connections, CONNECTIONS)

/* A DNS server as `dns_servers` keys it: its address family (AF_INET, AF_INET6) and address,
 * in network byte order (IPv4's in the first 4 bytes); its port is 53. */
struct kc_dns_server_key {
	__u32 family;
	__u8 addr[16];
};

#define KC_DNS_RCODES 4 /* noerror, nxdomain, servfail, rcode_other: the counters' order */

/* A row of `dns_servers` (LRU hash, return mode): what one server was asked and answered. */
struct kc_dns_server {
	__u64 queries;			/* query messages sent to it, resends included */
	__u64 responses[KC_DNS_RCODES]; /* its answers to a pending query, by code */
	__u64 timeouts;			/* queries unanswered at close, on a socket that asked it alone */
	__u64 latency[KC_HIST_SLOTS];	/* its answers by time since the query's last send (log2 us) */
};

/* How a flow began: its connect (into SYN_SENT), a listener's child (LISTEN into SYN_RECV), or
 * before the programs were attached (first seen in another state). */
enum kc_flow_direction {
	KC_FLOW_UNKNOWN,
	KC_FLOW_CONNECT,
	KC_FLOW_ACCEPT,
};

/* Which of a flow's fields the object observed; a field whose bit is clear was not looked at
 * and reads 0 (an agent shows it absent, never as 0). */
#define KC_FLOW_KNOWN_OWNER 1  /* tgid, cgroup, comm: the process that connected or accepted */
#define KC_FLOW_KNOWN_COUNTS 2 /* TCP: bytes_*, segs_*, retransmits: tcp_sock's own (CO-RE only) */
#define KC_FLOW_KNOWN_DATAGRAMS 4 /* UDP: bytes_*, segs_* are datagrams, counted since first_ns */

/* A row of `connections_flows` (LRU hash keyed by the socket's address): one TCP or UDP flow.
 * Addresses in network byte order (IPv4's in the first 4 bytes), ports in host byte order. A
 * TCP flow's counts are the kernel's own for the socket (what `ss -ti` shows), as of `last_ns`:
 * read again at each state change, retransmit, send and receive the object observes. A UDP
 * flow's are ours (the kernel keeps none per socket): the datagrams sent and received through
 * the socket since `first_ns`, each way; its state is ESTABLISHED while the socket lives (an
 * unconnected one's peer reads as the unspecified address, port 0: `ss` shows `*`), CLOSE
 * once it is destroyed. */
struct kc_flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;	  /* AF_INET or AF_INET6 */
	__u8 protocol;	  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 state;	  /* the kernel's TCP_* state: TCP_CLOSE (7) once closed */
	__u8 direction;	  /* enum kc_flow_direction */
	__u32 known;	  /* KC_FLOW_KNOWN_* */
	__u32 tgid;
	__u64 cgroup;
	char comm[16];
	__u64 first_ns;	  /* CLOCK_MONOTONIC: the first event seen */
	__u64 last_ns;	  /* and the last */
	__u64 bytes_sent; /* payload bytes transmitted, retransmissions included (tcp_sock.bytes_sent) */
	__u64 bytes_received; /* payload received (bytes_received; a FIN received counts 1) */
	__u64 segs_out;	  /* segments sent, pure ACKs included; UDP: datagrams sent */
	__u64 segs_in;	  /* segments received; UDP: datagrams received */
	__u64 retransmits; /* segments retransmitted (total_retrans); UDP: 0, not a count */
};

/* One record of `connections_closed` (a ring buffer): a flow into CLOSE with its final counts.
 * Its row moves: it is removed from the table as the record is submitted. When the ring has no
 * room the row stays in the table, closed, and `stream_lost` counts it. */
struct kc_flow_close {
	__u64 sock;    /* the socket's address: the row's key */
	__u32 has_row; /* 1: the table held the flow (`flow` is its row, removed from the table) */
	__u32 reserved;
	struct kc_flow flow;
};

#endif
