/* SPDX-License-Identifier: GPL-2.0 */
/* kc-loader's account of each object: its programs, events and what its maps hold, filled by
 * kc-loader.c and printed by kc_output.c. */
#ifndef KC_LOADER_H
#define KC_LOADER_H

#include <sys/types.h>

#include <bpf/libbpf.h>

#include "kc_attach.h"
#include "kc_kernel.h"
#include "kc_maps.h"
#include "kc_streams.h"

#define MAX_PROGS 128
#define MAX_EVENTS 32
#define MAX_MODES 4
#define LOG_TAIL 2048

/* A program's state, as the report's "state" says it (kc_prog_state_name). */
enum kc_prog_state {
	KC_PROG_SKIPPED,  /* not part of this mode's choice: "detail" says why */
	KC_PROG_LOADED,	  /* loaded, not attached (--no-attach) */
	KC_PROG_ATTACHED,
	KC_PROG_FAILED,
};

/* An object's status, as the report's "status" says it (kc_object_status_name). */
enum kc_object_status {
	KC_OBJECT_OK,
	KC_OBJECT_PARTIAL, /* an event that no family can observe on this kernel */
	KC_OBJECT_FAILED,
	/* A forced family's pass that would attach exactly what the run's auto pass attaches:
	 * the object sits it out, and the auto pass reports its counts (no counters here). */
	KC_OBJECT_AS_AUTO,
};

const char *kc_prog_state_name(enum kc_prog_state s);
const char *kc_object_status_name(enum kc_object_status s);

/* The verifier's statistics of one program's load (kc_verifier.c). */
struct kc_verifier_stats {
	int known; /* the log had them */
	unsigned insns, limit, states, peak_states, max_states_per_insn;
	unsigned long long usec;
};

struct prog_result {
	char name[64];
	char target[128];
	enum kc_prog_state state;
	char detail[160];
	int event;	   /* index in events, -1: outside any family (always loaded when it can be) */
	int family;
	char group[128];   /* its alternatives share this */
	char section[128];
	int target_ok;	   /* the kernel has its target and can attach its kind there */
	int target_why;	   /* enum kc_why, or -1: not asked yet */
	char why[160];	   /* why not, when not */
	int chosen;	   /* the variant its group uses */
	struct kc_verifier_stats verifier; /* when it loaded */
	int probe_event;   /* its kprobe_events probe (kc_probe_events.c) while attached, else -1 */
};

struct event_result {
	char name[64];
	int family;		       /* the family chosen, -1: none observes it */
	unsigned present;	       /* bit f: the object has family f's programs for it */
	unsigned load;		       /* bit f: family f is in the load set (what some mode chooses) */
	unsigned loaded;	       /* bit f: family f's chosen programs are loaded */
	int banned[KC_N_FAMILIES];     /* failed to load or attach here */
	enum kc_why kind[KC_N_FAMILIES]; /* why each family was passed over */
	char why[KC_N_FAMILIES][200];	 /* the same, in words */
};

struct object_result {
	char name[256];
	const char *path;	/* or: */
	const void *mem;
	size_t mem_size;
	int modes[MAX_MODES];	/* --attach: each a family or KC_ATTACH_AUTO; loaded for all */
	int nmodes;
	int mode;		/* the one attached now */
	const struct kc_app_options *apps;
	char *counters_json;	/* what its maps hold (kc_maps_report) */
	char *counters_text;
	int strict;
	enum kc_object_status status;
	int load_failed;	/* no mode can attach it: error and log_tail say why */
	char error[256];
	char log_tail[LOG_TAIL];
	int nprogs, nevents;
	struct prog_result progs[MAX_PROGS];
	char *stats_logs;	/* each program's verifier log while it loads (kc_verifier.c) */
	int no_stats;		/* a log was too small: load without them */
	struct event_result events[MAX_EVENTS];
	struct bpf_link *links[MAX_PROGS];
	struct bpf_object *obj; /* kept open until the counters are read */
	struct kc_object_streams streams; /* what its stream maps delivered in this pass */
	double ms_choose, ms_load, ms_attach; /* where its time went */
	/* Runs of its programs the kernel skipped in this pass (recursion_misses: a program of
	 * the same kind already running on that CPU, preempted or interrupted): its counts may be
	 * low by up to this many. `misses_before` holds the programs' total at attach. */
	unsigned long long missed_runs, misses_before;
};

/* The kernel's count of skipped runs of every loaded program of the object (recursion_misses,
 * 5.12 on; 0 before). */
unsigned long long kc_object_misses(const struct object_result *r);

/* Room for a program's statistics and the few unconditional warnings a load may print: a
 * log too small for what the kernel writes fails the load with ENOSPC (kc_object_load loads
 * again without statistics then). */
#define KC_STATS_LOG 4096

/* Gives each program `obj` will load a log at the verifier's statistics level. */
void kc_verifier_request(struct bpf_object *obj, struct object_result *r);
/* After a load: each loaded program's statistics from its log. */
void kc_verifier_read(struct bpf_object *obj, struct object_result *r);
/* Passes each program's non-empty log to `take` (after a failed load: the verifier's error
 * is there, not in libbpf's messages). */
void kc_verifier_log_each(struct object_result *r, void (*take)(const char *log));
/* Frees the logs (and takes them from `obj`'s programs, when it is still open). */
void kc_verifier_release(struct bpf_object *obj, struct object_result *r);
/* One log's statistics line into `v`: 0, or -1 when it has none. */
int kc_verifier_parse(const char *log, struct kc_verifier_stats *v);

/* CLOCK_MONOTONIC in milliseconds: where a report's time went. */
double kc_now_ms(void);
/* libbpf's messages go to a buffer whose tail a failing object's report keeps; `debug`
 * keeps its debug messages too. */
/* Opens and loads the object: for each event, the family each of `modes` chooses (a family
 * the verifier refuses is banned for the event and the rest loaded again). 0, or -1 with
 * `error` and `log_tail` filled. */
int kc_object_load(struct object_result *r);
/* Chooses each event's family for `mode` among what loaded, and (when `attach`) attaches
 * them; a family that fails to attach is banned for its event and the next one tried
 * (loading it when it is not). Sets `status`. 0, or -1 when the object failed. */
int kc_object_attach(struct object_result *r, int mode, int attach);
void kc_object_detach(struct object_result *r);
/* Where `mode`'s choice is `other`'s (the auto pass's), event by event, the object takes no
 * part in `mode`'s pass (KC_OBJECT_AS_AUTO, nothing attaches) and 1 is returned; else 0. */
int kc_object_sit_out(struct object_result *r, int mode, int other);
/* Detaches every object's links at once, from several threads (see kc_object.c). */
void kc_objects_detach(struct object_result *rs, int n);

/* One pass over the objects: its mode, its workload, the kernel's own figures, and where its
 * time went. */
struct kc_pass {
	const char *kernel;
	int mode;
	pid_t workload_pid;
	int measured;		 /* a workload ran: `workload` and `inner` hold its figures */
	struct kc_figures workload; /* the workload's own, as it exited */
	struct kc_figures inner;    /* the system's over the workload's run */
	struct kc_figures outer;    /* the system's from before attach to after detach */
	int stopped_by; /* the signal that ended the collection early, or 0 */
	double ms_attach, ms_workload, ms_detach, ms_read;
};

/* "SIGINT", "SIGTERM" or "SIGHUP": the signals that stop a collection early. */
const char *kc_stop_signal_name(int sig);

/* The report of `n` objects after a pass: JSON (`--json`) or a table for people. */
void kc_print_json(struct object_result *rs, int n, const struct kc_pass *pass);
void kc_print_table(struct object_result *rs, int n, const struct kc_pass *pass);

#endif
