/* SPDX-License-Identifier: GPL-2.0 */
/* oomkill: processes the OOM killer chose, in total and per process.
 * Families: kill is oom_kill_process (trampoline, probe; CO-RE objects only) or oom/mark_victim,
 * which marks the chosen process (tracepoint); victim is oom/mark_victim (tp_btf, classic). */

KC_COLLECTOR(oomkill, oomkill)

/* A kill is the victim's: its row, when grouping by process. */
static __always_inline void kc_oomkill_on_kill(__u32 tgid)
{
	kc_oomkill_count_for(tgid, KC_OOMKILL_KILL, 1);
}

/* CO-RE objects only: a legacy object would read the chosen task's tgid at its bucket's
 * offsets, which later kernels of the bucket moved (the victim's row keyed by a wrong number);
 * legacy objects count kills at mark_victim, whose record carries the pid. */
#if KC_CORE
KC_FUNC_ENTRY(kc_oomkill_kill, oom_kill_process, kc_oomkill_on_kill(KC_READ(oc, chosen, tgid)), struct oom_control *oc)
#endif

SEC("tracepoint/oom/mark_victim")
int kc_oomkill_kill__tracepoint(struct trace_event_raw_mark_victim *ctx)
{
	kc_oomkill_on_kill(KC_READ(ctx, pid));
	return 0;
}

KC_TP_COUNT(kc_oomkill_victim, oom, mark_victim, kc_oomkill_count(KC_OOMKILL_VICTIM, 1))
