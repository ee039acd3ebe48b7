/* SPDX-License-Identifier: GPL-2.0 */
/* softirq: softirqs run, and in return mode their latency per vector (NET_RX, TIMER, ...). */

KC_COUNTERS(softirq_counters, KC_IRQ_END);

#if KC_RETURN_MODE
KC_START_MAP(softirq_starts, __u64);
KC_HIST_MAP(softirq_latency);

static __always_inline __u64 kc_softirq_key(__u32 vec)
{
	return ((__u64)bpf_get_smp_processor_id() << 32) | vec;
}
#endif

SEC("tracepoint/irq/softirq_entry")
int kc_softirq_entry(struct trace_event_raw_softirq *ctx)
{
	kc_add(&softirq_counters, KC_IRQ_ENTRY, 1);
#if KC_RETURN_MODE
	__u64 key = kc_softirq_key(KC_READ(ctx, vec));

	kc_start(&softirq_starts, &key);
#endif
	return 0;
}

#if KC_RETURN_MODE
SEC("tracepoint/irq/softirq_exit")
int kc_softirq_exit(struct trace_event_raw_softirq *ctx)
{
	__u32 vec = KC_READ(ctx, vec);
	__u64 key = kc_softirq_key(vec);
	__u64 ns = kc_elapsed(&softirq_starts, &key);

	kc_add(&softirq_counters, KC_IRQ_EXIT, 1);
	if (ns)
		kc_hist_add(&softirq_latency, vec, ns);
	return 0;
}
#endif
