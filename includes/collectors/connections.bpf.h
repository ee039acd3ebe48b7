/* SPDX-License-Identifier: GPL-2.0 */
/* connections: a table of TCP and UDP flows and a stream of their closes. A flow is a socket, keyed by
 * its address: connect sets SYN_SENT before it picks the source port, so a 5-tuple is not known
 * at the start, and a socket is one flow however its tuple is learned. Listeners are not flows.
 * Events and families (see kc_bpf.h):
 *   state       sock/inet_sock_set_state, TCP's: tp_btf (trampoline, the tuple read from the
 *               socket), classic (tracepoint, the tuple from its record). Into SYN_SENT a
 *               connect (its process the owner: it runs in the connecting call), from LISTEN
 *               into SYN_RECV a listener's child, any other state change of an unknown socket a
 *               flow from before the programs were attached
 *   retransmit  tcp_retransmit_skb (trampoline: tp_btf; probe: the function; tracepoint)
 *   accept      inet_csk_accept's return (trampoline, probe; return mode): the process that
 *               accepts a child becomes its owner (the child was made in softirq)
 *   io          tcp_sendmsg's entry and tcp_cleanup_rbuf (trampoline, probe), sock/sock_{send,
 *               recv}_length (tracepoint, 6.3 and later): the row's counts read again, and its
 *               owner where none is known yet; CO-RE objects only (they alone read the counts)
 *   stream      into CLOSE, as state: the row with its final counts moves to connections_closed
 *   udp         UDP flows (CO-RE only; trampoline, probe): a datagram sent (udp_sendmsg,
 *               udpv6_sendmsg: their return), received (skb_consume_udp: IPv4's and IPv6's, once
 *               per datagram a receive takes, as the kernel counts InDatagrams), and the
 *               socket destroyed (udp_destroy_sock, udpv6_destroy_sock). One event: a family
 *               that sees a UDP flow's datagrams sees its end. No tracepoint sees a UDP
 *               socket's end, so the tracepoint family has no UDP flows (a row would outlive
 *               its socket, and a later socket at its address would merge into it).
 *   stream      into CLOSE, as state: the row with its final counts moves to connections_closed
 *   udp_stream  a UDP socket destroyed (trampoline, probe): its row moves to connections_closed;
 *               where no family runs it (or without streams), the row stays, closed, in the
 *               table
 * The TCP counts (bytes, segments, retransmits) are tcp_sock's own, read through CO-RE: a legacy
 * object would read them at its bucket's offsets, which later kernels of the bucket move. Its
 * rows say so (KC_FLOW_KNOWN_COUNTS clear). UDP flows are CO-RE only, for the same reason: their
 * tuple is the socket's. A UDP socket is a flow once it sends or receives a datagram. */

#include <bpf/bpf_endian.h>

KC_TOTALS(connections, connections)

#define KC_CONN_IPPROTO_TCP 6
#define KC_CONN_IPPROTO_UDP 17

/* Only ever a pointer here (a key): the older buckets' base headers do not declare it. */
struct sock;

/* The kernel's TCP states (include/net/tcp_states.h). */
enum {
	KC_TCP_STATE_ESTABLISHED = 1,
	KC_TCP_STATE_SYN_SENT = 2,
	KC_TCP_STATE_CLOSE = 7,
	KC_TCP_STATE_LISTEN = 10,
};

/* Default rows of the flow table: an agent sizes it for its host before load (kc-loader
 * --flow-table-size). An LRU: a full table forgets the flow idle longest, counted as an
 * eviction (the counters' comment in kc_collectors.h). */
#define KC_FLOW_ENTRIES 2048

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kc_flow);
	__uint(max_entries, KC_FLOW_ENTRIES);
} connections_flows SEC(".maps");

/* 64 KiB: 450 closes (144 bytes and a header each) between two polls of the consumer; `bench
 * stream --collector connections` streamed the 200,000 closes of 100,000 connections in 3.4 s
 * with none lost, as with 256 KiB. */
KC_STREAM_MAP(connections_closed, kc_flow_close, 64 * 1024);

static __always_inline void kc_flow_owner(struct kc_flow *f)
{
	f->tgid = bpf_get_current_pid_tgid() >> 32;
	f->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(f->comm, sizeof(f->comm));
	f->known |= KC_FLOW_KNOWN_OWNER;
}

/* The socket's own counts, now. `typed`: the socket as a pointer the verifier knows (a
 * trampoline's argument), read as a struct tcp_sock with plain loads; NULL where the program has
 * only its address (tracepoints, probes), read through a helper call a field. Converted here,
 * once a row is found: a send on a socket without one pays no conversion. */
static __always_inline void kc_flow_counts(struct kc_flow *f, __u64 sock, void *typed)
{
#if KC_CORE
	struct tcp_sock *tp = typed ? bpf_skc_to_tcp_sock(typed) : NULL;

	if (tp) {
		f->bytes_sent = tp->bytes_sent;
		f->bytes_received = tp->bytes_received;
		f->segs_out = tp->segs_out;
		f->segs_in = tp->segs_in;
		f->retransmits = tp->total_retrans;
	} else {
		tp = (struct tcp_sock *)sock;
		f->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
		f->bytes_received = BPF_CORE_READ(tp, bytes_received);
		f->segs_out = BPF_CORE_READ(tp, segs_out);
		f->segs_in = BPF_CORE_READ(tp, segs_in);
		f->retransmits = BPF_CORE_READ(tp, total_retrans);
	}
	f->known |= KC_FLOW_KNOWN_COUNTS;
#endif
}

/* A new flow `seen` of `sock` into the table; `f`: the row the socket's address holds now, if
 * any. Counted by protocol (tracked, untracked; udp_*): each under its own event, so that a
 * run whose TCP state changes no family observes still knows the rows it inserted. */
static __always_inline void kc_flow_insert(__u64 sock, struct kc_flow *f, const struct kc_flow *seen)
{
	int udp = seen->protocol == KC_CONN_IPPROTO_UDP;
	long err;

	if (f) {
		/* A new flow in a socket whose memory still holds a row: a closed flow not yet read
		 * (without a stream), or whose close the ring had no room for. The row gives way, as
		 * an eviction does: an insertion the table no longer holds. */
		*f = *seen;
		kc_connections_count(udp ? KC_CONNECTIONS_UDP_TRACKED : KC_CONNECTIONS_TRACKED, 1);
		return;
	}
	err = bpf_map_update_elem(&connections_flows, &sock, seen, BPF_NOEXIST);
	if (!err)
		kc_connections_count(udp ? KC_CONNECTIONS_UDP_TRACKED : KC_CONNECTIONS_TRACKED, 1);
	else if (err != -17 /* EEXIST: another CPU added it */)
		kc_connections_count(udp ? KC_CONNECTIONS_UDP_UNTRACKED : KC_CONNECTIONS_UNTRACKED, 1);
}

/* What a state change of `sock` says, as a row: its tuple and new state (`seen`). Counts the
 * opens and closes, and adds or updates the flow's row. */
static __always_inline void kc_connections_on_state(__u64 sock, void *typed, int oldstate, struct kc_flow *seen)
{
	int newstate = seen->state;
	__u64 now = bpf_ktime_get_ns();
	struct kc_flow *f;
	int opens;

	if (newstate == KC_TCP_STATE_LISTEN || (oldstate == KC_TCP_STATE_LISTEN && newstate == KC_TCP_STATE_CLOSE))
		return;
	if (newstate == KC_TCP_STATE_SYN_SENT)
		kc_connections_count(KC_CONNECTIONS_TCP_ACTIVE, 1);
	else if (oldstate == KC_TCP_STATE_LISTEN)
		kc_connections_count(KC_CONNECTIONS_TCP_PASSIVE, 1);
	else if (newstate == KC_TCP_STATE_CLOSE)
		kc_connections_count(KC_CONNECTIONS_TCP_CLOSED, 1);

	opens = newstate == KC_TCP_STATE_SYN_SENT || oldstate == KC_TCP_STATE_LISTEN;
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	if (f && !opens) {
		f->state = newstate;
		f->last_ns = now;
		/* The tuple is whole only after the first state: a connect enters SYN_SENT before it
		 * picks its source port, a listener's child enters SYN_RECV before it is given its
		 * peer's address and port. */
		if (seen->sport && seen->dport) {
			__builtin_memcpy(f->saddr, seen->saddr, sizeof(f->saddr));
			__builtin_memcpy(f->daddr, seen->daddr, sizeof(f->daddr));
			f->sport = seen->sport;
			f->dport = seen->dport;
		}
		kc_flow_counts(f, sock, typed);
		return;
	}
	/* A close of a flow not in the table (streamed already, or never seen) adds nothing. */
	if (newstate == KC_TCP_STATE_CLOSE)
		return;
	if (newstate == KC_TCP_STATE_SYN_SENT) {
		seen->direction = KC_FLOW_CONNECT;
		kc_flow_owner(seen);
	} else if (oldstate == KC_TCP_STATE_LISTEN) {
		seen->direction = KC_FLOW_ACCEPT;
	}
	seen->first_ns = now;
	seen->last_ns = now;
	kc_flow_counts(seen, sock, typed);
	kc_flow_insert(sock, f, seen);
}

/* A close's record: the flow's row `f` (NULL where the table never held the flow: what the event
 * says, `seen`), closed now. Not inlined: its prototype is what puts struct
 * kc_flow_close into the object's BTF, where the plan and agents find the records' layout (a
 * ring buffer's definition cannot name a value type). */
static KC_NOINLINE int kc_flow_close_record(struct kc_flow_close *r, const struct kc_flow *f, const struct kc_flow *seen,
					    __u64 sock)
{
	__u64 now = bpf_ktime_get_ns();

	r->sock = sock;
	r->has_row = f != NULL;
	r->reserved = 0;
	if (f) {
		r->flow = *f;
	} else {
		r->flow = *seen;
		r->flow.first_ns = now;
	}
	r->flow.state = KC_TCP_STATE_CLOSE;
	r->flow.last_ns = now;
	return 0;
}

/* A flow into CLOSE: its record goes to the stream, and its row leaves the table. A close the
 * ring has no room for leaves the row, closed, in the table (the state event marks it). */
static __always_inline void kc_connections_stream_close(__u64 sock, void *typed, int oldstate, struct kc_flow *seen)
{
	struct kc_flow_close *r;
	struct kc_flow *f;

	if (seen->state != KC_TCP_STATE_CLOSE || oldstate == KC_TCP_STATE_LISTEN)
		return;
	r = bpf_ringbuf_reserve(&connections_closed, sizeof(*r), 0);
	if (!r) {
		kc_connections_count(KC_CONNECTIONS_STREAM_LOST, 1);
		return;
	}
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	kc_flow_close_record(r, f, seen, sock);
	kc_flow_counts(&r->flow, sock, typed);
	if (f)
		bpf_map_delete_elem(&connections_flows, &sock);
	kc_connections_count(KC_CONNECTIONS_STREAMED, 1);
	bpf_ringbuf_submit(r, kc_stream_wakeup(&connections_closed));
}

/* The tuple and new state, from the tracepoint's record (read in place). */
static __always_inline int kc_flow_from_record(struct kc_flow *f, struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != KC_CONN_IPPROTO_TCP)
		return 0;
	__builtin_memset(f, 0, sizeof(*f));
	f->protocol = KC_CONN_IPPROTO_TCP;
	f->family = ctx->family;
	f->sport = ctx->sport;
	f->dport = ctx->dport;
	f->state = ctx->newstate;
	/* IPv6's through a helper: a copy of 16 bytes in place loads through a pointer moved
	 * into the record, which 5.10's verifier refuses ("dereference of modified ctx ptr"). */
	if (f->family == AF_INET6) {
		bpf_probe_read_kernel(f->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(f->daddr, 16, ctx->daddr_v6);
	} else {
		__builtin_memcpy(f->saddr, ctx->saddr, 4);
		__builtin_memcpy(f->daddr, ctx->daddr, 4);
	}
	return 1;
}

#define KC_CONNECTIONS_ON_RECORD(ev, handle)                                                   \
	SEC("tracepoint/sock/inet_sock_set_state")                                             \
	int ev##__tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)                  \
	{                                                                                      \
		struct kc_flow seen;                                                           \
                                                                                               \
		if (kc_flow_from_record(&seen, ctx))                                           \
			handle((__u64)ctx->skaddr, NULL, ctx->oldstate, &seen);                \
		return 0;                                                                      \
	}

KC_CONNECTIONS_ON_RECORD(kc_connections_state, kc_connections_on_state)
KC_CONNECTIONS_ON_RECORD(kc_connections_stream, kc_connections_stream_close)

/* A retransmit's record: the socket's address is its second field, in every kernel's layout. */
struct kc_tcp_retransmit_record {
	__u64 entry;
	const void *skbaddr;
	const void *skaddr;
};

static __always_inline void kc_connections_on_retransmit(__u64 sock, void *typed)
{
	struct kc_flow *f = bpf_map_lookup_elem(&connections_flows, &sock);

	kc_connections_count(KC_CONNECTIONS_TCP_RETRANSMIT, 1);
	if (f) {
		f->last_ns = bpf_ktime_get_ns();
		kc_flow_counts(f, sock, typed);
	}
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int kc_connections_retransmit__tracepoint(struct kc_tcp_retransmit_record *ctx)
{
	kc_connections_on_retransmit((__u64)ctx->skaddr, NULL);
	return 0;
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(kc_connections_retransmit__probe, struct sock *sk)
{
	kc_connections_on_retransmit((__u64)sk, NULL);
	return 0;
}

/* The accepted child's owner: the process that accepts it. */
static __always_inline void kc_connections_on_accept(__u64 sock, void *typed)
{
	struct kc_flow *f;

	if (!sock)
		return;
	kc_connections_count(KC_CONNECTIONS_ACCEPTED, 1);
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	if (f) {
		kc_flow_owner(f);
		f->last_ns = bpf_ktime_get_ns();
		kc_flow_counts(f, sock, typed);
	}
}

/* 4 arguments before 6.10 (sk, flags, err, kern); from 5.17 on, the return comes by helper. */
KC_FUNC_RETURN(kc_connections_accept, inet_csk_accept, struct sock *, kc_connections_on_accept((__u64)ret, NULL), 4)

#if KC_CORE
/* The tuple and new state of socket `sk`, whose state is changing to `newstate`: a pointer the
 * verifier knows, read with plain loads (a helper call a field cost ~20 ns each). */
static __always_inline void kc_flow_tuple(struct kc_flow *f, struct sock *sk)
{
	f->family = sk->__sk_common.skc_family;
	f->sport = sk->__sk_common.skc_num;
	f->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (f->family == AF_INET6) {
		struct in6_addr saddr = sk->__sk_common.skc_v6_rcv_saddr, daddr = sk->__sk_common.skc_v6_daddr;

		__builtin_memcpy(f->saddr, &saddr, 16);
		__builtin_memcpy(f->daddr, &daddr, 16);
	} else {
		__u32 saddr = sk->__sk_common.skc_rcv_saddr, daddr = sk->__sk_common.skc_daddr;

		__builtin_memcpy(f->saddr, &saddr, 4);
		__builtin_memcpy(f->daddr, &daddr, 4);
	}
}

static __always_inline int kc_flow_from_sock(struct kc_flow *f, struct sock *sk, int newstate)
{
	if (sk->sk_protocol != KC_CONN_IPPROTO_TCP)
		return 0;
	__builtin_memset(f, 0, sizeof(*f));
	f->protocol = KC_CONN_IPPROTO_TCP;
	f->state = newstate;
	kc_flow_tuple(f, sk);
	return 1;
}

#define KC_CONNECTIONS_ON_SOCK(ev, handle)                                                          \
	SEC("tp_btf/inet_sock_set_state")                                                           \
	int BPF_PROG(ev##__trampoline, struct sock *sk, int oldstate, int newstate)                 \
	{                                                                                           \
		struct kc_flow seen;                                                                \
                                                                                                    \
		if (kc_flow_from_sock(&seen, sk, newstate))                                         \
			handle((__u64)sk, sk, oldstate, &seen);                                      \
		return 0;                                                                           \
	}

KC_CONNECTIONS_ON_SOCK(kc_connections_state, kc_connections_on_state)
KC_CONNECTIONS_ON_SOCK(kc_connections_stream, kc_connections_stream_close)

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(kc_connections_retransmit__trampoline, struct sock *sk)
{
	kc_connections_on_retransmit((__u64)sk, sk);
	return 0;
}

/* A send or receive on `sock`: its row's counts as they are now, and its owner if unknown (a
 * child accepted before the programs were attached, or in the tracepoint family). */
static __always_inline void kc_connections_on_io(__u64 sock, void *typed)
{
	struct kc_flow *f = bpf_map_lookup_elem(&connections_flows, &sock);

	if (!f)
		return;
	if (!(f->known & KC_FLOW_KNOWN_OWNER))
		kc_flow_owner(f);
	f->last_ns = bpf_ktime_get_ns();
	kc_flow_counts(f, sock, typed);
}

#define KC_CONNECTIONS_IO_FN(role, fn)                                              \
	SEC("fentry/" #fn) int BPF_PROG(kc_connections_io__trampoline_##role, struct sock *sk) \
	{                                                                             \
		kc_connections_on_io((__u64)sk, sk);                                  \
		return 0;                                                             \
	}                                                                             \
	SEC("kprobe/" #fn) int BPF_KPROBE(kc_connections_io__probe_##role, struct sock *sk) \
	{                                                                             \
		kc_connections_on_io((__u64)sk, NULL);                                \
		return 0;                                                             \
	}

#define KC_CONNECTIONS_IO_TP(role, tp)                                                      \
	SEC("tracepoint/sock/" #tp)                                                         \
	int kc_connections_io__tracepoint_##role(struct trace_event_raw_sock_msg_length *ctx) \
	{                                                                                   \
		if (ctx->protocol == KC_CONN_IPPROTO_TCP)                                   \
			kc_connections_on_io((__u64)ctx->sk, NULL);                         \
		return 0;                                                                   \
	}

KC_CONNECTIONS_IO_FN(send, tcp_sendmsg)
KC_CONNECTIONS_IO_FN(recv, tcp_cleanup_rbuf)
KC_CONNECTIONS_IO_TP(send, sock_send_length)
KC_CONNECTIONS_IO_TP(recv, sock_recv_length)

/* UDP flows. A socket's tuple read through its address (a probe's argument): helper calls. */
static __always_inline void kc_flow_tuple_read(struct kc_flow *f, struct sock *sk)
{
	f->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	f->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	f->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (f->family == AF_INET6) {
		BPF_CORE_READ_INTO(&f->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&f->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)f->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)f->daddr, sk, __sk_common.skc_daddr);
	}
}

/* Whether `sk` is a UDP socket (not UDP-Lite, which shares the receive path), and its tuple now
 * into `seen`: plain loads where `typed` (a trampoline's argument), else helper calls. */
static __always_inline int kc_udp_seen(struct kc_flow *seen, struct sock *sk, int typed)
{
	__builtin_memset(seen, 0, sizeof(*seen));
	if (typed) {
		if (sk->sk_protocol != KC_CONN_IPPROTO_UDP)
			return 0;
		kc_flow_tuple(seen, sk);
	} else {
		if (BPF_CORE_READ(sk, sk_protocol) != KC_CONN_IPPROTO_UDP)
			return 0;
		kc_flow_tuple_read(seen, sk);
	}
	seen->protocol = KC_CONN_IPPROTO_UDP;
	seen->state = KC_TCP_STATE_ESTABLISHED;
	return 1;
}

/* A datagram of `bytes` sent (`sent`) or received through UDP socket `sk`: the flow's row, added
 * at the first (its owner the process sending or receiving; `connect` direction if it spoke
 * first, `accept` if it heard first), its tuple as the socket's now (a socket may connect
 * after its first datagram), its datagrams counted. A failed send (bytes < 0) is none. */
static __always_inline void kc_connections_on_udp(struct sock *sk, int typed, int sent, long bytes)
{
	__u64 sock = (__u64)sk, now;
	struct kc_flow seen, *f;

	if (bytes < 0 || !kc_udp_seen(&seen, sk, typed))
		return;
	kc_connections_count(sent ? KC_CONNECTIONS_UDP_SENT : KC_CONNECTIONS_UDP_RECEIVED, 1);
	now = bpf_ktime_get_ns();
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	if (!f || f->state == KC_TCP_STATE_CLOSE || f->protocol != KC_CONN_IPPROTO_UDP) {
		seen.direction = sent ? KC_FLOW_CONNECT : KC_FLOW_ACCEPT;
		seen.known = KC_FLOW_KNOWN_DATAGRAMS;
		kc_flow_owner(&seen);
		seen.first_ns = now;
		seen.last_ns = now;
		if (sent) {
			seen.segs_out = 1;
			seen.bytes_sent = bytes;
		} else {
			seen.segs_in = 1;
			seen.bytes_received = bytes;
		}
		kc_flow_insert(sock, f, &seen);
		return;
	}
	__builtin_memcpy(f->saddr, seen.saddr, sizeof(f->saddr));
	__builtin_memcpy(f->daddr, seen.daddr, sizeof(f->daddr));
	f->sport = seen.sport;
	f->dport = seen.dport;
	f->last_ns = now;
	if (sent) {
		__sync_fetch_and_add(&f->segs_out, 1);
		__sync_fetch_and_add(&f->bytes_sent, bytes);
	} else {
		__sync_fetch_and_add(&f->segs_in, 1);
		__sync_fetch_and_add(&f->bytes_received, bytes);
	}
}

/* A UDP socket destroyed: its flow, if it was one, closed in the table (the stream event, where
 * it runs, moves the row out). */
static __always_inline void kc_connections_on_udp_close(struct sock *sk)
{
	__u64 sock = (__u64)sk;
	struct kc_flow *f;

	if (BPF_CORE_READ(sk, sk_protocol) != KC_CONN_IPPROTO_UDP)
		return;
	kc_connections_count(KC_CONNECTIONS_UDP_CLOSED, 1);
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	if (f && f->protocol == KC_CONN_IPPROTO_UDP) {
		f->state = KC_TCP_STATE_CLOSE;
		f->last_ns = bpf_ktime_get_ns();
	}
}

/* udpv6_sendmsg sends a datagram to an IPv4-mapped address through udp_sendmsg: the IPv6
 * socket's datagram is counted at udpv6_sendmsg's return, once. */
SEC("fexit/udp_sendmsg")
int BPF_PROG(kc_connections_udp__trampoline_send4, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	if (sk->__sk_common.skc_family != AF_INET6)
		kc_connections_on_udp(sk, 1, 1, ret);
	return 0;
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(kc_connections_udp__trampoline_send6, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	kc_connections_on_udp(sk, 1, 1, ret);
	return 0;
}

/* len: the bytes the receive returns; negative for a peek, which takes nothing. */
SEC("fentry/skb_consume_udp")
int BPF_PROG(kc_connections_udp__trampoline_recv, struct sock *sk, struct sk_buff *skb, int len)
{
	kc_connections_on_udp(sk, 1, 0, len);
	return 0;
}

/* A socket's end is rare: both families read it through helper calls. */
KC_FUNC_ENTRY_AS(kc_connections_udp, _close4, udp_destroy_sock, kc_connections_on_udp_close(sk), struct sock *sk)
KC_FUNC_ENTRY_AS(kc_connections_udp, _close6, udpv6_destroy_sock, kc_connections_on_udp_close(sk), struct sock *sk)

/* Probes: a send's socket, by thread, from its entry to its return; `v6` marks udpv6_sendmsg's,
 * which an inner udp_sendmsg (an IPv4-mapped peer) leaves alone. */
struct kc_udp_send {
	__u64 sock;
	__u64 v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kc_udp_send);
	__uint(max_entries, 1024);
} connections_udp_sends SEC(".maps");

static __always_inline void kc_udp_send_enter(struct sock *sk, int v6)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct kc_udp_send s = { (__u64)sk, v6 };

	if (!v6 && BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6)
		return;
	bpf_map_update_elem(&connections_udp_sends, &tid, &s, BPF_ANY);
}

static __always_inline void kc_udp_send_return(int v6, long ret)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct kc_udp_send *s = bpf_map_lookup_elem(&connections_udp_sends, &tid);

	if (!s || s->v6 != v6)
		return;
	kc_connections_on_udp((struct sock *)s->sock, 0, 1, ret);
	bpf_map_delete_elem(&connections_udp_sends, &tid);
}

#define KC_CONNECTIONS_UDP_SEND_PROBES(role, fn, v6)                                   \
	SEC("kprobe/" #fn) int BPF_KPROBE(kc_connections_udp__probe_##role, struct sock *sk) \
	{                                                                               \
		kc_udp_send_enter(sk, v6);                                              \
		return 0;                                                               \
	}                                                                               \
	SEC("kretprobe/" #fn) int BPF_KRETPROBE(kc_connections_udp__probe_##role##_ret, int ret) \
	{                                                                               \
		kc_udp_send_return(v6, ret);                                            \
		return 0;                                                               \
	}

KC_CONNECTIONS_UDP_SEND_PROBES(send4, udp_sendmsg, 0)
KC_CONNECTIONS_UDP_SEND_PROBES(send6, udpv6_sendmsg, 1)

SEC("kprobe/skb_consume_udp")
int BPF_KPROBE(kc_connections_udp__probe_recv, struct sock *sk, struct sk_buff *skb, int len)
{
	kc_connections_on_udp(sk, 0, 0, len);
	return 0;
}

/* A UDP flow's end into the stream: its row, removed from the table. A socket that never was a
 * flow has nothing to stream. An event of its own (not `stream`'s): a kernel whose tp_btf
 * works but whose fentry does not (this project's host) streams TCP's closes in the trampoline
 * family still. */
static __always_inline void kc_connections_udp_close_record(struct sock *sk)
{
	__u64 sock = (__u64)sk;
	struct kc_flow_close *r;
	struct kc_flow *f;

	if (BPF_CORE_READ(sk, sk_protocol) != KC_CONN_IPPROTO_UDP)
		return;
	f = bpf_map_lookup_elem(&connections_flows, &sock);
	if (!f || f->protocol != KC_CONN_IPPROTO_UDP)
		return;
	r = bpf_ringbuf_reserve(&connections_closed, sizeof(*r), 0);
	if (!r) {
		kc_connections_count(KC_CONNECTIONS_UDP_STREAM_LOST, 1);
		return;
	}
	kc_flow_close_record(r, f, f, sock);
	bpf_map_delete_elem(&connections_flows, &sock);
	kc_connections_count(KC_CONNECTIONS_UDP_STREAMED, 1);
	bpf_ringbuf_submit(r, kc_stream_wakeup(&connections_closed));
}

KC_FUNC_ENTRY_AS(kc_connections_udp_stream, _close4, udp_destroy_sock, kc_connections_udp_close_record(sk),
		 struct sock *sk)
KC_FUNC_ENTRY_AS(kc_connections_udp_stream, _close6, udpv6_destroy_sock, kc_connections_udp_close_record(sk),
		 struct sock *sk)
#endif
