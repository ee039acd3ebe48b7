/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel's own accounting of what a pass observed, for comparing ours with it: the
 * workload's figures (read from /proc/<pid> after it exited, before it is reaped) and the
 * system's over two windows, the workload's run (inner) and attach to detach (outer). A
 * system-wide counter of ours must lie between the kernel's two deltas. */
#ifndef KC_KERNEL_H
#define KC_KERNEL_H

#include <stdio.h>
#include <sys/types.h>

#define KC_MAX_FIGURES 40

/* Named figures, "<file>.<name>" (e.g. "io.syscr", "vmstat.pgfault"). */
struct kc_figures {
	int n;
	char names[KC_MAX_FIGURES][48];
	unsigned long long values[KC_MAX_FIGURES];
};

/* The system-wide figures now: /proc/stat, /proc/vmstat, /proc/net/snmp, /proc/net/dev,
 * /proc/interrupts. */
void kc_system_figures(struct kc_figures *f);
/* The figures of process `pid`'s main thread: /proc/<pid>/task/<pid>/{io,stat,status} (I/O,
 * faults, context switches). The thread's own, because /proc/<pid>/io adds the I/O of every
 * child the process reaped, which has rows of its own (a workload's other threads are not
 * counted: judge single-threaded workloads). For an exited process not yet reaped (waitid
 * WNOWAIT), they are its final ones. */
void kc_process_figures(pid_t pid, struct kc_figures *f);
/* `after` - `before`, name by name (a name missing from either is left out); `delta` may be
 * `after`. */
void kc_figures_delta(const struct kc_figures *before, const struct kc_figures *after, struct kc_figures *delta);
/* {"name": value, ...} */
void kc_figures_json(FILE *out, const struct kc_figures *f);
/* Whether the running kernel is `major`.`minor` or later (uname's release; 0 where unreadable). */
int kc_kernel_at_least(int major, int minor);

#endif
