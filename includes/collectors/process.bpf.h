/* SPDX-License-Identifier: GPL-2.0 */
/* process: fork/clone, exec, exit and release of tasks, per process (tgid) and in total.
 * Events and families (see kc_bpf.h):
 *   fork, exec, exit  sched tracepoints: tp_btf (trampoline), classic (tracepoint)
 *   release           release_task (trampoline, probe); raw sched_process_free (tracepoint),
 *                     which fires when the released task is freed, an RCU grace period later
 *   clone             kernel_clone (trampoline, probe); the clone, clone3, fork and vfork
 *                     syscall tracepoints (tracepoint); return mode only */

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

static __always_inline void kc_process_on_fork(void)
{
	struct kc_task_stat *s = kc_task(kc_current_tgid());

	kc_add(&process_counters, KC_PROCESS_FORK, 1);
	if (s)
		__sync_fetch_and_add(&s->forks, 1);
}

static __always_inline void kc_process_on_exec(void)
{
	struct kc_task_stat *s = kc_task(kc_current_tgid());

	kc_add(&process_counters, KC_PROCESS_EXEC, 1);
	if (s)
		__sync_fetch_and_add(&s->execs, 1);
}

static __always_inline void kc_process_on_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct kc_task_stat *s;

	if ((__u32)id != (__u32)(id >> 32))
		return; /* a thread, not the process */
	kc_add(&process_counters, KC_PROCESS_EXIT, 1);
	s = bpf_map_lookup_elem(&process_tasks, &(__u32){ id >> 32 });
	if (s)
		__sync_fetch_and_add(&s->exits, 1);
}

static __always_inline void kc_process_on_release(struct task_struct *task)
{
	__u32 tgid = KC_READ(task, tgid);
	__u32 pid = KC_READ(task, pid);

	if (pid != tgid)
		return;
	kc_add(&process_counters, KC_PROCESS_RELEASE, 1);
	/* The process is gone: drop its entry so the map stays bounded. */
	bpf_map_delete_elem(&process_tasks, &tgid);
}

static __always_inline void kc_process_on_clone_ret(long ret)
{
	struct kc_task_stat *s;

	if (ret >= 0)
		return;
	kc_add(&process_counters, KC_PROCESS_CLONE_ERROR, 1);
	s = kc_task(kc_current_tgid());
	if (s)
		__sync_fetch_and_add(&s->fork_errors, 1);
}

KC_TP_COUNT(kc_process_fork, sched, sched_process_fork, kc_process_on_fork())
KC_TP_COUNT(kc_process_exec, sched, sched_process_exec, kc_process_on_exec())
KC_TP_COUNT(kc_process_exit, sched, sched_process_exit, kc_process_on_exit())

KC_FUNC_ENTRY(kc_process_release, release_task, kc_process_on_release(task), struct task_struct *task)

SEC("raw_tp/sched_process_free")
int BPF_PROG(kc_process_release__tracepoint, struct task_struct *task)
{
	kc_process_on_release(task);
	return 0;
}

#if KC_RETURN_MODE
KC_FUNC_ENTRY(kc_process_clone, kernel_clone, kc_add(&process_counters, KC_PROCESS_CLONE_CALL, 1))
KC_FUNC_RETURN(kc_process_clone, kernel_clone, long, kc_process_on_clone_ret(ret), void *args)
#define KC_PROCESS_CLONE_TP(call)                                                      \
	KC_SYSCALL_TP(kc_process_clone, call, kc_add(&process_counters, KC_PROCESS_CLONE_CALL, 1), \
		      kc_process_on_clone_ret(ret))
KC_PROCESS_CLONE_TP(clone)
KC_PROCESS_CLONE_TP(clone3)
KC_PROCESS_CLONE_TP(fork)
KC_PROCESS_CLONE_TP(vfork)
#endif
