/* SPDX-License-Identifier: GPL-2.0 */
/* hardirq: interrupt handlers run, and in return mode their latency per IRQ number.
 * Families: irq/irq_handler_{entry,exit} as tp_btf (trampoline) or classic (tracepoint). */

/* Latency kept for up to 128 IRQ numbers that fire. */
KC_HANDLER_COLLECTOR(hardirq, 128)

KC_IF_TRAMPOLINE(SEC("tp_btf/irq_handler_entry") int BPF_PROG(kc_hardirq_entry__trampoline, int irq)
		 {
			 kc_hardirq_enter(irq);
			 return 0;
		 })

SEC("tracepoint/irq/irq_handler_entry")
int kc_hardirq_entry__tracepoint(struct trace_event_raw_irq_handler_entry *ctx)
{
	kc_hardirq_enter(KC_READ(ctx, irq));
	return 0;
}

#if KC_RETURN_MODE
KC_IF_TRAMPOLINE(SEC("tp_btf/irq_handler_exit") int BPF_PROG(kc_hardirq_exit__trampoline, int irq)
		 {
			 kc_hardirq_leave(irq);
			 return 0;
		 })

SEC("tracepoint/irq/irq_handler_exit")
int kc_hardirq_exit__tracepoint(struct trace_event_raw_irq_handler_exit *ctx)
{
	kc_hardirq_leave(KC_READ(ctx, irq));
	return 0;
}
#endif
