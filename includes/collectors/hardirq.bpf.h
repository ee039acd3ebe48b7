/* SPDX-License-Identifier: GPL-2.0 */
/* hardirq: interrupt handlers run, and in return mode their latency per IRQ number. */

KC_COUNTERS(hardirq_counters, KC_IRQ_END);

#if KC_RETURN_MODE
KC_START_MAP(hardirq_starts, __u64);
KC_HIST_MAP(hardirq_latency);

/* Handlers of one IRQ do not nest on a CPU: (cpu, irq) names a running handler. */
static __always_inline __u64 kc_hardirq_key(__u32 irq)
{
	return ((__u64)bpf_get_smp_processor_id() << 32) | irq;
}
#endif

SEC("tracepoint/irq/irq_handler_entry")
int kc_hardirq_entry(struct trace_event_raw_irq_handler_entry *ctx)
{
	kc_add(&hardirq_counters, KC_IRQ_ENTRY, 1);
#if KC_RETURN_MODE
	__u64 key = kc_hardirq_key(KC_READ(ctx, irq));

	kc_start(&hardirq_starts, &key);
#endif
	return 0;
}

#if KC_RETURN_MODE
SEC("tracepoint/irq/irq_handler_exit")
int kc_hardirq_exit(struct trace_event_raw_irq_handler_exit *ctx)
{
	__u32 irq = KC_READ(ctx, irq);
	__u64 key = kc_hardirq_key(irq);
	__u64 ns = kc_elapsed(&hardirq_starts, &key);

	kc_add(&hardirq_counters, KC_IRQ_EXIT, 1);
	if (ns)
		kc_hist_add(&hardirq_latency, irq, ns);
	return 0;
}
#endif
