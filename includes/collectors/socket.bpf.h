/* SPDX-License-Identifier: GPL-2.0 */
/* socket: TCP and UDP calls and bytes, TCP connects per address family, closes and
 * retransmits; return mode counts send/receive errors and UDP bytes received.
 * Families: the tcp_* and udp_* functions (trampoline, probe); tracepoints (tracepoint):
 *   sends, receives  sock/sock_{send,recv}_length by protocol (6.3 and later): bytes are those
 *                    transferred, and a failed send counts as an error, not as a call; UDP's
 *                    of IPv4 sockets only, as udp_sendmsg and udp_recvmsg see (IPv6's go
 *                    through udpv6_*) and as /proc/net/snmp's Udp counts
 *   connect, close   sock/inet_sock_set_state into SYN_SENT, into CLOSE
 *   retransmit       tcp/tcp_retransmit_skb */

KC_COLLECTOR(socket, socket)

#define KC_IPPROTO_TCP 6
#define KC_IPPROTO_UDP 17
#define KC_TCP_SYN_SENT 2
#define KC_TCP_CLOSE 7

#define KC_SOCKET(counter, n) kc_socket_count(counter, n)

static __always_inline void kc_socket_send(__u32 calls, __u32 bytes, long size)
{
	kc_socket_count2(calls, 1, bytes, size);
}

static __always_inline void kc_socket_tcp_received(int copied)
{
	if (copied > 0)
		kc_socket_send(KC_SOCKET_TCP_RECV, KC_SOCKET_TCP_RECV_BYTES, copied);
}

static __always_inline void kc_socket_udp_received(long ret)
{
	if (ret < 0)
		KC_SOCKET(KC_SOCKET_ERROR, 1);
	else
		KC_SOCKET(KC_SOCKET_UDP_RECV_BYTES, ret);
}

static __always_inline void kc_socket_connect(__u16 family)
{
	KC_SOCKET(family == AF_INET ? KC_SOCKET_TCP_CONNECT_V4 : KC_SOCKET_TCP_CONNECT_V6, 1);
}

KC_FUNC_ENTRY(kc_socket_tcp_send, tcp_sendmsg, kc_socket_send(KC_SOCKET_TCP_SEND, KC_SOCKET_TCP_SEND_BYTES, size),
	      struct sock *sk, void *msg, unsigned long size)
KC_FUNC_RETURN(kc_socket_tcp_send, tcp_sendmsg, int, kc_socket_error(ret, KC_SOCKET_ERROR), 3)

/* Called once a receive has copied `copied` bytes to user space. */
KC_FUNC_ENTRY(kc_socket_tcp_recv, tcp_cleanup_rbuf, kc_socket_tcp_received(copied), struct sock *sk, int copied)
KC_FUNC_ENTRY(kc_socket_tcp_connect, tcp_connect, kc_socket_connect(KC_READ(sk, __sk_common.skc_family)),
	      struct sock *sk)
KC_FUNC_ENTRY(kc_socket_tcp_close, tcp_close, KC_SOCKET(KC_SOCKET_TCP_CLOSE, 1))
KC_FUNC_ENTRY(kc_socket_tcp_retransmit, tcp_retransmit_skb, KC_SOCKET(KC_SOCKET_TCP_RETRANSMIT, 1))
KC_FUNC_ENTRY(kc_socket_udp_send, udp_sendmsg, kc_socket_send(KC_SOCKET_UDP_SEND, KC_SOCKET_UDP_SEND_BYTES, len),
	      struct sock *sk, void *msg, unsigned long len)
KC_FUNC_ENTRY(kc_socket_udp_recv, udp_recvmsg, KC_SOCKET(KC_SOCKET_UDP_RECV, 1))
/* 6 arguments before 5.19 (it dropped `noblock`); from 5.17 on, the return comes by helper. */
KC_FUNC_RETURN(kc_socket_udp_recv, udp_recvmsg, int, kc_socket_udp_received(ret), 6)

/* A send of `protocol` as sock_send_length reports it: the bytes sent, or an error. The
 * tracepoints' records are read in place (a classic tracepoint's context is its record; in
 * CO-RE objects the loads are relocated): a helper call per field cost ~20 ns each. */
static __always_inline void kc_socket_sent(struct trace_event_raw_sock_msg_length *ctx, __u16 protocol,
					   __u32 calls, __u32 bytes)
{
	int ret = ctx->ret;

	if (ctx->protocol != protocol || (protocol == KC_IPPROTO_UDP && ctx->family != AF_INET))
		return;
	if (ret < 0)
		KC_SOCKET(KC_SOCKET_ERROR, KC_RETURN_MODE);
	else
		kc_socket_send(calls, bytes, ret);
}

SEC("tracepoint/sock/sock_send_length")
int kc_socket_tcp_send__tracepoint(struct trace_event_raw_sock_msg_length *ctx)
{
	kc_socket_sent(ctx, KC_IPPROTO_TCP, KC_SOCKET_TCP_SEND, KC_SOCKET_TCP_SEND_BYTES);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int kc_socket_tcp_recv__tracepoint(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol == KC_IPPROTO_TCP)
		kc_socket_tcp_received(ctx->ret);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int kc_socket_tcp_connect__tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol == KC_IPPROTO_TCP && ctx->newstate == KC_TCP_SYN_SENT)
		kc_socket_connect(ctx->family);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int kc_socket_tcp_close__tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol == KC_IPPROTO_TCP && ctx->newstate == KC_TCP_CLOSE)
		KC_SOCKET(KC_SOCKET_TCP_CLOSE, 1);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int kc_socket_tcp_retransmit__tracepoint(void *ctx)
{
	KC_SOCKET(KC_SOCKET_TCP_RETRANSMIT, 1);
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int kc_socket_udp_send__tracepoint(struct trace_event_raw_sock_msg_length *ctx)
{
	kc_socket_sent(ctx, KC_IPPROTO_UDP, KC_SOCKET_UDP_SEND, KC_SOCKET_UDP_SEND_BYTES);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int kc_socket_udp_recv__tracepoint(struct trace_event_raw_sock_msg_length *ctx)
{
	if (ctx->protocol != KC_IPPROTO_UDP || ctx->family != AF_INET)
		return 0;
	KC_SOCKET(KC_SOCKET_UDP_RECV, 1);
	if (KC_RETURN_MODE)
		kc_socket_udp_received(ctx->ret);
	return 0;
}
