/* SPDX-License-Identifier: GPL-2.0 */
/* What a loaded collector's maps hold, by their names (includes/kc_bpf.h): `<c>_counters`
 * (totals), `<c>_apps` (per application) and `<c>_ctrl` (its control), `<c>_latency`
 * (histograms). Counter names come from the object's own BTF. */
#ifndef KC_MAPS_H
#define KC_MAPS_H

#include <stdio.h>

#include <bpf/libbpf.h>

#include "kc_observed.h"
#include "kc_streams.h"

/* --group-by: the values of enum kc_group_by; --table-size 0 keeps the object's own size;
 * --map-reads: enum kc_map_reads (kc_map_walk.h), how a collection reads the tables. */
struct kc_app_options {
	int group_by;
	unsigned int table_size;
	unsigned int flow_table_size; /* --flow-table-size: rows of each `_flows` table; 0 keeps the object's */
	int map_reads;
	int no_streams; /* --streams off: the stream events stay out, the tables keep every row */
	unsigned int stream_size; /* --stream-size: bytes of each stream's ring; 0 keeps the object's */
};

const char *kc_group_by_name(int group_by);
/* enum kc_group_by for "none", "process", "cgroup"; -1 otherwise. */
int kc_group_by_parse(const char *s);

/* Before load: sizes each apps table; start-time hashes allocate as they go where the kernel
 * allows (6.1 on). */
void kc_maps_prepare(struct bpf_object *obj, const struct kc_app_options *o);
/* Whether the loader can read every map of the object (its counter structs fit): 0, or -1 with
 * `why` saying which limit to raise. Checked before loading, never truncated silently. */
int kc_maps_check(const struct bpf_object *obj, char *why, size_t n);
/* After load: writes each control map. 0, or -errno. */
int kc_maps_control(struct bpf_object *obj, const struct kc_app_options *o);
/* Between two runs of one loaded object: every array value zero, every hash empty, the
 * control maps written again, as though just loaded. 0, or -errno. */
int kc_maps_reset(struct bpf_object *obj, const struct kc_app_options *o);
/* After the workload: the object's counters, rows, control, histograms and what its streams
 * delivered as JSON members (`"counters": {...}, "unobserved": {...}, ...` without braces)
 * into `json`, and a human summary into `text` (both malloc'd); rows of processes that exited
 * are removed from the tables first. */
void kc_maps_report(struct bpf_object *obj, const struct kc_app_options *o, const struct kc_observed *seen,
		    const struct kc_object_streams *streams, char **json, char **text);

#endif
