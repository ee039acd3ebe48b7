/* SPDX-License-Identifier: GPL-2.0 */
/* oomkill: processes the OOM killer chose, in total and per process. */

KC_COUNTERS(oomkill_counters, KC_OOMKILL_END);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
} oomkill_victims SEC(".maps");

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(kc_oomkill_kill, struct oom_control *oc)
{
	__u32 tgid = KC_READ(oc, chosen, tgid);
	__u64 one = 1, *n = bpf_map_lookup_elem(&oomkill_victims, &tgid);

	kc_add(&oomkill_counters, KC_OOMKILL_KILL, 1);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&oomkill_victims, &tgid, &one, BPF_NOEXIST);
	return 0;
}

SEC("tracepoint/oom/mark_victim")
int kc_oomkill_victim(struct trace_event_raw_mark_victim *ctx)
{
	if (KC_READ(ctx, pid) > 0)
		kc_add(&oomkill_counters, KC_OOMKILL_VICTIM, 1);
	return 0;
}
