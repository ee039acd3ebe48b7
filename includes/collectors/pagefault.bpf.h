/* SPDX-License-Identifier: GPL-2.0 */
/* pagefault: page faults per application, as the kernel accounts them for each task (the
 * min_flt and maj_flt that ps and /proc/<pid>/stat show): `fault` every fault a task completed,
 * `major` those that were major (the page came from storage) or had to be retried, `error`
 * those that failed (out of memory, SIGBUS, SIGSEGV, a poisoned page). A burst of major faults
 * is a working set that no longer fits. `exception` counts something else: page-fault
 * exceptions raised in user mode, retried and failed ones included, faults the kernel takes
 * on a process's behalf (reading its memory in a system call) left out.
 * Families: fault is handle_mm_fault's return (trampoline: fexit, which sees its flags; probe:
 * kprobe and kretprobe), counted with the kernel's own rule, so in return mode only; exception
 * is x86's exceptions/page_fault_user (trampoline: tp_btf; tracepoint: classic). */

KC_COLLECTOR(pagefault, pagefault)

/* FAULT_FLAG_TRIED marks a retried fault: the same bit since 3.x. */
#define KC_FAULT_FLAG_TRIED 0x20
/* The kernel's VM_FAULT_ERROR (a macro, so not in vmlinux.h). */
#define KC_VM_FAULT_ERROR                                                                         \
	(VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE | \
	 VM_FAULT_FALLBACK)

/* A handle_mm_fault that returned `ret`, as mm_account_fault counts it: a call to be retried
 * counts nothing (its retry will), a failed one is an error, and a completed one a major fault
 * when it was major or is itself a retry (`tried`), else a minor one. */
static __always_inline void kc_pagefault_done(unsigned int ret, int tried)
{
	if (ret & VM_FAULT_RETRY)
		return;
	if (ret & KC_VM_FAULT_ERROR) {
		kc_pagefault_count(KC_PAGEFAULT_ERROR, 1);
		return;
	}
	kc_pagefault_count(KC_PAGEFAULT_FAULT, 1);
	if ((ret & VM_FAULT_MAJOR) || tried)
		kc_pagefault_count(KC_PAGEFAULT_MAJOR, 1);
}

#if KC_RETURN_MODE
#if KC_CORE
/* handle_mm_fault(vma, address, flags[, regs]): flags is argument 2 on every kernel. */
SEC("fexit/handle_mm_fault")
int kc_pagefault_fault__trampoline_ret(unsigned long long *ctx)
{
	unsigned int flags = ctx[2];

	kc_pagefault_done((unsigned int)kc_fexit_ret(ctx, 4), flags & KC_FAULT_FLAG_TRIED);
	return 0;
}
#endif

/* A kretprobe sees no arguments: the entry notes the threads whose fault is a retry (rare),
 * and the return takes the note back. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1024);
} pagefault_retries SEC(".maps");

SEC("kprobe/handle_mm_fault")
int BPF_KPROBE(kc_pagefault_fault__probe, void *vma, unsigned long address, unsigned int flags)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u8 yes = 1;

	if (flags & KC_FAULT_FLAG_TRIED)
		bpf_map_update_elem(&pagefault_retries, &tid, &yes, BPF_ANY);
	return 0;
}

SEC("kretprobe/handle_mm_fault")
int BPF_KRETPROBE(kc_pagefault_fault__probe_ret, unsigned int ret)
{
	__u32 tid = bpf_get_current_pid_tgid();
	int tried = bpf_map_lookup_elem(&pagefault_retries, &tid) != NULL;

	if (tried)
		bpf_map_delete_elem(&pagefault_retries, &tid);
	kc_pagefault_done(ret, tried);
	return 0;
}
#endif

#if defined(__TARGET_ARCH_x86)
KC_TP_COUNT(kc_pagefault_exception, exceptions, page_fault_user, kc_pagefault_count(KC_PAGEFAULT_EXCEPTION, 1))
#endif
