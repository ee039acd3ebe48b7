/* SPDX-License-Identifier: GPL-2.0 */
/* socket: TCP and UDP calls and bytes, TCP connects per address family, closes and
 * retransmits; return mode counts send/receive errors and UDP bytes received. */

KC_COUNTERS(socket_counters, KC_SOCKET_END);

#ifndef AF_INET
#define AF_INET 2
#endif

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kc_socket_tcp_sendmsg, struct sock *sk, void *msg, unsigned long size)
{
	kc_add(&socket_counters, KC_SOCKET_TCP_SEND, 1);
	kc_add(&socket_counters, KC_SOCKET_TCP_SEND_BYTES, size);
	return 0;
}

/* Called once a receive has copied `copied` bytes to user space. */
SEC("kprobe/tcp_cleanup_rbuf")
int BPF_KPROBE(kc_socket_tcp_cleanup_rbuf, struct sock *sk, int copied)
{
	if (copied <= 0)
		return 0;
	kc_add(&socket_counters, KC_SOCKET_TCP_RECV, 1);
	kc_add(&socket_counters, KC_SOCKET_TCP_RECV_BYTES, copied);
	return 0;
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(kc_socket_tcp_connect, struct sock *sk)
{
	__u16 family = KC_READ(sk, __sk_common.skc_family);

	kc_add(&socket_counters, family == AF_INET ? KC_SOCKET_TCP_CONNECT_V4 : KC_SOCKET_TCP_CONNECT_V6, 1);
	return 0;
}

SEC("kprobe/tcp_close")
int BPF_KPROBE(kc_socket_tcp_close)
{
	kc_add(&socket_counters, KC_SOCKET_TCP_CLOSE, 1);
	return 0;
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(kc_socket_tcp_retransmit)
{
	kc_add(&socket_counters, KC_SOCKET_TCP_RETRANSMIT, 1);
	return 0;
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(kc_socket_udp_sendmsg, struct sock *sk, void *msg, unsigned long len)
{
	kc_add(&socket_counters, KC_SOCKET_UDP_SEND, 1);
	kc_add(&socket_counters, KC_SOCKET_UDP_SEND_BYTES, len);
	return 0;
}

SEC("kprobe/udp_recvmsg")
int BPF_KPROBE(kc_socket_udp_recvmsg)
{
	kc_add(&socket_counters, KC_SOCKET_UDP_RECV, 1);
	return 0;
}

#if KC_RETURN_MODE
SEC("kretprobe/udp_recvmsg")
int BPF_KRETPROBE(kc_socket_udp_recvmsg_ret, long ret)
{
	if (ret < 0)
		kc_add(&socket_counters, KC_SOCKET_ERROR, 1);
	else
		kc_add(&socket_counters, KC_SOCKET_UDP_RECV_BYTES, ret);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kc_socket_tcp_sendmsg_ret, long ret)
{
	if (ret < 0)
		kc_add(&socket_counters, KC_SOCKET_ERROR, 1);
	return 0;
}
#endif
