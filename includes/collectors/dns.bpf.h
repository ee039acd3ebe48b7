/* SPDX-License-Identifier: GPL-2.0 */
/* dns: DNS over UDP and TCP as the processes that ask see it: queries by type, responses by
 * code with their latency, queries sent again before an answer, and queries never answered,
 * per process and in total, and per server (dns_servers); IPv4 and IPv6 servers.
 *
 * Where: the socket system calls, in all three families (the syscall wrappers through
 * trampolines and kprobes, the syscalls' tracepoints). A socket speaks DNS when it is connected
 * to port 53 (connect) or a datagram goes to port 53 (sendto, sendmsg's name); the payload is
 * read from the caller's buffer, before the kernel copies it (a query) or after (a response).
 * Why not a socket filter, cgroup skb or tc program, as upstream's socket filter: there the
 * packet's owner is unknown (softirq, or a helper older kernels refuse them), the agent needs a
 * socket or cgroup to attach to, and every packet of the host pays the filter; here the owner
 * is the caller, the objects load like every other collector's, and only the socket calls pay.
 *   connect   connect: to port 53, the socket is remembered as a DNS client's; elsewhere, not
 *   query     sendto, sendmsg (the first two buffers of the message), sendmmsg (its first
 *             4 messages: glibc sends A and AAAA as one sendmmsg); write and writev of a
 *             DNS socket (Go's own resolver writes to a connected UDP socket; glibc's DNS over
 *             TCP is a writev of [length, query] or [length, A, length, AAAA])
 *   response  recvfrom, recvmsg and read of a DNS socket (return mode: the payload is there
 *             once the call returns), matched to its query by socket and id
 *   close     close: queries still unanswered on the socket count as timeouts
 *   exit      sched_process_exit, of a process's last thread (legacy objects: its leader's): the
 *             queries still unanswered on the sockets its exit closes (no close(2) is called)
 *             count as timeouts: a process's queries waiting are kept for it (dns_processes)
 * DNS over TCP puts each message's length before it (2 bytes, RFC 1035 4.2.2): in the same
 * buffer (send, recv) or in a buffer of its own (musl's sendmsg and recvmsg of [length,
 * message]). Which one a send is, its bytes say: a query's header has one question where the
 * other layout puts a flags byte or a length, so no socket type need be read.
 * write, writev and read are every file's: each costs the host's other files one lookup of
 * the descriptor (and a read's return an array read: dns_receiving), no more.
 * Not seen: recvmmsg (no client in libc or Go's resolver receives DNS with it), readv. */

#include <bpf/bpf_endian.h>

KC_COLLECTOR(dns, dns)

#define KC_DNS_PORT 53
#define KC_DNS_HEADER 12
/* A name's labels walked: an IPv6 address's reverse name (ip6.arpa) has 34. */
#define KC_DNS_LABELS 64
#define KC_DNS_TYPE_A 1
#define KC_DNS_TYPE_AAAA 28

/* A socket of a process speaking DNS: since when (ties its queries to this socket, not a
 * later one the descriptor comes to name, and tells it from an exited process's: see struct
 * kc_dns_process), queries waiting for their answer, its server (its peer, or where its first
 * query went) and whether it asked others too. */
struct kc_dns_socket {
	__u64 since;
	__u32 pending;
	__u32 several_servers;
	struct kc_dns_server_key server;
};

struct kc_dns_query_key {
	__u64 since;
	__u32 tgid;
	__u32 fd;
	__u32 id;
	__u32 pad;
};

/* A query waiting for its answer: when and to whom it was (last) sent. */
struct kc_dns_query {
	__u64 sent;
	struct kc_dns_server_key server;
};

/* A receive in flight on a DNS socket: where its payload lands (past a TCP message's length
 * when that has a buffer of its own), and where its sender's address and that address's length
 * land (user addresses, 0: none asked; a stream socket's sender is left unwritten, length 0). */
struct kc_dns_recv {
	__u64 buf;
	__u64 from;
	__u64 fromlen;
	__u32 fd;
	__u32 pad;
};

/* Keyed by tgid << 32 | fd. DNS sockets are few: 1,024 of them, each a query or two. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kc_dns_socket);
	__uint(max_entries, 1024);
} dns_sockets SEC(".maps");

/* Queries waiting for their answer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kc_dns_query_key);
	__type(value, struct kc_dns_query);
	__uint(max_entries, 1024);
} dns_pending SEC(".maps");

/* A process asking DNS, by tgid: its queries waiting for an answer, on all its sockets, for
 * its exit to count (the exit closes them, without close(2)); the server its first query went
 * to (family 0: none yet), and whether it has asked another since (for its life: with no
 * atomic exchange on 5.10, forgetting the servers when none is waiting would race a thread
 * that asks); and when the last process of this tgid exited. The row outlives that exit: the
 * exited process's socket entries stay (no exit can walk them), and one made before it belongs
 * to that process, not to a later one given the same pid. No kernel struct is read: a legacy
 * object would read it at its bucket's offsets, which need not be the running kernel's. */
struct kc_dns_process {
	__u64 exited;
	__u32 pending;
	__u32 several_servers;
	struct kc_dns_server_key server;
};

/* Receives in flight on DNS sockets, by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kc_dns_recv);
	__uint(max_entries, 1024);
} dns_recvs SEC(".maps");

/* Receives in flight on DNS sockets, about (dns_recvs' entries): a receive's return looks here
 * first, so that the host's other reads pay an array's read, not a hash lookup. A lost return
 * leaves it high: dearer, never wrong. */
#if KC_RETURN_MODE
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} dns_receiving SEC(".maps");
#endif

/* Latency from a query's (last) send to its response, id = the response code's counter
 * (KC_DNS_NOERROR ... KC_DNS_RCODE_OTHER). */
#if KC_RETURN_MODE
KC_HIST_MAP(dns_latency, sizeof(struct kc_dns_counters) / sizeof(__u64));

/* What each server was asked and answered. A host asks a handful: 64 rows, LRU, the rows
 * added counted (`servers_tracked`) so that an agent sees evictions. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kc_dns_server_key);
	__type(value, struct kc_dns_server);
	__uint(max_entries, 64);
} dns_servers SEC(".maps");
#endif

/* Processes that asked DNS (return mode) or whose sockets exited with them: as many as the
 * sockets. Entry-only objects keep it too, for the exits that tell sockets apart. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct kc_dns_process);
	__uint(max_entries, 1024);
} dns_processes SEC(".maps");

static __always_inline __u64 kc_dns_socket_key(__u32 fd)
{
	return (bpf_get_current_pid_tgid() & 0xFFFFFFFF00000000ULL) | fd;
}

/* Whether DNS socket `s` (entry `key`) is one of an exited process, made before the last exit
 * of its tgid (its queries were counted there): met by a later process given the same pid,
 * it is forgotten. */
static __always_inline bool kc_dns_stale(const struct kc_dns_socket *s, __u64 key)
{
	__u32 tgid = key >> 32;
	struct kc_dns_process *p = bpf_map_lookup_elem(&dns_processes, &tgid);

	if (!p || p->exited < s->since)
		return false;
	bpf_map_delete_elem(&dns_sockets, &key);
	return true;
}

/* The current process's row, made if it has none: when it makes a socket a DNS one (for its
 * exit to mark), and at its queries. */
static __always_inline struct kc_dns_process *kc_dns_process_row(void)
{
	static const struct kc_dns_process none;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct kc_dns_process *p = bpf_map_lookup_elem(&dns_processes, &tgid);

	if (p)
		return p;
	bpf_map_update_elem(&dns_processes, &tgid, &none, BPF_NOEXIST);
	return bpf_map_lookup_elem(&dns_processes, &tgid);
}

/* The DNS socket `key` names, if the current process made it one. Its process is looked up
 * only for a DNS socket: every send, receive and close of the host looks. */
static __always_inline struct kc_dns_socket *kc_dns_socket_of(__u64 key)
{
	struct kc_dns_socket *s = bpf_map_lookup_elem(&dns_sockets, &key);

	return s && !kc_dns_stale(s, key) ? s : NULL;
}

/* The server a socket address names, when it names port 53: its family (else 0) and, where
 * `server` is given, its address. Only the family and port are read first: most datagrams
 * of a host are not DNS. */
static __always_inline __u32 kc_dns_server(const void *addr, struct kc_dns_server_key *server)
{
	struct {
		__u16 family;
		__u16 port;
	} sa = {};

	if (!addr || bpf_probe_read_user(&sa, sizeof(sa), addr))
		return 0;
	if ((sa.family != AF_INET && sa.family != AF_INET6) || sa.port != bpf_htons(KC_DNS_PORT))
		return 0;
	if (server) {
		/* sockaddr_in's address at 4, sockaddr_in6's at 8 (after its flow label). */
		if (sa.family == AF_INET ? bpf_probe_read_user(server->addr, 4, addr + 4) :
					   bpf_probe_read_user(server->addr, 16, addr + 8))
			return 0;
		server->family = sa.family;
	}
	return sa.family;
}

static __always_inline bool kc_dns_same_server(const struct kc_dns_server_key *a, const struct kc_dns_server_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

static __always_inline void kc_dns_on_connect(__u32 fd, const void *addr)
{
	__u64 key = kc_dns_socket_key(fd);
	struct kc_dns_socket s = {};

	/* Connected elsewhere (or disconnected): no longer a DNS client's. */
	if (!kc_dns_server(addr, &s.server)) {
		bpf_map_delete_elem(&dns_sockets, &key);
		return;
	}
	s.since = bpf_ktime_get_ns();
	kc_dns_process_row();
	bpf_map_update_elem(&dns_sockets, &key, &s, BPF_ANY);
	kc_dns_count(KC_DNS_CONNECT, 1);
}

/* Whether the 6 bytes at `h` begin a query's header: QR 0 (a query), opcode 0 (QUERY), one
 * question. */
static __always_inline bool kc_dns_query_header(const __u8 *h)
{
	return !(h[2] & 0xF8) && h[4] == 0 && h[5] == 1;
}

/* The DNS query of `len` bytes at user address `buf`, as its question's type << 16 | its id,
 * or -1 when it is not one query (a response, another opcode, several questions, a name that
 * does not parse or has more than KC_DNS_LABELS labels). The name is walked in user memory,
 * a label length at a time: an offset into a buffer of ours would be a pointer offset the
 * verifier tracks exactly, and every label count a path of its own through the rest of the
 * program (sendmmsg's took 400,000 instructions to verify); as a user address it is a number
 * the verifier need not follow (15,500 on 5.10). Inlined, as everything here: 5.10's verifier
 * refused the legacy objects' build of it as a function of its own. */
static __always_inline long kc_dns_question(const void *buf, __u64 len)
{
	__u64 off = KC_DNS_HEADER;
	__u8 h[6], label = 0, bad = 0;
	__u16 type;

	if (len < KC_DNS_HEADER + 5 || bpf_probe_read_user(h, sizeof(h), buf) || !kc_dns_query_header(h))
		return -1;
	/* One branch a label (5.10's verifier refuses, with EFAULT, a program with more than
	 * 8,192 branches waiting to be explored): a failed read is a 0, the end of the name; a
	 * name past the message, or with a compressed label (none belongs in a question), is
	 * found after the walk. */
	for (int i = 0; i < KC_DNS_LABELS; i++) {
		label = 0;
		bpf_probe_read_user(&label, 1, buf + off);
		if (label == 0)
			break;
		bad |= label;
		off += (label & 0x3F) + 1;
	}
	if (label != 0 || (bad & 0xC0) || off + 5 > len ||
	    bpf_probe_read_user(&type, sizeof(type), buf + off + 1))
		return -1;
	return (long)bpf_ntohs(type) << 16 | (long)h[0] << 8 | h[1];
}

/* The user-space struct msghdr's and struct iovec's fields read (64-bit ABI). */
struct kc_user_msghdr {
	__u64 name;
	__u32 namelen;
	__u32 pad;
	__u64 iov;
	__u64 iovlen;
};

struct kc_user_iovec {
	__u64 base;
	__u64 len;
};

/* Where the message of a send of `*len` bytes at `*buf` is (`more`: the user address of the
 * send's next struct iovec, 0 if it has none): a datagram is its buffer; DNS over TCP's
 * message follows its length, in the same buffer or alone in the next (read only then: most
 * sendmsg calls with several buffers are not DNS). Moves `*buf` and `*len` onto the message
 * and returns 1 when it is TCP's, else 0. */
static __always_inline int kc_dns_locate(__u64 *buf, __u64 *len, __u64 more)
{
	struct kc_user_iovec next;
	__u8 h[8];

	if (*len == 2 && more) {
		if (bpf_probe_read_user(h, 2, (void *)*buf) || bpf_probe_read_user(&next, sizeof(next), (void *)more) ||
		    ((__u64)h[0] << 8 | h[1]) != next.len)
			return 0;
		*buf = next.base;
		*len = next.len;
		return 1;
	}
	/* A datagram's header at 0 has one question; a TCP message's length and flags there
	 * do not (its flags' first byte has RD, or is 0 with the second 0 too). */
	if (*len < 2 + KC_DNS_HEADER || bpf_probe_read_user(h, sizeof(h), (void *)*buf) ||
	    kc_dns_query_header(h) || ((__u64)h[0] << 8 | h[1]) != *len - 2)
		return 0;
	*buf += 2;
	*len -= 2;
	return 1;
}

#if KC_RETURN_MODE
/* `server`'s row, added if it has none. */
static __always_inline struct kc_dns_server *kc_dns_server_row(const struct kc_dns_server_key *server)
{
	static const struct kc_dns_server fresh;
	struct kc_dns_server *row = bpf_map_lookup_elem(&dns_servers, server);

	if (row)
		return row;
	if (!bpf_map_update_elem(&dns_servers, server, &fresh, BPF_NOEXIST))
		kc_dns_count(KC_DNS_SERVERS_TRACKED, 1);
	return bpf_map_lookup_elem(&dns_servers, server);
}

/* A query message sent to `server`. */
static __always_inline void kc_dns_server_asked(const struct kc_dns_server_key *server)
{
	struct kc_dns_server *row = kc_dns_server_row(server);

	if (row)
		__sync_fetch_and_add(&row->queries, 1);
}

/* The current process sent a query message to `server`, `fresh` of them a query not already
 * waiting. */
static __always_inline void kc_dns_process_asked(const struct kc_dns_server_key *server, __u32 fresh)
{
	struct kc_dns_process *p = kc_dns_process_row();

	if (!p)
		return;
	/* A row made at a connect, or left by an exit, has no server yet. */
	if (!p->server.family)
		p->server = *server;
	else if (!kc_dns_same_server(&p->server, server))
		p->several_servers = 1;
	if (fresh)
		__sync_fetch_and_add(&p->pending, 1);
}

/* `n` of the current process's queries were answered, or counted as timeouts at a close. */
static __always_inline void kc_dns_process_settled(__u32 n)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct kc_dns_process *p = bpf_map_lookup_elem(&dns_processes, &tgid);

	if (p)
		__sync_fetch_and_add(&p->pending, -n);
}

/* `n` queries never answered, asked of `server` alone unless `several_servers`: which of several
 * a query was last sent to is the query's, not its socket's or process's, so those are counted
 * apart. */
static __always_inline void kc_dns_timed_out(__u32 n, __u32 several_servers, const struct kc_dns_server_key *server)
{
	struct kc_dns_server *row = several_servers ? NULL : kc_dns_server_row(server);

	kc_dns_count2(KC_DNS_TIMEOUT, n, KC_DNS_TIMEOUT_UNATTRIBUTED, row ? 0 : n);
	if (row)
		__sync_fetch_and_add(&row->timeouts, n);
}
#endif

/* A send of `len` bytes at `buf` (`more`: the message's next struct iovec, if any) on socket
 * `fd`, to `dest` (NULL: its peer). */
static __always_inline void kc_dns_on_send(__u32 fd, __u64 buf, __u64 len, __u64 more, const void *dest)
{
	__u64 key = kc_dns_socket_key(fd), now = bpf_ktime_get_ns();
	struct kc_dns_query_key q = { .tgid = key >> 32, .fd = fd };
	struct kc_dns_query pending = { .sent = now };
	struct kc_dns_socket *s = NULL;
	long question;
	__u32 type, fresh;
	int tcp;

	/* A datagram with an address goes where it says (most of a host's are not DNS: they
	 * cost a read of the port, no lookup); one without goes to the socket's peer. */
	if (dest && !kc_dns_server(dest, &pending.server))
		return;
	/* Without an address, a socket left by an earlier process is not this one's DNS socket. */
	s = kc_dns_socket_of(key);
	if (!dest) {
		if (!s || !s->server.family)
			return;
		pending.server = s->server;
	}
	tcp = kc_dns_locate(&buf, &len, more);
	question = kc_dns_question((void *)buf, len);
	if (question < 0) {
		kc_dns_count(KC_DNS_UNPARSED, 1);
		return;
	}
	type = question >> 16;
	q.id = question & 0xFFFF;
	if (!s) {
		struct kc_dns_socket fresh = { .since = now, .server = pending.server };

		kc_dns_process_row();

		bpf_map_update_elem(&dns_sockets, &key, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&dns_sockets, &key);
		if (!s)
			return;
	} else if (!kc_dns_same_server(&s->server, &pending.server)) {
		s->several_servers = 1;
	}
	KC_IF_RETURN(kc_dns_server_asked(&pending.server);)
	q.since = s->since;
	/* Sent again before an answer (a retry, or the same query to another server): not fresh. */
	fresh = !bpf_map_lookup_elem(&dns_pending, &q);
	if (bpf_map_update_elem(&dns_pending, &q, &pending, fresh ? BPF_NOEXIST : BPF_ANY))
		return;
	KC_IF_RETURN(kc_dns_process_asked(&pending.server, fresh);)
	if (!fresh) {
		kc_dns_count(KC_DNS_RESEND, 1);
		return;
	}
	__sync_fetch_and_add(&s->pending, 1);
	kc_dns_count2(KC_DNS_QUERY, 1,
		      type == KC_DNS_TYPE_A ? KC_DNS_QUERY_A :
		      type == KC_DNS_TYPE_AAAA ? KC_DNS_QUERY_AAAA : KC_DNS_QUERY_OTHER, 1);
	/* Added, not branched on: a branch on `tcp` (a constant on each path out of
	 * kc_dns_locate) would keep the two paths apart through the name's walk, and the verifier
	 * would walk it twice (sendmmsg's program doubled, to 29,700 instructions). */
	kc_dns_count2(KC_DNS_QUERY_V6, pending.server.family == AF_INET6, KC_DNS_QUERY_TCP, tcp);
}

/* The message at user address `msg`: its destination and its first buffer. */
static __always_inline int kc_dns_read_msg(const void *msg, struct kc_user_msghdr *h,
					   struct kc_user_iovec *iov)
{
	if (bpf_probe_read_user(h, sizeof(*h), msg) || !h->iovlen ||
	    bpf_probe_read_user(iov, sizeof(*iov), (void *)h->iov))
		return -1;
	return 0;
}

/* The user address of the second struct iovec of message `h`, 0 if it has one buffer. */
static __always_inline __u64 kc_dns_second_iov(const struct kc_user_msghdr *h)
{
	return h->iovlen > 1 ? h->iov + sizeof(struct kc_user_iovec) : 0;
}

static __always_inline void kc_dns_on_sendmsg(__u32 fd, const void *msg)
{
	struct kc_user_msghdr h;
	struct kc_user_iovec iov;

	if (!kc_dns_read_msg(msg, &h, &iov))
		kc_dns_on_send(fd, iov.base, iov.len, kc_dns_second_iov(&h),
			       h.name && h.namelen ? (void *)h.name : NULL);
}

/* struct mmsghdr: a msghdr (56 bytes) and the length sent. */
#define KC_USER_MMSGHDR 64

/* write on descriptor `fd`: a query where it is a DNS socket (looked up first: most writes of
 * a host are a file's). */
static __always_inline void kc_dns_on_write(__u32 fd, __u64 buf, __u64 len)
{
	__u64 key = kc_dns_socket_key(fd);

	if (bpf_map_lookup_elem(&dns_sockets, &key))
		kc_dns_on_send(fd, buf, len, 0, NULL);
}

/* writev on descriptor `fd` of `iovcnt` buffers at `iov`: its message starts in the first
 * buffer; glibc's DNS over TCP puts a second, [length, query] again, in the third and fourth.
 * Nothing learnt in the first message's walk is kept for the second's (a length compared to
 * 2 there would make two states of every one the second walk starts from: 133,000
 * instructions to verify on 6.18, where sendmmsg's four walks take 33,000). */
static __always_inline void kc_dns_on_writev(__u32 fd, __u64 iov, __u64 iovcnt)
{
	__u64 key = kc_dns_socket_key(fd);
	struct kc_user_iovec v, lengths[3];

	if (!iovcnt || !bpf_map_lookup_elem(&dns_sockets, &key) || bpf_probe_read_user(&v, sizeof(v), (void *)iov))
		return;
	kc_dns_on_send(fd, v.base, v.len, iovcnt > 1 ? iov + sizeof(v) : 0, NULL);
	/* The first three buffers read again: [length, query, length] or not. */
	if (iovcnt < 4 || bpf_probe_read_user(lengths, sizeof(lengths), (void *)iov) || lengths[0].len != 2 ||
	    lengths[2].len != 2)
		return;
	kc_dns_on_send(fd, lengths[2].base, 2, iov + 3 * sizeof(v), NULL);
}

static __always_inline void kc_dns_on_sendmmsg(__u32 fd, const void *msgs, __u32 vlen)
{
	/* Written out, not a loop: bounded by the caller's count, a loop's counter is one the
	 * verifier need not follow, and 5.10's then takes two turns for an infinite loop (EINVAL;
	 * clang cannot unroll it, with the name's walk inside). */
	if (vlen > 0)
		kc_dns_on_sendmsg(fd, msgs);
	if (vlen > 1)
		kc_dns_on_sendmsg(fd, msgs + KC_USER_MMSGHDR);
	if (vlen > 2)
		kc_dns_on_sendmsg(fd, msgs + 2 * KC_USER_MMSGHDR);
	if (vlen > 3)
		kc_dns_on_sendmsg(fd, msgs + 3 * KC_USER_MMSGHDR);
}

#if KC_RETURN_MODE
/* A receive on socket `fd` into `buf` begins; its sender's address is to land at `from`, that
 * address's length at `fromlen`. */
static __always_inline void kc_dns_recv_begin(__u32 fd, __u64 buf, __u64 from, __u64 fromlen)
{
	__u64 key = kc_dns_socket_key(fd), thread = bpf_get_current_pid_tgid();
	struct kc_dns_recv r = { .buf = buf, .from = from, .fromlen = fromlen, .fd = fd };
	__u32 zero = 0;
	__u64 *receiving;

	if (!buf || !bpf_map_lookup_elem(&dns_sockets, &key) ||
	    bpf_map_update_elem(&dns_recvs, &thread, &r, BPF_ANY))
		return;
	receiving = bpf_map_lookup_elem(&dns_receiving, &zero);
	if (receiving)
		__sync_fetch_and_add(receiving, 1);
}

/* A recvmsg on socket `fd` begins. The socket is looked up before the message is read: every
 * recvmsg of the host comes here, and few are a DNS socket's. */
static __always_inline void kc_dns_recvmsg_begin(__u32 fd, const void *msg)
{
	__u64 key = kc_dns_socket_key(fd);
	struct kc_user_msghdr h;
	struct kc_user_iovec iov, next = {};
	__u64 more;

	if (!bpf_map_lookup_elem(&dns_sockets, &key) || kc_dns_read_msg(msg, &h, &iov))
		return;
	/* A TCP message's length alone in the first buffer: the message lands in the second. */
	more = kc_dns_second_iov(&h);
	if (iov.len == 2 && more && !bpf_probe_read_user(&next, sizeof(next), (void *)more) && next.base)
		iov.base = next.base;
	/* The kernel writes the sender's length back into the message's msg_namelen. */
	kc_dns_recv_begin(fd, iov.base, h.name, h.name ? (__u64)msg + 8 : 0);
}

/* The counter of response code `rcode` (0 to 15): noerror, nxdomain, servfail or
 * rcode_other, which follow each other in that order. A table in a constant, one nibble a
 * code: a switch becomes a table in memory, whose entries the verifier cannot bound (arm64's
 * legacy build refused even a check after it), where a mask of a shift it can. */
#define KC_DNS_RCODE_NIBBLES 0x3333333333331230ULL /* 0: +0, 1: +3, 2: +2, 3: +1, 4-15: +3 */
static __always_inline __u64 kc_dns_rcode_counter(__u8 rcode)
{
	return KC_DNS_NOERROR + (KC_DNS_RCODE_NIBBLES >> ((rcode & 0x0F) * 4) & 3);
}

/* The server that sent a response: the sender's address the receive wrote, when it wrote one
 * of port 53; else (a stream socket, or none asked) the one the query was last sent to. */
static __always_inline void kc_dns_responder(__u64 from, __u64 fromlen, struct kc_dns_server_key *server)
{
	struct kc_dns_server_key sender = {};
	__u32 len = 0;

	if (from && fromlen && !bpf_probe_read_user(&len, sizeof(len), (void *)fromlen) && len >= 16 &&
	    kc_dns_server((void *)from, &sender))
		*server = sender;
}

/* The answer to a query of `server`'s with code counter `idx`, `ns` after the query's send. */
static __always_inline void kc_dns_server_answered(const struct kc_dns_server_key *server, __u64 idx, __u64 ns)
{
	struct kc_dns_server *row = kc_dns_server_row(server);
	__u64 code = idx - KC_DNS_NOERROR, slot = kc_slot(ns);

	if (!row)
		return;
	/* Indexes into the row, bounded where the verifier sees them. */
	kc_barrier_var(code);
	kc_barrier_var(slot);
	__sync_fetch_and_add(&row->responses[code & (KC_DNS_RCODES - 1)], 1);
	__sync_fetch_and_add(&row->latency[slot & (KC_HIST_SLOTS - 1)], 1);
}

/* The receive this thread began returned `ret`: a response to one of the socket's queries? */
static __always_inline void kc_dns_recv_end(long ret)
{
	__u64 thread, key;
	struct kc_dns_query_key q = {};
	struct kc_dns_recv *in;
	struct kc_dns_server_key server;
	struct kc_dns_query *sent;
	struct kc_dns_socket *s;
	__u32 zero = 0;
	__u64 *receiving = bpf_map_lookup_elem(&dns_receiving, &zero);
	__u8 h[8];
	__u64 ns, idx, buf, from, fromlen;

	if (!receiving || !*receiving)
		return;
	thread = bpf_get_current_pid_tgid();
	in = bpf_map_lookup_elem(&dns_recvs, &thread);
	if (!in)
		return;
	q.tgid = thread >> 32;
	q.fd = in->fd;
	buf = in->buf;
	from = in->from;
	fromlen = in->fromlen;
	if (bpf_map_delete_elem(&dns_recvs, &thread)) /* not this return's to take */
		return;
	__sync_fetch_and_add(receiving, -1);
	if (ret < KC_DNS_HEADER || bpf_probe_read_user(h, sizeof(h), (void *)buf))
		return;
	/* A TCP message after its length: QR set in the byte that is a datagram's question
	 * count's high byte (0), and one question. Its header moved to the front byte by byte
	 * (a pointer chosen between two places is one 5.10's verifier refuses). */
	if (ret >= 2 + KC_DNS_HEADER && (h[4] & 0x80) && h[6] == 0 && h[7] == 1) {
		h[0] = h[2];
		h[1] = h[3];
		h[2] = h[4];
		h[3] = h[5];
	}
	if (!(h[2] & 0x80)) /* QR 1: a response */
		return;
	key = kc_dns_socket_key(q.fd);
	s = kc_dns_socket_of(key);
	if (!s)
		return;
	q.since = s->since;
	q.id = (__u32)h[0] << 8 | h[1];
	sent = bpf_map_lookup_elem(&dns_pending, &q);
	if (!sent)
		return;
	ns = bpf_ktime_get_ns() - sent->sent;
	server = sent->server;
	if (bpf_map_delete_elem(&dns_pending, &q)) /* another thread took it */
		return;
	__sync_fetch_and_add(&s->pending, -1);
	kc_dns_process_settled(1);
	idx = kc_dns_rcode_counter(h[3]);
	kc_dns_count2(KC_DNS_RESPONSE, 1, idx, 1);
	kc_hist_add(&dns_latency, idx, ns);
	kc_dns_responder(from, fromlen, &server);
	kc_dns_server_answered(&server, idx, ns);
}
#endif

static __always_inline void kc_dns_on_close(__u32 fd)
{
	__u64 key = kc_dns_socket_key(fd);
	struct kc_dns_socket *s = kc_dns_socket_of(key);

	if (!s)
		return;
#if KC_RETURN_MODE
	if (s->pending) {
		kc_dns_timed_out(s->pending, s->several_servers, &s->server);
		kc_dns_process_settled(s->pending);
	}
#endif
	bpf_map_delete_elem(&dns_sockets, &key);
}

/* Whether thread `id` (pid_tgid), exiting, is its process's last. do_exit counts the group's
 * live threads down before this event, and closes the files after it. A legacy object reads
 * no kernel struct: there the leader's exit stands for the process's (a leader that exits
 * before its threads ends the process's DNS early: its sockets' later queries and answers are
 * the exited process's, not counted twice). */
static __always_inline bool kc_dns_last_thread(__u64 id)
{
#if KC_CORE
	struct task_struct *task = (void *)bpf_get_current_task();

	return BPF_CORE_READ(task, signal, live.counter) == 0;
#else
	return (__u32)id == id >> 32;
#endif
}

/* A thread exits: the last of its process closes the process's files, and with them its DNS
 * sockets, without close(2). Their queries still waiting count as timeouts (return mode); the
 * row stays, so that those sockets' entries are known as the exited process's. */
static __always_inline void kc_dns_on_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct kc_dns_process *p = bpf_map_lookup_elem(&dns_processes, &tgid);

	if (!p || !kc_dns_last_thread(id))
		return;
#if KC_RETURN_MODE
	{
		__s32 pending = p->pending;

		if (pending > 0)
			kc_dns_timed_out(pending, p->several_servers, &p->server);
	}
#endif
	p->pending = 0;
	p->several_servers = 0;
	p->server.family = 0;
	p->exited = bpf_ktime_get_ns();
}

KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_connect, , connect, kc_dns_on_connect(a0, (void *)a1))
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_query, _sendto, sendto, kc_dns_on_send(a0, a1, a2, 0, (void *)a4))
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_query, _sendmsg, sendmsg, kc_dns_on_sendmsg(a0, (void *)a1))
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_query, _sendmmsg, sendmmsg, kc_dns_on_sendmmsg(a0, (void *)a1, a2))
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_query, _write, write, kc_dns_on_write(a0, a1, a2))
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_query, _writev, writev, kc_dns_on_writev(a0, a1, a2))
#if KC_RETURN_MODE
KC_SYSCALL_ARGS6_AS(kc_dns_response, _recvfrom, recvfrom, kc_dns_recv_begin(a0, a1, a4, a4 ? a5 : 0),
		   kc_dns_recv_end(ret))
KC_SYSCALL_ARGS_AS(kc_dns_response, _recvmsg, recvmsg, kc_dns_recvmsg_begin(a0, (void *)a1),
		   kc_dns_recv_end(ret))
KC_SYSCALL_ARGS_AS(kc_dns_response, _read, read, kc_dns_recv_begin(a0, a1, 0, 0), kc_dns_recv_end(ret))
#endif
KC_SYSCALL_ENTRY_ARGS_AS(kc_dns_close, , close, kc_dns_on_close(a0))
KC_TP_COUNT(kc_dns_exit, sched, sched_process_exit, kc_dns_on_exit())
