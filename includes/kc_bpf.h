/* SPDX-License-Identifier: GPL-2.0 */
/* BPF-side helpers shared by every collector, legacy and CO-RE. Include kc_legacy.h or
 * kc_core.h first: they provide the kernel types and KC_READ. */
#ifndef KC_BPF_H
#define KC_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* 1: entry and return probes ('r' objects, and every CO-RE object); 0: entry only ('p'). */
#ifndef KC_RETURN_MODE
#define KC_RETURN_MODE 1
#endif

/* Where each counter comes from, as BTF declaration tags on its member of the counter struct
 * (see kc_collectors.h): kc-loader and agents read them from the object. */
#define KC_TAG(s) __attribute__((btf_decl_tag(s)))
#define KC_FROM(ev) KC_TAG("kc_event:" #ev)
#if KC_RETURN_MODE
#define KC_RETURN_ONLY
#else
#define KC_RETURN_ONLY KC_TAG("kc_unobserved:an entry-only (p) object does not count it: it needs return mode")
#endif
#define KC_BLIND(family, why) KC_TAG("kc_blind:" #family ":" why)
#if defined(__TARGET_ARCH_x86)
#define KC_X86_ONLY(why)
#else
#define KC_X86_ONLY(why) KC_TAG("kc_unobserved:" why)
#endif
/* KC_CORE comes from kc_core.h or kc_legacy.h, which include this file. */
#if KC_CORE
#define KC_CORE_ONLY(why)
#else
#define KC_CORE_ONLY(why) KC_TAG("kc_unobserved:" why)
#endif

#include "kc_common.h"
#include "kc_collectors.h"

/*
 * Attach families. Each event a collector observes is written once, as a handler, and reached
 * through up to three families of programs that share the collector's maps:
 *   trampoline  fentry/fexit on the kernel function, or tp_btf on a tracepoint (CO-RE only)
 *   probe       kprobe/kretprobe on the kernel function
 *   tracepoint  a stable tracepoint (classic or raw) that observes the same event
 * A program's name says which: `<event>__<family>[_<role>][__<variant>]`, e.g.
 * `kc_vfs_read__probe_ret` or `kc_cachestat_dirty__tracepoint__folio`. The loader picks one
 * family per event at run time (kc-loader --attach); programs of the other families are not
 * loaded. `<variant>`s of one `<event>__<family>[_<role>]` are alternatives for kernels that
 * renamed a function or tracepoint: the first (in source order) that the kernel has is used.
 */
#if KC_CORE
#define KC_IF_TRAMPOLINE(...) __VA_ARGS__
#else
#define KC_IF_TRAMPOLINE(...)
#endif
#if KC_RETURN_MODE
#define KC_IF_RETURN(...) __VA_ARGS__
#else
#define KC_IF_RETURN(...)
#endif

/* Entry of kernel function `fn` (its arguments `args...`), as `ev` in the trampoline and probe
 * families; `body` is an expression over the arguments. `suffix` (empty, or `__<variant>` for
 * a renamed function's generation) ends the programs' names. */
#define KC_FUNC_ENTRY_AS(ev, suffix, fn, body, args...)                                     \
	KC_IF_TRAMPOLINE(SEC("fentry/" #fn) int BPF_PROG(ev##__trampoline##suffix, ##args) \
			 { body; return 0; })                                               \
	SEC("kprobe/" #fn) int BPF_KPROBE(ev##__probe##suffix, ##args) { body; return 0; }

#define KC_FUNC_ENTRY(ev, fn, body, args...) KC_FUNC_ENTRY_AS(ev, , fn, body, ##args)
#define KC_FUNC_ENTRY_V(ev, variant, fn, body, args...) \
	KC_FUNC_ENTRY_AS(ev, __##variant, fn, body, ##args)

#if KC_CORE
/* Slot `n` of a trampoline program's context (arguments, then an fexit's return value) when
 * `n` depends on the kernel (a function or tracepoint that gained an argument): read as
 * memory, because the verifier allows only constant offsets into the context itself and
 * refuses any past this kernel's argument count. */
static __always_inline __u64 kc_ctx_arg(unsigned long long *ctx, int n)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx + n);
	return v;
}

/* An fexit program's return value: bpf_get_func_ret where the kernel has it (5.17), which
 * needs no argument count; else the slot after `nargs` arguments (the count before 5.17). The
 * branch not taken is a CO-RE constant, so the verifier never sees it. */
static __always_inline __u64 kc_fexit_ret(unsigned long long *ctx, int nargs)
{
	__u64 ret = 0;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_func_ret))
		bpf_get_func_ret(ctx, &ret);
	else
		ret = kc_ctx_arg(ctx, nargs);
	return ret;
}
#endif

/* Return of kernel function `fn` returning `rtype`: `body` sees `ret`. `nargs` is its argument
 * count on kernels before 5.17 (a constant, or an expression of CO-RE checks). The type
 * matters: an int read as long would turn -1 into 4294967295, so an int function's return is
 * read as int even where an older kernel's returned long (fds and sizes fit). */
#define KC_FUNC_RETURN(ev, fn, rtype, body, nargs)                                             \
	KC_IF_RETURN(KC_IF_TRAMPOLINE(SEC("fexit/" #fn) int ev##__trampoline_ret(               \
					      unsigned long long *ctx)                        \
				      {                                                       \
					      rtype ret = (rtype)kc_fexit_ret(ctx, nargs);    \
					      body;                                           \
					      return 0;                                       \
				      })                                                      \
		     SEC("kretprobe/" #fn) int BPF_KRETPROBE(ev##__probe_ret, rtype ret)   \
		     { body; return 0; })

/* The kernel function behind a system call: x86-64's and arm64's syscall wrappers take the
 * user registers, and nothing else. */
#if defined(__TARGET_ARCH_x86)
#define KC_SYSCALL_FN(call) "__x64_sys_" #call
#elif defined(__TARGET_ARCH_arm64)
#define KC_SYSCALL_FN(call) "__arm64_sys_" #call
#endif

/* A system call's first five arguments as `a0`..`a4` (unsigned long), for `enter` to read
 * (KC_SYSCALL_ARGS_AS): from the user registers a syscall wrapper takes (trampoline, probe),
 * or from the tracepoint's record. KC_NO_ARGS declares none. */
#if defined(__TARGET_ARCH_x86)
#define KC_ARGS_REGS(r)                                                                  \
	unsigned long __attribute__((unused)) a0 = KC_READ(r, di), a1 = KC_READ(r, si),    \
		a2 = KC_READ(r, dx), a3 = KC_READ(r, r10), a4 = KC_READ(r, r8)
#elif defined(__TARGET_ARCH_arm64)
/* (The parameter is not `regs`: that is the field's name.) */
#define KC_ARGS_REGS(r)                                                                     \
	unsigned long __attribute__((unused)) a0 = KC_READ(r, regs[0]), a1 = KC_READ(r, regs[1]), \
		a2 = KC_READ(r, regs[2]), a3 = KC_READ(r, regs[3]), a4 = KC_READ(r, regs[4])
#endif
#define KC_ARGS_TP(ctx)                                                                      \
	unsigned long __attribute__((unused)) a0 = ctx->args[0], a1 = ctx->args[1],           \
		a2 = ctx->args[2], a3 = ctx->args[3], a4 = ctx->args[4]
/* A trampoline reads the registers' address from its context through a helper: 5.10's BTF
 * gives the wrappers' argument as a pointer to a forward declaration, which the verifier
 * refuses to read from the context directly. */
#define KC_ARGS_TRAMPOLINE(ctx)                                              \
	struct pt_regs *kc_user_regs = (struct pt_regs *)kc_ctx_arg(ctx, 0); \
	KC_ARGS_REGS(kc_user_regs)
/* All six (KC_ARGS6): a5 too, read only by the calls that need it. */
#if defined(__TARGET_ARCH_x86)
#define KC_ARGS6_REGS(r) \
	KC_ARGS_REGS(r); \
	unsigned long __attribute__((unused)) a5 = KC_READ(r, r9)
#elif defined(__TARGET_ARCH_arm64)
#define KC_ARGS6_REGS(r) \
	KC_ARGS_REGS(r); \
	unsigned long __attribute__((unused)) a5 = KC_READ(r, regs[5])
#endif
#define KC_ARGS6_TP(ctx) \
	KC_ARGS_TP(ctx); \
	unsigned long __attribute__((unused)) a5 = ctx->args[5]
#define KC_ARGS6_TRAMPOLINE(ctx)                                             \
	struct pt_regs *kc_user_regs = (struct pt_regs *)kc_ctx_arg(ctx, 0); \
	KC_ARGS6_REGS(kc_user_regs)
#define KC_NO_ARGS_REGS(regs)
#define KC_NO_ARGS_TRAMPOLINE(ctx)
#define KC_NO_ARGS_TP(ctx)

/* A system call's entry tracepoint as `ev##__tracepoint##role`: `enter` sees the record
 * `ctx`, its arguments in ctx->args, which `args` declares as a0..a4 or not. The record is
 * read in place: a tracepoint's context is its record. */
#define KC_SYSCALL_TP_ENTER(ev, role, call, args, enter)                         \
	SEC("tracepoint/syscalls/sys_enter_" #call) int ev##__tracepoint##role(  \
		struct trace_event_raw_sys_enter *ctx)                             \
	{                                                                        \
		args##_TP(ctx);                                                  \
		enter;                                                           \
		return 0;                                                        \
	}

/* Its exit tracepoint as `ev##__tracepoint_ret##role` (return mode): `exit` sees `ret`. */
#define KC_SYSCALL_TP_EXIT(ev, role, call, exit)                                                \
	KC_IF_RETURN(SEC("tracepoint/syscalls/sys_exit_" #call) int ev##__tracepoint_ret##role( \
			     struct trace_event_raw_sys_exit *ctx)                                 \
		     {                                                                          \
			     long ret = ctx->ret;                                                  \
			     exit;                                                                 \
			     return 0;                                                             \
		     })

#define KC_SYSCALL_TRACEPOINTS(ev, role, call, enter, exit) \
	KC_SYSCALL_TP_ENTER(ev, role, call, KC_NO_ARGS, enter) KC_SYSCALL_TP_EXIT(ev, role, call, exit)

/* The syscall wrapper's entry (trampoline, probe) as `ev##__<family>##role`. */
#define KC_SYSCALL_FN_ENTER(ev, role, call, args, enter)                                      \
	KC_IF_TRAMPOLINE(SEC("fentry/" KC_SYSCALL_FN(call)) int BPF_PROG(ev##__trampoline##role, \
									 struct pt_regs *regs) \
			 { args##_TRAMPOLINE(ctx); enter; return 0; })                      \
	SEC("kprobe/" KC_SYSCALL_FN(call)) int BPF_KPROBE(ev##__probe##role, struct pt_regs *regs) \
	{ args##_REGS(regs); enter; return 0; }

/* A system call `call` as `ev` in all three families: the syscall wrapper (trampoline, probe)
 * and the syscall's tracepoints. `enter` runs on entry (with `args`: KC_ARGS or KC_NO_ARGS),
 * `exit` (return mode) sees `ret`. `role` (empty, or `_<name>`) tells apart the calls of an
 * event that several make. */
#define KC_SYSCALL_WITH(ev, role, call, args, enter, exit)                                    \
	KC_SYSCALL_FN_ENTER(ev, role, call, args, enter)                                      \
	KC_IF_RETURN(KC_IF_TRAMPOLINE(SEC("fexit/" KC_SYSCALL_FN(call)) int BPF_PROG(          \
					      ev##__trampoline_ret##role, struct pt_regs *regs, long ret) \
				      { exit; return 0; })                                  \
		     SEC("kretprobe/" KC_SYSCALL_FN(call)) int BPF_KRETPROBE(ev##__probe_ret##role, \
									    long ret)          \
		     { exit; return 0; })                                                     \
	KC_SYSCALL_TP_ENTER(ev, role, call, args, enter)                                      \
	KC_SYSCALL_TP_EXIT(ev, role, call, exit)

#define KC_SYSCALL_AS(ev, role, call, enter, exit) KC_SYSCALL_WITH(ev, role, call, KC_NO_ARGS, enter, exit)
/* As KC_SYSCALL_AS, with the call's arguments as a0..a4 in `enter`. */
#define KC_SYSCALL_ARGS_AS(ev, role, call, enter, exit) KC_SYSCALL_WITH(ev, role, call, KC_ARGS, enter, exit)
#define KC_SYSCALL_ARGS6_AS(ev, role, call, enter, exit) KC_SYSCALL_WITH(ev, role, call, KC_ARGS6, enter, exit)
/* The entry alone, in all three families, with the call's arguments as a0..a4. */
#define KC_SYSCALL_ENTRY_ARGS_AS(ev, role, call, enter) \
	KC_SYSCALL_FN_ENTER(ev, role, call, KC_ARGS, enter) KC_SYSCALL_TP_ENTER(ev, role, call, KC_ARGS, enter)
#define KC_SYSCALL(ev, call, enter, exit) KC_SYSCALL_AS(ev, , call, enter, exit)

/* A system call's tracepoints standing for a kernel function in the tracepoint family, one
 * of the event's several calls. */
#define KC_SYSCALL_TP(ev, call, enter, exit) KC_SYSCALL_TRACEPOINTS(ev, _##call, call, enter, exit)

/* The system calls that open a file by path, for a macro `M(call)`. */
#define KC_OPEN_SYSCALLS(M) M(open) M(openat) M(openat2) M(creat)

/* A tracepoint event with nothing to read but the current task: tp_btf (trampoline family)
 * and the classic tracepoint (tracepoint family); `suffix` as for KC_FUNC_ENTRY_AS. */
#define KC_TP_COUNT_AS(ev, suffix, category, name, body)                            \
	KC_IF_TRAMPOLINE(SEC("tp_btf/" #name) int BPF_PROG(ev##__trampoline##suffix) \
			 { body; return 0; })                                         \
	SEC("tracepoint/" #category "/" #name) int ev##__tracepoint##suffix(void *ctx) \
	{                                                                             \
		body;                                                                 \
		return 0;                                                             \
	}

#define KC_TP_COUNT(ev, category, name, body) KC_TP_COUNT_AS(ev, , category, name, body)
#define KC_TP_COUNT_V(ev, variant, category, name, body) \
	KC_TP_COUNT_AS(ev, __##variant, category, name, body)

/* Address families: vmlinux.h and the legacy base headers do not define them. */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Default size of a per-application table: a small host's processes (14 tables of 2,048 rows
 * hold 3.4 MiB of kernel memory); an agent sizes them for its host before load (kc-loader
 * --table-size; kc-exporter from the processes or cgroups it finds). */
#define KC_APPS_ENTRIES 2048

/* A collector's machine totals: `<name>_counters`, one per-CPU struct kc_<set>_counters. */
#define KC_TOTALS_MAP(name, set)                            \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);    \
		__type(key, __u32);                         \
		__type(value, struct kc_##set##_counters);  \
		__uint(max_entries, 1);                     \
	} name##_counters SEC(".maps")

/* Totals only, and kc_<name>_count(index, n) to add to them; kc_<name>_count2 adds to two
 * counters of one event (calls and bytes) in one visit. */
#define KC_TOTALS(name, set)                                                                 \
	KC_TOTALS_MAP(name, set);                                                            \
	static __always_inline void kc_##name##_count(__u32 idx, __u64 n)                    \
	{                                                                                    \
		kc_add(&name##_counters, idx, n);                                            \
	}                                                                                    \
	static __always_inline void kc_##name##_count2(__u32 a, __u64 na, __u32 b, __u64 nb) \
	{                                                                                    \
		kc_add2(&name##_counters, a, na, b, nb);                                     \
	}

/* Totals, and the same counters per application: `<name>_apps` (LRU hash: a full table
 * forgets its least recent entry, and the agent removes those of processes that exited) keyed
 * by tgid or cgroup id as `<name>_ctrl` says. kc_<name>_count_for(key, ...) counts for another
 * process than the current one (the OOM killer's victim). */
#define KC_COLLECTOR(name, set)                                                  \
	KC_TOTALS_MAP(name, set);                                                 \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                              \
		__type(key, __u64);                                               \
		__type(value, struct kc_##set##_counters);                       \
		__uint(max_entries, KC_APPS_ENTRIES);                             \
	} name##_apps SEC(".maps");                                               \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                 \
		__type(key, __u32);                                               \
		__type(value, struct kc_ctrl);                                    \
		__uint(max_entries, 1);                                           \
	} name##_ctrl SEC(".maps");                                               \
	static __always_inline void kc_##name##_count_for(__u32 tgid, __u32 idx, __u64 n) \
	{                                                                         \
		struct kc_##set##_counters zero = {};                            \
		__u64 *v;                                                         \
                                                                                  \
		kc_add(&name##_counters, idx, n);                                 \
		v = kc_app(&name##_apps, &name##_ctrl, tgid, &zero);              \
		if (v)                                                            \
			__sync_fetch_and_add(&v[idx], n);                         \
	}                                                                         \
	static __always_inline void kc_##name##_count(__u32 idx, __u64 n)        \
	{                                                                         \
		kc_##name##_count_for(bpf_get_current_pid_tgid() >> 32, idx, n);  \
	}                                                                         \
	/* Two counters of one event (calls and bytes): one visit to the totals  \
	 * and to the application's row, not two. */                            \
	static __always_inline void kc_##name##_count2(__u32 a, __u64 na, __u32 b, __u64 nb) \
	{                                                                         \
		struct kc_##set##_counters zero = {};                            \
		__u64 *v;                                                         \
                                                                                  \
		kc_add2(&name##_counters, a, na, b, nb);                          \
		v = kc_app(&name##_apps, &name##_ctrl, bpf_get_current_pid_tgid() >> 32, &zero); \
		if (v) {                                                          \
			__sync_fetch_and_add(&v[a], na);                          \
			__sync_fetch_and_add(&v[b], nb);                          \
		}                                                                 \
	}                                                                         \
	/* A call's error counter, when its return value `ret` is an error. */   \
	static __always_inline void kc_##name##_error(long ret, __u32 idx)       \
	{                                                                         \
		if (ret < 0)                                                      \
			kc_##name##_count(idx, 1);                                \
	}

static __always_inline void kc_add(void *counters, __u32 idx, __u64 n)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(counters, &zero);

	if (v)
		v[idx] += n; /* per-CPU: no atomics needed */
}

static __always_inline void kc_add2(void *counters, __u32 a, __u64 na, __u32 b, __u64 nb)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(counters, &zero);

	if (v) {
		v[a] += na;
		v[b] += nb;
	}
}

/* The application's entry in an apps table (created zeroed from `zero`), or NULL when the
 * control map says not to group. */
static __always_inline __u64 *kc_app(void *apps, void *ctrl, __u32 tgid, void *zero)
{
	__u32 first = 0;
	struct kc_ctrl *c = bpf_map_lookup_elem(ctrl, &first);
	__u64 key, *v;
	long err;

	if (!c || c->group_by == KC_GROUP_NONE)
		return NULL;
	key = c->group_by == KC_GROUP_CGROUP ? bpf_get_current_cgroup_id() : tgid;
	v = bpf_map_lookup_elem(apps, &key);
	if (v)
		return v;
	err = bpf_map_update_elem(apps, &key, zero, BPF_NOEXIST);
	if (!err)
		__sync_fetch_and_add(&c->insertions, 1);
	else if (err != -17 /* EEXIST: another CPU added it */)
		__sync_fetch_and_add(&c->failures, 1);
	return bpf_map_lookup_elem(apps, &key);
}

/* Entry timestamps (or any u64) keyed by request (a block request's address), for latency in
 * return mode: each key is new, so it is inserted at the start and deleted at the end.
 * Preallocated here: before 6.1 a tracing program that allocates can deadlock on the locks its
 * event runs under; from 6.1 the consumers load it with BPF_F_NO_PREALLOC (`<name>_starts`,
 * a hash: kc_common::plan::MapPlan::allocates_as_it_goes). 8,192 calls in flight at once, a
 * power of two: the kernel gives a hash as many buckets as its entries rounded up to one. */
#define KC_START_MAP(name, key_type)             \
	struct {                                 \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__type(key, key_type);           \
		__type(value, __u64);            \
		__uint(max_entries, 8192);       \
	} name SEC(".maps")

/* Entry timestamps keyed by thread id (kc_thread_start / kc_thread_elapsed). A thread calls
 * again and again, so its slot is kept and rewritten in place: a lookup at each end instead of
 * an insert at the start and a delete at the end, two of a hash's costliest operations (a
 * bucket lock and an allocation or a freelist each), which dominated the cost of schedlat's
 * switch and the file systems' calls. An LRU hash, since slots of threads that stopped calling
 * are never deleted: inserting a new thread into a full table forgets the one idle longest. */
#define KC_THREAD_START_MAP(name)                    \
	struct {                                     \
		__uint(type, BPF_MAP_TYPE_LRU_HASH); \
		__type(key, __u32);                  \
		__type(value, __u64);                \
		__uint(max_entries, 8192);           \
	} name SEC(".maps")

/* Not inlined, in both environments (the kernel headers' `noinline` macro breaks libbpf's
 * `__noinline`). */
#define KC_NOINLINE __attribute__((__noinline__))

/* A stream of records to user space: `name`, a ring buffer (5.8; every kernel a collector
 * supports has it) of `bytes`, a power of two and a multiple of the page size, shared by every
 * CPU. `record` names the records' struct, as a BTF declaration tag the plan and agents read
 * (a ring buffer's definition can carry no value type). Consumers poll it while the programs
 * run; a record the ring has no room for is counted where the collector says, never dropped
 * silently. */
#define KC_STREAM_MAP(name, record, bytes)             \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_RINGBUF);    \
		__uint(max_entries, bytes);            \
	} name SEC(".maps") KC_TAG("kc_record:" #record)

/* The flags a record's submit to `ring` takes: a wakeup of the consumer only once an eighth
 * of the ring waits. A wakeup per record costs the producing task an interrupt to another CPU,
 * which doubled a flood of short-lived processes (bench stream); the consumer's poll timeout
 * takes what stays below the mark. */
static __always_inline __u64 kc_stream_wakeup(void *ring)
{
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) * 8 >= bpf_ringbuf_query(ring, BPF_RB_RING_SIZE) ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

/* Latency histograms (`struct kc_hist_key` -> count) and counts per device (`<name>_devices`,
 * keyed by a dev_t as the kernel encodes it: the loader reports them by major:minor), shared
 * by every CPU and added to atomically: a per-CPU copy of a 4096-entry histogram is 32 KiB
 * per CPU, 8 MiB on a 256-CPU host, for events far rarer than the totals'. */
#define KC_SHARED_COUNTS_MAP(name, key_type, entries) \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_HASH);      \
		__type(key, key_type);                \
		__type(value, __u64);                 \
		__uint(max_entries, entries);         \
	} name SEC(".maps")

/* A histogram of `ids` ids (devices, IRQ numbers, operations), every slot of each. */
#define KC_HIST_MAP(name, ids) KC_SHARED_COUNTS_MAP(name, struct kc_hist_key, (ids) * KC_HIST_SLOTS)
#define KC_DEVICE_MAP(name) KC_SHARED_COUNTS_MAP(name, __u32, 1024)

/* A histogram counted per CPU (the consumers sum the copies, as for every per-CPU map), for
 * events as frequent as the scheduler's switches: a shared count's cache line would pass from
 * CPU to CPU at each of them. Small histograms only: each id costs 256 bytes per CPU. */
#define KC_PERCPU_HIST_MAP(name, ids)                         \
	struct {                                              \
		__uint(type, BPF_MAP_TYPE_PERCPU_HASH);       \
		__type(key, struct kc_hist_key);              \
		__type(value, __u64);                         \
		__uint(max_entries, (ids) * KC_HIST_SLOTS);   \
	} name SEC(".maps")

static __always_inline void kc_shared_add(void *counts, void *key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(counts, key);

	/* A new key's first count; when another CPU added it meanwhile, add to that. */
	if (!v && !bpf_map_update_elem(counts, key, &n, BPF_NOEXIST))
		return;
	if (!v)
		v = bpf_map_lookup_elem(counts, key);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void kc_device_add(void *devices, __u32 dev, __u64 n)
{
	kc_shared_add(devices, &dev, n);
}

/* The handler in flight on this CPU (`<name>_starts`, one slot per CPU): handlers of one kind
 * do not nest on a CPU (hard IRQ handlers run with interrupts off, softirqs with softirqs
 * off), so one slot holds the one running, and its id tells an exit whose entry was missed
 * (attached in between) from the entry's own. */
struct kc_handler_start {
	__u64 ns;
	__u32 id;
	__u32 running;
};

#define KC_HANDLER_START_MAP(name)                       \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__type(key, __u32);                      \
		__type(value, struct kc_handler_start);  \
		__uint(max_entries, 1);                  \
	} name SEC(".maps")

static __always_inline void kc_handler_start(void *starts, __u32 id)
{
	__u32 zero = 0;
	struct kc_handler_start *s = bpf_map_lookup_elem(starts, &zero);

	if (!s)
		return;
	s->ns = bpf_ktime_get_ns();
	s->id = id;
	s->running = 1;
}

/* Nanoseconds since handler `id` entered on this CPU, or 0 when its entry was not seen. */
static __always_inline __u64 kc_handler_elapsed(void *starts, __u32 id)
{
	__u32 zero = 0;
	struct kc_handler_start *s = bpf_map_lookup_elem(starts, &zero);

	if (!s || !s->running || s->id != id)
		return 0;
	s->running = 0;
	return bpf_ktime_get_ns() - s->ns;
}

/* Handlers that do not nest on a CPU (IRQ number, softirq vector), as a collector `name` with
 * totals only (interrupt context: the current task is whichever was interrupted):
 * kc_<name>_enter(id) and kc_<name>_leave(id) count entries and exits, and in return mode put
 * each handler's latency in `<name>_latency` by id (`ids` of them), timed from `<name>_starts`. */
#define KC_HANDLER_COLLECTOR(name, ids)                                                      \
	KC_TOTALS(name, irq)                                                                 \
	KC_IF_RETURN(KC_HANDLER_START_MAP(name##_starts); KC_HIST_MAP(name##_latency, ids);) \
	static __always_inline void kc_##name##_enter(__u32 id)                         \
	{                                                                               \
		kc_##name##_count(KC_IRQ_ENTRY, 1);                                     \
		KC_IF_RETURN(kc_handler_start(&name##_starts, id);)                     \
	}                                                                               \
	static __always_inline void kc_##name##_leave(__u32 id)                         \
	{                                                                               \
		KC_IF_RETURN(__u64 ns = kc_handler_elapsed(&name##_starts, id);         \
			     kc_##name##_count(KC_IRQ_EXIT, 1);                         \
			     if (ns) kc_hist_add(&name##_latency, id, ns);)             \
	}

/* floor(log2(v)) without loops (the verifier of older kernels rejects bounded loops). */
static __always_inline __u32 kc_log2(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/* Makes `var` opaque to clang here: a mask applied after it stays in the program, where clang
 * would otherwise fold it into the arithmetic before (kc_slot's clamp, say) and leave the
 * verifier an offset it cannot bound ("unbounded memory access", 5.10). */
#define kc_barrier_var(var) asm volatile("" : "+r"(var))

/* Histogram slot of a duration: log2 of its microseconds, clamped to the histogram. */
static __always_inline __u32 kc_slot(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 hi = us >> 32;
	__u32 slot = hi ? kc_log2(hi) + 32 : kc_log2((__u32)us);

	return slot < KC_HIST_SLOTS ? slot : KC_HIST_SLOTS - 1;
}

static __always_inline void kc_hist_add(void *hist, __u32 id, __u64 ns)
{
	struct kc_hist_key key = { .id = id, .slot = kc_slot(ns) };

	kc_shared_add(hist, &key, 1);
}

/* Counts `ns` in its slot of id `id` of a KC_PERCPU_HIST_MAP, on this CPU's copy. */
static __always_inline void kc_percpu_hist_add(void *hist, __u32 id, __u64 ns)
{
	struct kc_hist_key key = { .id = id, .slot = kc_slot(ns) };
	__u64 one = 1, *v = bpf_map_lookup_elem(hist, &key);

	/* A new slot's first count; when another CPU added the slot meanwhile, add to ours. */
	if (!v && !bpf_map_update_elem(hist, &key, &one, BPF_NOEXIST))
		return;
	if (!v)
		v = bpf_map_lookup_elem(hist, &key);
	if (v)
		*v += 1;
}

/* Stores now under `key`, for a return probe to compute the latency. */
static __always_inline void kc_start(void *starts, void *key)
{
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(starts, key, &ts, BPF_ANY);
}

/* Nanoseconds since kc_start(key), or 0 when the entry was not seen; forgets the key. */
static __always_inline __u64 kc_elapsed(void *starts, void *key)
{
	__u64 *ts = bpf_map_lookup_elem(starts, key);
	__u64 delta;

	if (!ts)
		return 0;
	delta = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(starts, key);
	return delta;
}

/* Stores now as thread `tid`'s start: in place where the thread has a slot, else in a new one. */
static __always_inline void kc_thread_start(void *starts, __u32 tid)
{
	__u64 ts = bpf_ktime_get_ns();
	__u64 *slot = bpf_map_lookup_elem(starts, &tid);

	if (slot)
		*slot = ts;
	else
		bpf_map_update_elem(starts, &tid, &ts, BPF_ANY);
}

/* Nanoseconds since thread `tid`'s kc_thread_start, or 0 when none is pending; 0 marks the
 * slot spent (the next end without a start is not timed from this one). */
static __always_inline __u64 kc_thread_elapsed(void *starts, __u32 tid)
{
	__u64 *slot = bpf_map_lookup_elem(starts, &tid);
	__u64 start;

	if (!slot || !*slot)
		return 0;
	start = *slot;
	*slot = 0;
	return bpf_ktime_get_ns() - start;
}

char LICENSE[] SEC("license") = "GPL";

#endif
