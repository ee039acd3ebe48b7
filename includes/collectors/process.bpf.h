/* SPDX-License-Identifier: GPL-2.0 */
/* process: fork/clone, exec, exit and release of tasks, per process (tgid) and in total. */

KC_COUNTERS(process_counters, KC_PROCESS_END);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct kc_task_stat);
	__uint(max_entries, 32768);
} process_tasks SEC(".maps");

static __always_inline struct kc_task_stat *kc_task(__u32 tgid)
{
	static const struct kc_task_stat zero;
	struct kc_task_stat *s = bpf_map_lookup_elem(&process_tasks, &tgid);

	if (s)
		return s;
	bpf_map_update_elem(&process_tasks, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&process_tasks, &tgid);
}

static __always_inline __u32 kc_current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

SEC("tracepoint/sched/sched_process_fork")
int kc_process_fork(void *ctx)
{
	struct kc_task_stat *s = kc_task(kc_current_tgid());

	kc_add(&process_counters, KC_PROCESS_FORK, 1);
	if (s)
		__sync_fetch_and_add(&s->forks, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int kc_process_exec(void *ctx)
{
	struct kc_task_stat *s = kc_task(kc_current_tgid());

	kc_add(&process_counters, KC_PROCESS_EXEC, 1);
	if (s)
		__sync_fetch_and_add(&s->execs, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int kc_process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct kc_task_stat *s;

	if ((__u32)id != (__u32)(id >> 32))
		return 0; /* a thread, not the process */
	kc_add(&process_counters, KC_PROCESS_EXIT, 1);
	s = bpf_map_lookup_elem(&process_tasks, &(__u32){ id >> 32 });
	if (s)
		__sync_fetch_and_add(&s->exits, 1);
	return 0;
}

SEC("kprobe/release_task")
int BPF_KPROBE(kc_process_release, struct task_struct *task)
{
	__u32 tgid = KC_READ(task, tgid);
	__u32 pid = KC_READ(task, pid);

	if (pid != tgid)
		return 0;
	kc_add(&process_counters, KC_PROCESS_RELEASE, 1);
	/* The process is gone: drop its entry so the map stays bounded. */
	bpf_map_delete_elem(&process_tasks, &tgid);
	return 0;
}

#if KC_RETURN_MODE
SEC("kprobe/kernel_clone")
int BPF_KPROBE(kc_process_clone)
{
	kc_add(&process_counters, KC_PROCESS_CLONE_CALL, 1);
	return 0;
}

SEC("kretprobe/kernel_clone")
int BPF_KRETPROBE(kc_process_clone_ret, long ret)
{
	struct kc_task_stat *s;

	if (ret >= 0)
		return 0;
	kc_add(&process_counters, KC_PROCESS_CLONE_ERROR, 1);
	s = kc_task(kc_current_tgid());
	if (s)
		__sync_fetch_and_add(&s->fork_errors, 1);
	return 0;
}
#endif
