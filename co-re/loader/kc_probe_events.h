/* SPDX-License-Identifier: GPL-2.0 */
/* Return probes made through tracefs's kprobe_events with room for the calls in flight
 * (kc_probe_events.c). */
#ifndef KC_PROBE_EVENTS_H
#define KC_PROBE_EVENTS_H

#include <bpf/libbpf.h>

/* How many calls of a probed function a return probe follows at once on a host with this many
 * possible CPUs. */
unsigned kc_probe_events_maxactive(int possible_cpus);

/* Attaches `prog` at the return of `fn` (at `addr` when not 0) through a kprobe_events probe;
 * *index names the event for kc_probe_events_missed (-1 when none was made). NULL with errno
 * set where that fails: the caller falls back to the kprobe PMU. */
struct bpf_link *kc_probe_events_attach_return(struct bpf_program *prog, const char *fn,
					       unsigned long long addr, int *index);

/* The calls the event `index` missed (its pool was empty), as kprobe_profile says; 0 if none
 * or unknown. */
unsigned long long kc_probe_events_missed(int index);

/* Removes every event this process made; their links must be destroyed first. */
void kc_probe_events_remove(void);

/* Removes the events of kc-loaders that are gone. */
void kc_probe_events_sweep(void);

#endif
