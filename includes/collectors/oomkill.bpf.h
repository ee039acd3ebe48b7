/* SPDX-License-Identifier: GPL-2.0 */
/* oomkill: processes the OOM killer chose, in total and per process.
 * Families: kill is oom_kill_process (trampoline, probe) or oom/mark_victim, which marks the
 * chosen process (tracepoint); victim is oom/mark_victim (tp_btf, classic). */

KC_COUNTERS(oomkill_counters, KC_OOMKILL_END);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
} oomkill_victims SEC(".maps");

static __always_inline void kc_oomkill_on_kill(__u32 tgid)
{
	__u64 one = 1, *n = bpf_map_lookup_elem(&oomkill_victims, &tgid);

	kc_add(&oomkill_counters, KC_OOMKILL_KILL, 1);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&oomkill_victims, &tgid, &one, BPF_NOEXIST);
}

KC_FUNC_ENTRY(kc_oomkill_kill, oom_kill_process, kc_oomkill_on_kill(KC_READ(oc, chosen, tgid)), struct oom_control *oc)

SEC("tracepoint/oom/mark_victim")
int kc_oomkill_kill__tracepoint(struct trace_event_raw_mark_victim *ctx)
{
	kc_oomkill_on_kill(KC_READ(ctx, pid));
	return 0;
}

KC_TP_COUNT(kc_oomkill_victim, oom, mark_victim, kc_add(&oomkill_counters, KC_OOMKILL_VICTIM, 1))
