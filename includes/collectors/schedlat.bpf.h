/* SPDX-License-Identifier: GPL-2.0 */
/* schedlat: tasks woken and switched in, and in return mode the run-queue latency (from a
 * task's wakeup to its running) as a histogram (`schedlat_latency`, id 0) with `queued`, the
 * switches it timed. A task that waits for a CPU is slow for a reason its own profile cannot
 * show: this is the first sign of CPU saturation (runqlat's question, kept always on).
 * Families: sched/sched_wakeup{,_new} and sched/sched_switch as tp_btf (trampoline) or
 * classic (tracepoint); no probe: the scheduler functions behind them are inlined or renamed
 * (ttwu_do_activate, finish_task_switch.isra.0) across kernels. Totals only: a switch runs in
 * the context of the task leaving, not of the one whose wait it ends.
 * Cost: these run at every wakeup and switch, so the start time is rewritten in the thread's
 * slot (no insert, no delete), the histogram is counted per CPU (no shared line between CPUs),
 * and the tp_btf programs read the task's pid directly (a typed pointer: one load the verifier
 * guards, relocated by CO-RE like BPF_CORE_READ, instead of a helper call per field). */

KC_TOTALS(schedlat, schedlat)

#if KC_RETURN_MODE
KC_THREAD_START_MAP(schedlat_starts);
KC_PERCPU_HIST_MAP(schedlat_latency, 1);
#endif

static __always_inline void kc_schedlat_woken(__u32 tid)
{
	kc_schedlat_count(KC_SCHEDLAT_WAKEUP, 1);
#if KC_RETURN_MODE
	kc_thread_start(&schedlat_starts, tid);
#endif
}

static __always_inline void kc_schedlat_switched(__u32 next_tid)
{
	kc_schedlat_count(KC_SCHEDLAT_SWITCH_IN, 1);
#if KC_RETURN_MODE
	__u64 ns;

	if (!next_tid) /* the idle task is never woken */
		return;
	ns = kc_thread_elapsed(&schedlat_starts, next_tid);
	if (ns) {
		kc_schedlat_count(KC_SCHEDLAT_QUEUED, 1);
		kc_percpu_hist_add(&schedlat_latency, 0, ns);
	}
#endif
}

#if KC_CORE
SEC("tp_btf/sched_wakeup")
int BPF_PROG(kc_schedlat_wakeup__trampoline, struct task_struct *p)
{
	kc_schedlat_woken(p->pid);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kc_schedlat_wakeup__trampoline_new, struct task_struct *p)
{
	kc_schedlat_woken(p->pid);
	return 0;
}

/* `next` is the third argument on every kernel (5.18 added prev_state after it). */
SEC("tp_btf/sched_switch")
int BPF_PROG(kc_schedlat_switch__trampoline, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	kc_schedlat_switched(next->pid);
	return 0;
}
#endif

SEC("tracepoint/sched/sched_wakeup")
int kc_schedlat_wakeup__tracepoint(struct trace_event_raw_sched_wakeup_template *ctx)
{
	kc_schedlat_woken(KC_READ(ctx, pid));
	return 0;
}

SEC("tracepoint/sched/sched_wakeup_new")
int kc_schedlat_wakeup__tracepoint_new(struct trace_event_raw_sched_wakeup_template *ctx)
{
	kc_schedlat_woken(KC_READ(ctx, pid));
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int kc_schedlat_switch__tracepoint(struct trace_event_raw_sched_switch *ctx)
{
	kc_schedlat_switched(KC_READ(ctx, next_pid));
	return 0;
}
