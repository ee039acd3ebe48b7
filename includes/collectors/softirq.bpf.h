/* SPDX-License-Identifier: GPL-2.0 */
/* softirq: softirqs run, and in return mode their latency per vector (NET_RX, TIMER, ...).
 * Families: irq/softirq_{entry,exit} as tp_btf (trampoline) or classic (tracepoint). */

/* Totals only, no per-application table: these events run in interrupt context, where the
 * current task is whichever was interrupted. */
KC_TOTALS(softirq, irq)

#if KC_RETURN_MODE
KC_START_MAP(softirq_starts, __u64);
KC_HIST_MAP(softirq_latency);
#endif

static __always_inline __u64 kc_softirq_key(__u32 vec)
{
	return ((__u64)bpf_get_smp_processor_id() << 32) | vec;
}

static __always_inline void kc_softirq_on_entry(__u32 vec)
{
	kc_softirq_count(KC_IRQ_ENTRY, 1);
#if KC_RETURN_MODE
	__u64 key = kc_softirq_key(vec);

	kc_start(&softirq_starts, &key);
#endif
}

static __always_inline void kc_softirq_on_exit(__u32 vec)
{
#if KC_RETURN_MODE
	__u64 key = kc_softirq_key(vec);
	__u64 ns = kc_elapsed(&softirq_starts, &key);

	kc_softirq_count(KC_IRQ_EXIT, 1);
	if (ns)
		kc_hist_add(&softirq_latency, vec, ns);
#endif
}

KC_IF_TRAMPOLINE(SEC("tp_btf/softirq_entry") int BPF_PROG(kc_softirq_entry__trampoline, unsigned int vec)
		 {
			 kc_softirq_on_entry(vec);
			 return 0;
		 })

SEC("tracepoint/irq/softirq_entry")
int kc_softirq_entry__tracepoint(struct trace_event_raw_softirq *ctx)
{
	kc_softirq_on_entry(KC_READ(ctx, vec));
	return 0;
}

#if KC_RETURN_MODE
KC_IF_TRAMPOLINE(SEC("tp_btf/softirq_exit") int BPF_PROG(kc_softirq_exit__trampoline, unsigned int vec)
		 {
			 kc_softirq_on_exit(vec);
			 return 0;
		 })

SEC("tracepoint/irq/softirq_exit")
int kc_softirq_exit__tracepoint(struct trace_event_raw_softirq *ctx)
{
	kc_softirq_on_exit(KC_READ(ctx, vec));
	return 0;
}
#endif
