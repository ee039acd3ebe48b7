/* SPDX-License-Identifier: GPL-2.0 */
/* netdev: packets and bytes handed to network device drivers, the ones a driver refused
 * (a transmit error: a full queue, a device going down), and packets and bytes the stack
 * received from drivers. Errors at the device show here before any socket sees them.
 * Families: net/net_dev_xmit and net/netif_receive_skb as tp_btf (trampoline) or classic
 * (tracepoint); no probe: dev_hard_start_xmit and __netif_receive_skb_core are where the
 * tracepoints fire, with nothing more to read. Totals only: both run in softirq context. */

KC_TOTALS(netdev, netdev)

static __always_inline void kc_netdev_sent(int rc, __u32 len)
{
	kc_netdev_count2(KC_NETDEV_XMIT, 1, KC_NETDEV_XMIT_BYTES, len);
	if (rc) /* NETDEV_TX_OK is 0; anything else is the driver's refusal */
		kc_netdev_count(KC_NETDEV_XMIT_ERROR, 1);
}

static __always_inline void kc_netdev_received(__u32 len)
{
	kc_netdev_count2(KC_NETDEV_RECEIVE, 1, KC_NETDEV_RECEIVE_BYTES, len);
}

#if KC_CORE
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(kc_netdev_xmit__trampoline, struct sk_buff *skb, int rc, struct net_device *dev,
	     unsigned int skb_len)
{
	kc_netdev_sent(rc, skb_len);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(kc_netdev_receive__trampoline, struct sk_buff *skb)
{
	kc_netdev_received(skb->len); /* a typed pointer: read directly (see schedlat) */
	return 0;
}
#endif

SEC("tracepoint/net/net_dev_xmit")
int kc_netdev_xmit__tracepoint(struct trace_event_raw_net_dev_xmit *ctx)
{
	kc_netdev_sent(KC_READ(ctx, rc), KC_READ(ctx, len));
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int kc_netdev_receive__tracepoint(struct trace_event_raw_net_dev_template *ctx)
{
	kc_netdev_received(KC_READ(ctx, len));
	return 0;
}
