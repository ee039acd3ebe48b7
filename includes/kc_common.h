/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by every collector, BPF side and user space: map layouts and counter indexes.
 * BPF code gets __u32/__u64 from the kernel headers (legacy) or vmlinux.h (CO-RE); user space
 * from <linux/types.h>. */
#ifndef KC_COMMON_H
#define KC_COMMON_H

/* Latency histograms: slot i counts events that took [2^i, 2^(i+1)) microseconds. */
#define KC_HIST_SLOTS 32

struct kc_hist {
	__u64 slots[KC_HIST_SLOTS];
};

/* Per-process task counters, keyed by tgid (process collector). */
struct kc_task_stat {
	__u64 forks;
	__u64 execs;
	__u64 exits;
	__u64 releases;
	__u64 fork_errors;
};

/* Latency histogram keyed by a small id (IRQ number, softirq vector, block device). */
struct kc_hist_key {
	__u32 id;
	__u32 slot;
};

#endif
