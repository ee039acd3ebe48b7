/* SPDX-License-Identifier: GPL-2.0 */
/* Tracepoint records for legacy objects. Kernel headers do not carry these (the kernel
 * generates them), so their layouts are written here from the tracepoints' `format` files;
 * they have been stable since 5.10. CO-RE objects use vmlinux.h's definitions, relocated. */
#ifndef KC_LEGACY_TP_H
#define KC_LEGACY_TP_H

struct kc_trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sys_enter {
	struct kc_trace_entry ent;
	long id;
	unsigned long args[6];
};

struct trace_event_raw_sys_exit {
	struct kc_trace_entry ent;
	long id;
	long ret;
};

struct trace_event_raw_sched_process_fork {
	struct kc_trace_entry ent;
	char parent_comm[16];
	pid_t parent_pid;
	char child_comm[16];
	pid_t child_pid;
};

struct trace_event_raw_sched_process_exec {
	struct kc_trace_entry ent;
	__u32 __data_loc_filename;
	pid_t pid;
	pid_t old_pid;
};

struct trace_event_raw_sched_process_template {
	struct kc_trace_entry ent;
	char comm[16];
	pid_t pid;
	int prio;
};

struct trace_event_raw_block_rq {
	struct kc_trace_entry ent;
	dev_t dev;
	sector_t sector;
	unsigned int nr_sector;
	unsigned int bytes;
};

struct trace_event_raw_block_rq_completion {
	struct kc_trace_entry ent;
	dev_t dev;
	sector_t sector;
	unsigned int nr_sector;
	int error;
};

struct trace_event_raw_irq_handler_entry {
	struct kc_trace_entry ent;
	int irq;
	__u32 __data_loc_name;
};

struct trace_event_raw_irq_handler_exit {
	struct kc_trace_entry ent;
	int irq;
	int ret;
};

struct trace_event_raw_softirq {
	struct kc_trace_entry ent;
	unsigned int vec;
};

struct trace_event_raw_mark_victim {
	struct kc_trace_entry ent;
	int pid;
};

struct trace_event_raw_mm_vmscan_write_folio {
	struct kc_trace_entry ent;
	unsigned long pfn;
	int reclaim_flags;
};

/* Before 6.2: the same record under the event's old name. */
struct trace_event_raw_mm_vmscan_writepage {
	struct kc_trace_entry ent;
	unsigned long pfn;
	int reclaim_flags;
};

struct trace_event_raw_sock_msg_length {
	struct kc_trace_entry ent;
	void *sk;
	__u16 family;
	__u16 protocol;
	int ret;
	int flags;
};

struct trace_event_raw_inet_sock_set_state {
	struct kc_trace_entry ent;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

struct trace_event_raw_sched_wakeup_template {
	struct kc_trace_entry ent;
	char comm[16];
	pid_t pid;
	int prio;
	int target_cpu;
};

struct trace_event_raw_sched_switch {
	struct kc_trace_entry ent;
	char prev_comm[16];
	pid_t prev_pid;
	int prev_prio;
	long prev_state;
	char next_comm[16];
	pid_t next_pid;
	int next_prio;
};

struct trace_event_raw_net_dev_xmit {
	struct kc_trace_entry ent;
	void *skbaddr;
	unsigned int len;
	int rc;
	__u32 __data_loc_name;
};

struct trace_event_raw_net_dev_template {
	struct kc_trace_entry ent;
	void *skbaddr;
	unsigned int len;
	__u32 __data_loc_name;
};

#endif
