// SPDX-License-Identifier: GPL-2.0
/* Polling the stream maps. See kc_streams.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "kc_streams.h"

static struct ring_buffer *rings;
static pthread_t poller;
static int polling; /* read by the poller, written by the main thread: __atomic */

/* The record type a stream map's `kc_record:<type>` tag names, or NULL. */
static const char *record_tag(const struct btf *btf, const char *map)
{
	int var = btf ? btf__find_by_name_kind(btf, map, BTF_KIND_VAR) : -1;

	for (__u32 id = 1; var > 0 && id < btf__type_cnt(btf); id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const char *tag;

		if (!btf_is_decl_tag(t) || t->type != (__u32)var || btf_decl_tag(t)->component_idx != -1)
			continue;
		tag = btf__name_by_offset(btf, t->name_off);
		if (tag && strncmp(tag, "kc_record:", 10) == 0)
			return tag + 10;
	}
	return NULL;
}

/* The loader decodes a record type only where the object's struct is the one it was built
 * with: the same name and size. */
static enum kc_record record_kind(const struct btf *btf, const char *name, size_t *size)
{
	static const struct {
		const char *name;
		size_t size;
		enum kc_record kind;
	} known[] = {
		{ "kc_process_exit", sizeof(struct kc_process_exit), KC_RECORD_PROCESS_EXIT },
		{ "kc_flow_close", sizeof(struct kc_flow_close), KC_RECORD_FLOW_CLOSE },
	};
	int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);

	for (size_t i = 0; id > 0 && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(name, known[i].name) == 0 && btf__resolve_size(btf, id) == (long)known[i].size) {
			*size = known[i].size;
			return known[i].kind;
		}
	return KC_RECORD_UNKNOWN;
}

/* Whether a decoded record carries its table row (which left the table with it). */
static int carries_row(enum kc_record kind, const void *data)
{
	if (kind == KC_RECORD_PROCESS_EXIT)
		return ((const struct kc_process_exit *)data)->has_row != 0;
	return ((const struct kc_flow_close *)data)->has_row != 0;
}

unsigned int kc_stream_size_parse(const char *arg)
{
	long page = sysconf(_SC_PAGESIZE);
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (!*arg || *end || n == 0 || n > (1ul << 30) || (n & (n - 1)) || page <= 0 || n % (unsigned long)page)
		return 0;
	return (unsigned int)n;
}

int kc_is_stream_event(const char *event)
{
	size_t n = strlen(event);

	return n > 7 && strcmp(event + n - 7, "_stream") == 0;
}

const char *kc_streams_unwanted(int no_streams)
{
	static int ringbuf = -1;

	if (no_streams)
		return "not asked for (--streams off): the table keeps the rows";
	if (ringbuf < 0)
		ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) == 1;
	return ringbuf ? NULL : "the kernel has no ring buffers (BPF_MAP_TYPE_RINGBUF, 5.8): the table keeps the rows";
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct kc_stream *s = ctx;

	s->received++;
	s->bytes += size;
	if (s->record == KC_RECORD_UNKNOWN)
		return 0;
	if (size < s->record_size) {
		s->malformed++;
		return 0;
	}
	s->rows += carries_row(s->record, data);
	if (s->nlisted < KC_STREAM_LISTED)
		memcpy(s->listed + (size_t)s->nlisted++ * s->record_size, data, s->record_size);
	else
		s->not_listed++;
	return 0;
}

int kc_streams_watch(struct bpf_object *obj, struct kc_object_streams *out)
{
	const struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map;

	kc_streams_release(out);
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map), *record;
		struct kc_stream *s;
		int err;

		if (bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF || bpf_map__fd(map) < 0)
			continue;
		if (out->n == KC_MAX_STREAMS)
			return -E2BIG;
		s = &out->s[out->n];
		memset(s, 0, sizeof(*s));
		snprintf(s->map, sizeof(s->map), "%s", name);
		record = record_tag(btf, name);
		snprintf(s->record_name, sizeof(s->record_name), "%s", record ? record : "");
		s->record = record ? record_kind(btf, record, &s->record_size) : KC_RECORD_UNKNOWN;
		if (s->record != KC_RECORD_UNKNOWN) {
			s->listed = calloc(KC_STREAM_LISTED, s->record_size);
			if (!s->listed)
				return -ENOMEM;
		}
		if (!rings) {
			rings = ring_buffer__new(bpf_map__fd(map), on_record, s, NULL);
			err = rings ? 0 : -errno;
		} else {
			err = ring_buffer__add(rings, bpf_map__fd(map), on_record, s);
		}
		if (err)
			return err;
		out->n++;
	}
	return 0;
}

static void *poll_rings(void *unused)
{
	(void)unused;
	while (__atomic_load_n(&polling, __ATOMIC_ACQUIRE))
		ring_buffer__poll(rings, 100);
	return NULL;
}

int kc_streams_start(void)
{
	int err;

	if (!rings || polling)
		return 0;
	__atomic_store_n(&polling, 1, __ATOMIC_RELEASE);
	err = pthread_create(&poller, NULL, poll_rings, NULL);
	if (err)
		__atomic_store_n(&polling, 0, __ATOMIC_RELEASE);
	return -err;
}

void kc_streams_stop(void)
{
	if (polling) {
		__atomic_store_n(&polling, 0, __ATOMIC_RELEASE);
		pthread_join(poller, NULL);
	}
	if (rings) {
		ring_buffer__consume(rings);
		ring_buffer__free(rings);
		rings = NULL;
	}
}

void kc_streams_release(struct kc_object_streams *st)
{
	for (int i = 0; i < st->n; i++)
		free(st->s[i].listed);
	memset(st, 0, sizeof(*st));
}
