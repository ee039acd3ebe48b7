/* SPDX-License-Identifier: GPL-2.0 */
/* pagefault: page faults handled (handle_mm_fault), per application; return mode counts the
 * major ones (the page came from storage) and the failed ones (out of memory, SIGBUS,
 * SIGSEGV). Faults are where a process's memory behaviour shows: a burst of major faults is
 * a working set that no longer fits.
 * Families: fault is handle_mm_fault (trampoline, probe; user and kernel accesses to user
 * memory) or, on x86, exceptions/page_fault_user (tracepoint; faults from user mode only);
 * major and error need the fault's result: trampoline and probe only. */

KC_COLLECTOR(pagefault, pagefault)

static __always_inline void kc_pagefault_result(unsigned int ret)
{
	if (ret & VM_FAULT_MAJOR)
		kc_pagefault_count(KC_PAGEFAULT_MAJOR, 1);
	if (ret & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV))
		kc_pagefault_count(KC_PAGEFAULT_ERROR, 1);
}

KC_FUNC_ENTRY(kc_pagefault_fault, handle_mm_fault, kc_pagefault_count(KC_PAGEFAULT_FAULT, 1))
KC_FUNC_RETURN(kc_pagefault_fault, handle_mm_fault, unsigned int, kc_pagefault_result(ret), 4)

#if defined(__TARGET_ARCH_x86)
SEC("tracepoint/exceptions/page_fault_user")
int kc_pagefault_fault__tracepoint(void *ctx)
{
	kc_pagefault_count(KC_PAGEFAULT_FAULT, 1);
	return 0;
}
#endif
