/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
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

/* How the per-application tables (`<collector>_apps`) group: the control map's group_by. */
enum kc_group_by {
	KC_GROUP_NONE,	  /* no per-application data: the programs skip the table */
	KC_GROUP_PROCESS, /* keyed by process (tgid) */
	KC_GROUP_CGROUP,  /* keyed by cgroup id (bpf_get_current_cgroup_id) */
};

/* A collector's control map (`<collector>_ctrl`, one entry). The agent writes group_by after
 * load (kc-loader --group-by); the programs count what they did to the apps table, so that an
 * agent sees it running full: an LRU table evicts silently, and the evictions are
 * insertions - rows present - rows the agent removed (kc-loader reports them as `evicted`). */
struct kc_ctrl {
	__u64 group_by;	  /* enum kc_group_by; 0 (none) until the agent says otherwise */
	__u64 insertions; /* entries the programs added */
	__u64 failures;	  /* entries they could not add */
};

/* Latency histogram keyed by a small id (IRQ number, softirq vector, block device). */
struct kc_hist_key {
	__u32 id;
	__u32 slot;
};

#endif
