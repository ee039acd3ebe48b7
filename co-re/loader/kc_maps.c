// SPDX-License-Identifier: GPL-2.0
/* Reading a collector's maps by name and BTF. See kc_maps.h. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "kc_common.h"
#include "kc_dns_servers.h"
#include "kc_flows.h"
#include "kc_json.h"
#include "kc_kernel.h"
#include "kc_map_walk.h"
#include "kc_maps.h"

#define MAX_COUNTERS KC_MAX_COUNTERS

static const char *const group_names[] = { "none", "process", "cgroup" };

const char *kc_group_by_name(int group_by)
{
	return group_by >= 0 && group_by <= KC_GROUP_CGROUP ? group_names[group_by] : "?";
}

int kc_group_by_parse(const char *s)
{
	for (int i = 0; i <= KC_GROUP_CGROUP; i++)
		if (strcmp(s, group_names[i]) == 0)
			return i;
	return -1;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether a tracing program's hash map may allocate its elements as they come: 6.1's BPF
 * memory allocator made that safe in any context (and the verifier stopped warning); before, an
 * allocation under the locks of the event being traced could deadlock. The rule every consumer
 * applies (kc_common::plan::MapPlan::allocates_as_it_goes, examples/go). */
static int tracing_may_allocate(void)
{
	return kc_kernel_at_least(6, 1);
}

void kc_maps_prepare(struct bpf_object *obj, const struct kc_app_options *o)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);

		if (o->table_size && has_suffix(name, "_apps"))
			bpf_map__set_max_entries(map, o->table_size);
		if (o->flow_table_size && has_suffix(name, "_flows"))
			bpf_map__set_max_entries(map, o->flow_table_size);
		/* No stream event loads (kc_object.c): nothing would fill or poll the ring. */
		if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF && kc_streams_unwanted(o->no_streams))
			bpf_map__set_autocreate(map, false);
		else if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF && o->stream_size)
			bpf_map__set_max_entries(map, o->stream_size);
		/* A start-time hash (KC_START_MAP) holds the calls in flight, a few hundred at most:
		 * where the kernel allows, its elements are allocated as they come, and it holds
		 * kernel memory for those alone instead of all its entries from the start. */
		if (has_suffix(name, "_starts") && bpf_map__type(map) == BPF_MAP_TYPE_HASH && tracing_may_allocate())
			bpf_map__set_map_flags(map, bpf_map__map_flags(map) | BPF_F_NO_PREALLOC);
	}
}

int kc_maps_control(struct bpf_object *obj, const struct kc_app_options *o)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		struct kc_ctrl ctrl = { .group_by = o->group_by };
		__u32 key = 0;

		if (has_suffix(bpf_map__name(map), "_ctrl") &&
		    bpf_map_update_elem(bpf_map__fd(map), &key, &ctrl, BPF_ANY))
			return -errno;
	}
	return 0;
}

int kc_maps_reset(struct bpf_object *obj, const struct kc_app_options *o)
{
	struct bpf_map *map;
	int cpus = libbpf_num_possible_cpus();

	bpf_object__for_each_map(map, obj) {
		enum bpf_map_type type = bpf_map__type(map);
		int fd = bpf_map__fd(map), err = 0;
		void *key, *value;

		/* A stream has no keys: the previous pass drained it as it stopped. */
		if (bpf_map__is_internal(map) || type == BPF_MAP_TYPE_RINGBUF)
			continue;
		key = calloc(1, bpf_map__key_size(map));
		/* A per-CPU value is one 8-byte aligned slot per possible CPU. */
		value = calloc(cpus > 0 ? cpus : 1, (bpf_map__value_size(map) + 7) / 8 * 8);
		if (!key || !value) {
			err = -ENOMEM;
		} else if (type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY) {
			for (__u32 k = 0; k < bpf_map__max_entries(map) && !err; k++)
				err = bpf_map_update_elem(fd, &k, value, BPF_ANY) ? -errno : 0;
		} else {
			/* Each deletion can reorder the walk: start it again from the first key. */
			while (!err && bpf_map_get_next_key(fd, NULL, key) == 0)
				err = bpf_map_delete_elem(fd, key) ? -errno : 0;
		}
		free(key);
		free(value);
		if (err)
			return err;
	}
	return kc_maps_control(obj, o);
}

/* The struct a map's values are (a `_counters` map: one __u64 member per counter), or NULL. */
static const struct btf_type *value_struct(const struct bpf_object *obj, const struct bpf_map *map)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t = btf ? btf__type_by_id(btf, bpf_map__btf_value_type_id(map)) : NULL;

	return t && btf_is_struct(t) ? t : NULL;
}

/* A counter struct as read: its members' names (all __u64, in order) and, for each, why this
 * pass did not observe it ("" when it did). */
struct counters {
	int n;
	const char *names[MAX_COUNTERS];
	char unobserved[MAX_COUNTERS][KC_WHY_UNOBSERVED];
};

/* The counter struct of `map` (`<collector>_counters`); n is 0 when it has none (kc_maps_check
 * refused an object with more than MAX_COUNTERS). */
static void read_counter_struct(const struct bpf_object *obj, const struct bpf_map *map, const struct kc_observed *seen,
				struct counters *c)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t = value_struct(obj, map);
	const struct btf_member *m;
	char collector[64];

	c->n = 0;
	if (!t)
		return;
	c->n = btf_vlen(t) < MAX_COUNTERS ? btf_vlen(t) : MAX_COUNTERS;
	m = btf_members(t);
	for (int i = 0; i < c->n; i++)
		c->names[i] = btf__name_by_offset(btf, m[i].name_off);
	snprintf(collector, sizeof(collector), "%.*s", (int)(strlen(bpf_map__name(map)) - strlen("_counters")),
		 bpf_map__name(map));
	kc_observed_counters(btf, bpf_map__btf_value_type_id(map), collector, seen, c->n, c->unobserved);
}

int kc_maps_check(const struct bpf_object *obj, char *why, size_t n)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		const struct btf_type *t = has_suffix(bpf_map__name(map), "_counters") ? value_struct(obj, map) : NULL;

		if (t && btf_vlen(t) > MAX_COUNTERS) {
			snprintf(why, n, "%s holds %u counters, more than %d: split the collector or raise MAX_COUNTERS in co-re/loader/kc_maps.c",
				 bpf_map__name(map), btf_vlen(t), MAX_COUNTERS);
			return -1;
		}
		if (has_suffix(bpf_map__name(map), "_flows") && (bpf_map__key_size(map) != sizeof(__u64) ||
								 bpf_map__value_size(map) != sizeof(struct kc_flow))) {
			snprintf(why, n, "%s's rows are %u bytes under keys of %u, this loader's struct kc_flow %zu under a socket's address: use the loader of the object's release",
				 bpf_map__name(map), bpf_map__value_size(map), bpf_map__key_size(map), sizeof(struct kc_flow));
			return -1;
		}
		if (has_suffix(bpf_map__name(map), "_servers") && kc_dns_servers_check(map, why, n))
			return -1;
	}
	return 0;
}

/* The index of the counter `name`, -1 where the collector has none. */
static int counter_index(const struct counters *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->names[i], name) == 0)
			return i;
	return -1;
}

/* The total of the counter `name`, 0 where the collector has none. */
static unsigned long long counter_named(const struct counters *c, const unsigned long long *v, const char *name)
{
	int i = counter_index(c, name);

	return i < 0 ? 0 : v[i];
}

/* Whether the counter `name` was observed (a collector without it: not). */
static int counter_seen(const struct counters *c, const char *name)
{
	int i = counter_index(c, name);

	return i >= 0 && !c->unobserved[i][0];
}

/* {"name": value, ...}: null for a counter the pass did not observe. */
static void counters_json(struct kc_buf *b, const struct counters *c, const unsigned long long *v)
{
	kc_put_bytes(b, "{", 1);
	for (int i = 0; i < c->n; i++) {
		if (i)
			kc_put_bytes(b, ", ", 2);
		kc_put_string(b, c->names[i]);
		if (c->unobserved[i][0]) {
			kc_put_bytes(b, ": null", 6);
		} else {
			kc_put_bytes(b, ": ", 2);
			kc_put_u64(b, v[i]);
		}
	}
	kc_put_bytes(b, "}", 1);
}

/* {"name": "why", ...} of the counters the pass did not observe. */
static void unobserved_json(struct kc_buf *b, const struct counters *c)
{
	int k = 0;

	kc_put(b, "{");
	for (int i = 0; i < c->n; i++) {
		if (!c->unobserved[i][0])
			continue;
		kc_put(b, "%s", k++ ? ", " : "");
		kc_put_string(b, c->names[i]);
		kc_put(b, ": ");
		kc_put_string(b, c->unobserved[i]);
	}
	kc_put(b, "}");
}

static int ncpus(void)
{
	int n = libbpf_num_possible_cpus();

	return n > 0 ? n : 1;
}

/* The value copies one lookup of `map` returns: one per possible CPU for a per-CPU map, else
 * one (histograms and device counts are shared, added to atomically). */
static int value_copies(const struct bpf_map *map)
{
	switch (bpf_map__type(map)) {
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
		return ncpus();
	default:
		return 1;
	}
}

/* The totals: per-CPU values of key 0, summed per counter. */
static int read_totals(struct bpf_map *map, int n, unsigned long long *out)
{
	int cpus = ncpus();
	size_t vsize = bpf_map__value_size(map);
	unsigned long long *v = calloc(cpus, (vsize + 7) / 8 * 8);
	__u32 key = 0;

	if (!v)
		return -1;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &key, v)) {
		free(v);
		return -1;
	}
	for (int c = 0; c < cpus; c++)
		for (int i = 0; i < n; i++)
			out[i] += v[c * ((vsize + 7) / 8) + i];
	free(v);
	return 0;
}

struct ctrl_state {
	struct kc_ctrl ctrl;
	unsigned long long removed; /* rows of exited processes this collection removed */
	unsigned long long streamed; /* rows the programs moved into a stream (kc_streams.h) */
};

/* What a walk of an apps table carries from row to row. */
struct apps_walk {
	struct kc_buf *j;
	const struct counters *c;
	int group_by, rows, ngone, room;
	__u64 *gone;
};

static void visit_app_row(const void *k, const void *value, void *ctx)
{
	struct apps_walk *w = ctx;
	int exited = 0;
	__u64 key;

	memcpy(&key, k, sizeof(key));
	if (w->group_by == KC_GROUP_PROCESS && kill((pid_t)key, 0) && errno == ESRCH) {
		exited = 1;
		if (w->gone && w->ngone < w->room)
			w->gone[w->ngone++] = key;
	}
	kc_put(w->j, "%s{\"%s\": %llu, \"exited\": %s, \"counters\": ", w->rows ? ", " : "",
	    w->group_by == KC_GROUP_CGROUP ? "cgroup" : "tgid", (unsigned long long)key, exited ? "true" : "false");
	counters_json(w->j, w->c, value);
	kc_put(w->j, "}");
	w->rows++;
}

/* The rows of an apps table, then the removal of those of processes that exited: their last
 * figures are reported once, and the table keeps only the living. */
static void read_apps(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, const struct counters *c,
		      const struct kc_app_options *o, struct ctrl_state *cs)
{
	int group_by = o->group_by;
	struct apps_walk w = {
		.j = j,
		.c = c,
		.group_by = group_by,
		.room = (int)bpf_map__max_entries(map),
		.gone = calloc(bpf_map__max_entries(map), sizeof(__u64)),
	};
	int fd = bpf_map__fd(map), rows;
	unsigned long long evicted;

	kc_put(j, ", \"%s\": [", group_by == KC_GROUP_CGROUP ? "per_cgroup" : "per_process");
	/* Counter structs are checked to fit (kc_maps_check): the value is read whole. */
	kc_map_walk(fd, sizeof(__u64), bpf_map__value_size(map), o->map_reads, visit_app_row, &w);
	rows = w.rows;
	/* Deleted after the walk: deleting during it would restart it. */
	if (w.gone)
		cs->removed += kc_map_delete_all(fd, w.gone, (unsigned long)w.ngone, sizeof(__u64), o->map_reads);
	free(w.gone);
	/* This loader collects once, and removes rows of exited processes only after this walk. */
	evicted = kc_map_evicted(cs->ctrl.insertions, (unsigned long long)rows, cs->streamed);
	kc_put(j, "], \"apps\": {\"group_by\": \"%s\", \"table_size\": %u, \"rows\": %d, \"insertions\": %llu, "
	       "\"evicted\": %llu, \"failures\": %llu, \"removed_exited\": %llu}",
	    kc_group_by_name(group_by), bpf_map__max_entries(map), rows, (unsigned long long)cs->ctrl.insertions,
	    evicted, (unsigned long long)cs->ctrl.failures, cs->removed);
	kc_put(t, "  per %s: %d rows of %u (insertions %llu, evicted %llu, failures %llu, %llu of exited processes removed)\n",
	    group_by == KC_GROUP_CGROUP ? "cgroup" : "process", rows, bpf_map__max_entries(map),
	    (unsigned long long)cs->ctrl.insertions, evicted, (unsigned long long)cs->ctrl.failures, cs->removed);
}

/* A latency histogram's ids, each with its slot counts. */
struct hist_walk {
	int copies, ids;
	struct {
		__u32 id;
		unsigned long long slots[KC_HIST_SLOTS];
	} h[64];
};

static void visit_hist_slot(const void *k, const void *value, void *ctx)
{
	struct hist_walk *w = ctx;
	struct kc_hist_key key;
	const unsigned long long *v = value;
	int i;

	memcpy(&key, k, sizeof(key));
	if (key.slot >= KC_HIST_SLOTS)
		return;
	for (i = 0; i < w->ids && w->h[i].id != key.id; i++)
		;
	if (i == w->ids) {
		if (w->ids == 64)
			return;
		memset(&w->h[i], 0, sizeof(w->h[0]));
		w->h[w->ids++].id = key.id;
	}
	for (int c = 0; c < w->copies; c++)
		w->h[i].slots[key.slot] += v[c];
}

/* A latency histogram: counts keyed by {id, slot}, as {"id": [slot counts]}. */
static void read_histogram(struct kc_buf *j, struct bpf_map *map, int reads)
{
	struct hist_walk *w = calloc(1, sizeof(*w));

	if (!w)
		return;
	w->copies = value_copies(map);
	kc_map_walk(bpf_map__fd(map), sizeof(struct kc_hist_key), (size_t)w->copies * 8, reads, visit_hist_slot, w);
	kc_put(j, "\"%s\": {", bpf_map__name(map));
	for (int k = 0; k < w->ids; k++) {
		kc_put(j, "%s\"%u\": [", k ? ", " : "", w->h[k].id);
		for (int s = 0; s < KC_HIST_SLOTS; s++)
			kc_put(j, "%s%llu", s ? ", " : "", w->h[k].slots[s]);
		kc_put(j, "]");
	}
	kc_put(j, "}");
	free(w);
}

/* What a walk of a device map carries from device to device. */
struct devices_walk {
	struct kc_buf *j, *t;
	int copies, n;
};

static void visit_device(const void *k, const void *value, void *ctx)
{
	struct devices_walk *w = ctx;
	const unsigned long long *v = value;
	unsigned long long sum = 0;
	__u32 key;

	memcpy(&key, k, sizeof(key));
	for (int c = 0; c < w->copies; c++)
		sum += v[c];
	/* The kernel's dev_t: 12 bits of major above 20 of minor. */
	kc_put(w->j, "%s\"%u:%u\": %llu", w->n++ ? ", " : "", key >> 20, key & 0xfffff, sum);
	kc_put(w->t, " %u:%u=%llu", key >> 20, key & 0xfffff, sum);
}

/* Counts per device, keyed by a kernel dev_t, as {"major:minor": count}. */
static void read_devices(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, int reads)
{
	struct devices_walk w = { .j = j, .t = t, .copies = value_copies(map) };

	kc_put(j, "\"%s\": {", bpf_map__name(map));
	kc_put(t, "  %s:", bpf_map__name(map));
	kc_map_walk(bpf_map__fd(map), sizeof(__u32), (size_t)w.copies * 8, reads, visit_device, &w);
	kc_put(j, "}");
	kc_put(t, "\n");
}

/* One process exit as JSON, with its row's counters (null where it carried none). */
static void exit_json(struct kc_buf *j, const struct counters *c, const struct kc_process_exit *e)
{
	char comm[sizeof(e->comm) + 1] = { 0 };

	memcpy(comm, e->comm, sizeof(e->comm));
	kc_put(j, "{\"tgid\": %u, \"ppid\": %u, \"comm\": ", e->tgid, e->ppid);
	kc_put_string(j, comm);
	kc_put(j, ", \"exit_code\": %u, \"start_ns\": %llu, \"exit_ns\": %llu, \"row\": ", e->exit_code,
	    (unsigned long long)e->start_ns, (unsigned long long)e->exit_ns);
	if (e->has_row && c->n == KC_PROCESS_END) {
		/* Shaped as a row of the table it left: its process has exited. */
		kc_put(j, "{\"tgid\": %u, \"exited\": true, \"counters\": ", e->tgid);
		counters_json(j, c, (const unsigned long long *)&e->row);
		kc_put(j, "}");
	} else {
		kc_put(j, "null");
	}
	kc_put(j, "}");
}

/* One flow close: its final row, and whether it left the table with it. */
static void flow_close_json(struct kc_buf *j, const struct kc_flow_close *r)
{
	kc_put(j, "{\"had_row\": %s, \"flow\": ", r->has_row ? "true" : "false");
	kc_flow_json(j, &r->flow);
	kc_put(j, "}");
}

/* What each stream map delivered in the pass (kc_streams.h); the loss is the collector's own
 * counter (a record the ring had no room for is counted as it is refused). */
static void streams_json(struct kc_buf *j, struct kc_buf *t, const struct counters *c, const struct kc_object_streams *st)
{
	kc_put(j, ", \"streams\": {");
	for (int i = 0; st && i < st->n; i++) {
		const struct kc_stream *s = &st->s[i];

		kc_put(j, "%s", i ? ", " : "");
		kc_put_string(j, s->map);
		kc_put(j, ": {\"record\": ");
		kc_put_string(j, s->record_name);
		kc_put(j, ", \"received\": %llu, \"bytes\": %llu, \"malformed\": %llu, \"rows\": %llu, \"not_listed\": %llu",
		    s->received, s->bytes, s->malformed, s->rows, s->not_listed);
		kc_put(t, "  %s: %llu records of %s (%llu bytes), %llu with their rows\n", s->map, s->received,
		    s->record_name[0] ? s->record_name : "unknown type", s->bytes, s->rows);
		if (s->record != KC_RECORD_UNKNOWN)
			kc_put(j, ", \"%s\": [", s->record == KC_RECORD_PROCESS_EXIT ? "exits" : "closes");
		for (unsigned k = 0; s->record != KC_RECORD_UNKNOWN && k < s->nlisted; k++) {
			const void *r = s->listed + (size_t)k * s->record_size;

			kc_put(j, "%s", k ? ", " : "");
			if (s->record == KC_RECORD_PROCESS_EXIT)
				exit_json(j, c, r);
			else
				flow_close_json(j, r);
		}
		if (s->record != KC_RECORD_UNKNOWN)
			kc_put(j, "]");
		kc_put(j, "}");
	}
	kc_put(j, "}");
}

/* The kernel's own figure of a map's memory: the `memlock:` line of its fd's fdinfo (what the
 * kernel charges for it, as bpftool's bytes_memlock). Returns 0 where it cannot be read. */
static unsigned long long map_memlock(const struct bpf_map *map)
{
	char path[64], line[256];
	unsigned long long bytes = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", bpf_map__fd(map));
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &bytes) == 1)
			break;
	fclose(f);
	return bytes;
}

void kc_maps_report(struct bpf_object *obj, const struct kc_app_options *o, const struct kc_observed *seen,
		    const struct kc_object_streams *streams, char **json, char **text)
{
	struct kc_buf j = { 0 }, t = { 0 };
	struct bpf_map *map, *apps = NULL, *flows = NULL, *servers = NULL;
	struct counters c = { 0 };
	int hists = 0, devices = 0, found = 0;
	unsigned long long totals[MAX_COUNTERS] = { 0 }, memory = 0;
	int memory_unknown = 0;
	struct ctrl_state cs = { 0 };

	kc_put(&j, "\"counters\": ");
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		__u32 key = 0;

		/* A map not created (a stream of a run without streams) holds no memory. */
		if (bpf_map__is_internal(map) || bpf_map__fd(map) < 0)
			continue;
		{
			unsigned long long bytes = map_memlock(map);

			memory += bytes;
			memory_unknown |= bytes == 0;
		}
		if (has_suffix(name, "_counters") && !found) {
			read_counter_struct(obj, map, seen, &c);
			found = c.n > 0;
			if (found)
				read_totals(map, c.n, totals);
		} else if (has_suffix(name, "_apps")) {
			apps = map;
		} else if (has_suffix(name, "_flows")) {
			flows = map;
		} else if (has_suffix(name, "_servers")) {
			servers = map;
		} else if (has_suffix(name, "_ctrl")) {
			bpf_map_lookup_elem(bpf_map__fd(map), &key, &cs.ctrl);
		}
	}
	counters_json(&j, &c, totals);
	kc_put(&j, ", \"unobserved\": ");
	unobserved_json(&j, &c);
	kc_put(&t, "  counters:");
	for (int i = 0; i < c.n; i++) {
		if (c.unobserved[i][0])
			kc_put(&t, " %s=-", c.names[i]);
		else
			kc_put(&t, " %s=%llu", c.names[i], totals[i]);
	}
	kc_put(&t, "\n");
	for (int i = 0; i < c.n; i++)
		if (c.unobserved[i][0])
			kc_put(&t, "  %s unobserved: %s\n", c.names[i], c.unobserved[i]);
	for (int i = 0; streams && i < streams->n; i++)
		cs.streamed += streams->s[i].rows;
	if (apps && o->group_by != KC_GROUP_NONE)
		read_apps(&j, &t, apps, &c, o, &cs);
	if (flows)
		kc_flows_read(&j, &t, flows, o->map_reads,
			      counter_named(&c, totals, "tracked") + counter_named(&c, totals, "udp_tracked"), cs.streamed);
	if (servers)
		kc_dns_servers_read(&j, &t, servers, o->map_reads, counter_named(&c, totals, "servers_tracked"),
				    (struct kc_servers_seen){ .queries = counter_seen(&c, "query"),
							      .responses = counter_seen(&c, "response"),
							      .timeouts = counter_seen(&c, "timeout"),
							      .tracked = counter_seen(&c, "servers_tracked") });
	kc_put(&j, ", \"histograms\": {");
	bpf_object__for_each_map(map, obj)
		if (has_suffix(bpf_map__name(map), "_latency")) {
			kc_put(&j, hists++ ? ", " : "");
			read_histogram(&j, map, o->map_reads);
		}
	kc_put(&j, "}, \"devices\": {");
	bpf_object__for_each_map(map, obj)
		if (has_suffix(bpf_map__name(map), "_devices")) {
			kc_put(&j, devices++ ? ", " : "");
			read_devices(&j, &t, map, o->map_reads);
		}
	kc_put(&j, "}");
	streams_json(&j, &t, &c, streams);
	/* A map whose figure could not be read makes the sum no figure at all. */
	if (memory_unknown) {
		kc_put(&j, ", \"memory_bytes\": null");
		kc_put(&t, "  map memory: unknown (fdinfo has no memlock)\n");
	} else {
		kc_put(&j, ", \"memory_bytes\": %llu", memory);
		kc_put(&t, "  map memory: %llu bytes (the kernel's memlock)\n", memory);
	}
	*json = j.s;
	*text = t.s;
}
