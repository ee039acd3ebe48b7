/* SPDX-License-Identifier: GPL-2.0 */
/* process: fork/clone, exec, exit and release of tasks, per process (tgid) and in total.
 * Events and families (see kc_bpf.h):
 *   fork, exec, exit  sched tracepoints: tp_btf (trampoline), classic (tracepoint)
 *   release           release_task (trampoline, probe); raw sched_process_free (tracepoint),
 *                     which fires when the released task is freed, an RCU grace period later
 *   clone             kernel_clone (trampoline, probe); the clone, clone3, fork and vfork
 *                     syscall tracepoints (tracepoint); return mode only */

KC_COLLECTOR(process, process)

static __always_inline void kc_process_on_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((__u32)id == (__u32)(id >> 32)) /* the process, not one of its threads */
		kc_process_count(KC_PROCESS_EXIT, 1);
}

static __always_inline void kc_process_on_release(struct task_struct *task)
{
	__u32 tgid = KC_READ(task, tgid);
	__u32 pid = KC_READ(task, pid);

	if (pid != tgid)
		return;
	/* In the totals only: the current task is the reaper, and the released process's row
	 * must stay until the agent has read it (it removes rows of exited processes then). */
	kc_add(&process_counters, KC_PROCESS_RELEASE, 1);
}

static __always_inline void kc_process_on_clone_ret(long ret)
{
	if (ret < 0)
		kc_process_count(KC_PROCESS_CLONE_ERROR, 1);
}

KC_TP_COUNT(kc_process_fork, sched, sched_process_fork, kc_process_count(KC_PROCESS_FORK, 1))
KC_TP_COUNT(kc_process_exec, sched, sched_process_exec, kc_process_count(KC_PROCESS_EXEC, 1))
KC_TP_COUNT(kc_process_exit, sched, sched_process_exit, kc_process_on_exit())
KC_FUNC_ENTRY(kc_process_release, release_task, kc_process_on_release(task), struct task_struct *task)

SEC("raw_tp/sched_process_free")
int BPF_PROG(kc_process_release__tracepoint, struct task_struct *task)
{
	kc_process_on_release(task);
	return 0;
}

#if KC_RETURN_MODE
KC_FUNC_ENTRY(kc_process_clone, kernel_clone, kc_process_count(KC_PROCESS_CLONE_CALL, 1))
KC_FUNC_RETURN(kc_process_clone, kernel_clone, long, kc_process_on_clone_ret(ret), 1)
#define KC_PROCESS_CLONE_TP(call)                                                      \
	KC_SYSCALL_TP(kc_process_clone, call, kc_process_count(KC_PROCESS_CLONE_CALL, 1), \
		      kc_process_on_clone_ret(ret))
KC_PROCESS_CLONE_TP(clone)
KC_PROCESS_CLONE_TP(clone3)
KC_PROCESS_CLONE_TP(fork)
KC_PROCESS_CLONE_TP(vfork)
#endif
