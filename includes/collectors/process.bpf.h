/* SPDX-License-Identifier: GPL-2.0 */
/* process: fork/clone, exec, exit and release of tasks, per process (tgid) and in total.
 * Events and families (see kc_bpf.h):
 *   fork, exec, exit  sched tracepoints: tp_btf (trampoline), classic (tracepoint)
 *   release           release_task (trampoline, probe); raw sched_process_free (tracepoint),
 *                     which fires when the released task is freed, an RCU grace period later;
 *                     CO-RE objects only (KC_PROCESS_RELEASED_LEGACY says why)
 *   clone             kernel_clone (trampoline, probe); the clone, clone3, fork and vfork
 *                     syscall tracepoints (tracepoint); return mode only
 *   stream            a process's release, as release: each released process (thread group)
 *                     goes to process_exits with its final row, which leaves the table;
 *                     CO-RE objects only, as release */

KC_COLLECTOR(process, process)
#if KC_CORE
/* 256 KiB: 2,340 exits (112 bytes and a header each) between two polls of the consumer. */
KC_STREAM_MAP(process_exits, kc_process_exit, 256 * 1024);
#endif

static __always_inline void kc_process_on_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((__u32)id == (__u32)(id >> 32)) /* the process, not one of its threads */
		kc_process_count(KC_PROCESS_EXIT, 1);
}

#if KC_CORE
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

/* A released process's record, but its row. Not inlined: its prototype is what puts struct
 * kc_process_exit into the object's BTF, where the plan and agents find the layout of
 * process_exits' records (a ring buffer's definition cannot name a value type). */
static KC_NOINLINE int kc_process_exit_record(struct kc_process_exit *e, struct task_struct *task)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->tgid = KC_READ(task, tgid);
	e->ppid = KC_READ(task, real_parent, tgid);
	e->exit_code = KC_READ(task, exit_code);
	e->start_ns = KC_READ(task, start_time);
	e->exit_ns = bpf_ktime_get_ns();
	KC_READ_INTO(&e->comm, task, comm);
	return 0;
}

/* Streams the exit of `task`'s process with its final row, which leaves the table (see struct
 * kc_process_exit). The row is looked up by the task's tgid (at a release the current task is
 * the reaper), and only where the table is keyed by process. */
static __always_inline void kc_process_stream_exit(struct task_struct *task)
{
	__u32 tgid = KC_READ(task, tgid), first = 0;
	struct kc_process_counters *row = NULL;
	struct kc_process_exit *e;
	struct kc_ctrl *c;
	__u64 key = tgid;

	e = bpf_ringbuf_reserve(&process_exits, sizeof(*e), 0);
	if (!e) {
		kc_add(&process_counters, KC_PROCESS_STREAM_LOST, 1);
		return;
	}
	kc_process_exit_record(e, task);
	c = bpf_map_lookup_elem(&process_ctrl, &first);
	if (c && c->group_by == KC_GROUP_PROCESS)
		row = bpf_map_lookup_elem(&process_apps, &key);
	if (row) {
		e->row = *row;
		e->has_row = 1;
		bpf_map_delete_elem(&process_apps, &key);
	}
	kc_add(&process_counters, KC_PROCESS_STREAMED, 1);
	bpf_ringbuf_submit(e, kc_stream_wakeup(&process_exits));
}
#endif

static __always_inline void kc_process_on_clone_ret(long ret)
{
	if (ret < 0)
		kc_process_count(KC_PROCESS_CLONE_ERROR, 1);
}

KC_TP_COUNT(kc_process_fork, sched, sched_process_fork, kc_process_count(KC_PROCESS_FORK, 1))
KC_TP_COUNT(kc_process_exec, sched, sched_process_exec, kc_process_count(KC_PROCESS_EXEC, 1))
KC_TP_COUNT(kc_process_exit, sched, sched_process_exit, kc_process_on_exit())
#if KC_CORE
KC_FUNC_ENTRY(kc_process_release, release_task, kc_process_on_release(task), struct task_struct *task)

SEC("raw_tp/sched_process_free")
int BPF_PROG(kc_process_release__tracepoint, struct task_struct *task)
{
	kc_process_on_release(task);
	return 0;
}

/* At a release (trampoline, probe): the thread group's leader is released once all its
 * threads are gone. */
static __always_inline void kc_process_stream_release(struct task_struct *task)
{
	if (KC_READ(task, pid) == KC_READ(task, tgid))
		kc_process_stream_exit(task);
}

KC_FUNC_ENTRY(kc_process_stream, release_task, kc_process_stream_release(task), struct task_struct *task)

/* The tracepoint family streams at the exit of the process's last thread, whichever it is:
 * do_exit counts the group's live threads down before this tracepoint (nothing of the process
 * runs after it). Not at sched_process_free as release: that comes an RCU grace period after
 * the reap, and in batches, often after the agent's read (vmtest saw children missing). Two
 * threads exiting at once can both see none left: the second record then carries no row. */
SEC("tracepoint/sched/sched_process_exit")
int kc_process_stream__tracepoint(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		kc_process_stream_exit(task);
	return 0;
}
#endif

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
