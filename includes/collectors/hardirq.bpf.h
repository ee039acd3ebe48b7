/* SPDX-License-Identifier: GPL-2.0 */
/* hardirq: interrupt handlers run, and in return mode their latency per IRQ number.
 * Families: irq/irq_handler_{entry,exit} as tp_btf (trampoline) or classic (tracepoint). */

/* Totals only, no per-application table: these events run in interrupt context, where the
 * current task is whichever was interrupted. */
KC_TOTALS(hardirq, irq)

#if KC_RETURN_MODE
KC_START_MAP(hardirq_starts, __u64);
KC_HIST_MAP(hardirq_latency);
#endif

/* Handlers of one IRQ do not nest on a CPU: (cpu, irq) names a running handler. */
static __always_inline __u64 kc_irq_key(__u32 irq)
{
	return ((__u64)bpf_get_smp_processor_id() << 32) | irq;
}

static __always_inline void kc_hardirq_on_entry(__u32 irq)
{
	kc_hardirq_count(KC_IRQ_ENTRY, 1);
#if KC_RETURN_MODE
	__u64 key = kc_irq_key(irq);

	kc_start(&hardirq_starts, &key);
#endif
}

static __always_inline void kc_hardirq_on_exit(__u32 irq)
{
#if KC_RETURN_MODE
	__u64 key = kc_irq_key(irq);
	__u64 ns = kc_elapsed(&hardirq_starts, &key);

	kc_hardirq_count(KC_IRQ_EXIT, 1);
	if (ns)
		kc_hist_add(&hardirq_latency, irq, ns);
#endif
}

KC_IF_TRAMPOLINE(SEC("tp_btf/irq_handler_entry") int BPF_PROG(kc_hardirq_entry__trampoline, int irq)
		 {
			 kc_hardirq_on_entry(irq);
			 return 0;
		 })

SEC("tracepoint/irq/irq_handler_entry")
int kc_hardirq_entry__tracepoint(struct trace_event_raw_irq_handler_entry *ctx)
{
	kc_hardirq_on_entry(KC_READ(ctx, irq));
	return 0;
}

#if KC_RETURN_MODE
KC_IF_TRAMPOLINE(SEC("tp_btf/irq_handler_exit") int BPF_PROG(kc_hardirq_exit__trampoline, int irq)
		 {
			 kc_hardirq_on_exit(irq);
			 return 0;
		 })

SEC("tracepoint/irq/irq_handler_exit")
int kc_hardirq_exit__tracepoint(struct trace_event_raw_irq_handler_exit *ctx)
{
	kc_hardirq_on_exit(KC_READ(ctx, irq));
	return 0;
}
#endif
