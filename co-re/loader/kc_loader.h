/* SPDX-License-Identifier: GPL-2.0 */
/* kc-loader's account of each object: its programs, events and what its maps hold, filled by
 * kc-loader.c and printed by kc_output.c. */
#ifndef KC_LOADER_H
#define KC_LOADER_H

#include <sys/types.h>

#include <bpf/libbpf.h>

#include "kc_attach.h"
#include "kc_maps.h"

#define MAX_PROGS 128
#define MAX_EVENTS 32
#define LOG_TAIL 2048

struct prog_result {
	char name[64];
	char target[128];
	const char *state; /* "attached", "loaded", "skipped", "failed" */
	char detail[160];
	int event;	   /* index in events, -1: outside any family (always loaded when it can be) */
	int family;
	char group[128];   /* its alternatives share this */
	char section[128];
	int target_ok;	   /* the kernel has its target and can attach its kind there */
	int target_why;	   /* enum kc_why, or -1: not asked yet */
	char why[160];	   /* why not, when not */
	int chosen;	   /* the variant its group uses */
};

struct event_result {
	char name[64];
	int family;		       /* the family chosen, -1: none observes it */
	unsigned present;	       /* bit f: the object has family f's programs for it */
	int banned[KC_N_FAMILIES];     /* failed to load or attach here */
	enum kc_why kind[KC_N_FAMILIES]; /* why each family was passed over */
	char why[KC_N_FAMILIES][200];	 /* the same, in words */
};

struct object_result {
	char name[256];
	const char *path;	/* or: */
	const void *mem;
	size_t mem_size;
	int mode;		/* --attach: a family or KC_ATTACH_AUTO */
	const struct kc_app_options *apps;
	char *counters_json;	/* what its maps hold (kc_maps_report) */
	char *counters_text;
	int strict;
	const char *status;	/* "ok", "partial" (an event no family observes), "failed" */
	char error[256];
	char log_tail[LOG_TAIL];
	int nprogs, nevents;
	struct prog_result progs[MAX_PROGS];
	struct event_result events[MAX_EVENTS];
	struct bpf_link *links[MAX_PROGS];
	struct bpf_object *obj; /* kept open until the counters are read */
	double ms_choose, ms_load, ms_attach; /* where its time went */
};

/* The report of `n` objects: JSON (`--json`) or a table for people. */
void kc_print_json(struct object_result *rs, int n, const char *kernel, pid_t workload_pid);
void kc_print_table(struct object_result *rs, int n, const char *kernel);

#endif
