/* SPDX-License-Identifier: GPL-2.0 */
/* softirq: softirqs run, and in return mode their latency per vector (NET_RX, TIMER, ...).
 * Families: irq/softirq_{entry,exit} as tp_btf (trampoline) or classic (tracepoint). */

/* NR_SOFTIRQS: HI, TIMER, NET_TX, NET_RX, BLOCK, IRQ_POLL, TASKLET, SCHED, HRTIMER, RCU. */
KC_HANDLER_COLLECTOR(softirq, 10)

KC_IF_TRAMPOLINE(SEC("tp_btf/softirq_entry") int BPF_PROG(kc_softirq_entry__trampoline, unsigned int vec)
		 {
			 kc_softirq_enter(vec);
			 return 0;
		 })

SEC("tracepoint/irq/softirq_entry")
int kc_softirq_entry__tracepoint(struct trace_event_raw_softirq *ctx)
{
	kc_softirq_enter(KC_READ(ctx, vec));
	return 0;
}

#if KC_RETURN_MODE
KC_IF_TRAMPOLINE(SEC("tp_btf/softirq_exit") int BPF_PROG(kc_softirq_exit__trampoline, unsigned int vec)
		 {
			 kc_softirq_leave(vec);
			 return 0;
		 })

SEC("tracepoint/irq/softirq_exit")
int kc_softirq_exit__tracepoint(struct trace_event_raw_softirq *ctx)
{
	kc_softirq_leave(KC_READ(ctx, vec));
	return 0;
}
#endif
