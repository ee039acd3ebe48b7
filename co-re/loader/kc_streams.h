/* SPDX-License-Identifier: GPL-2.0 */
/* Stream maps (ring buffers, includes/kc_bpf.h's KC_STREAM_MAP): every object's are polled by
 * one thread while a pass runs, drained after its detach, and what they delivered is kept for
 * the report (kc_maps.c). */
#ifndef KC_STREAMS_H
#define KC_STREAMS_H

#include <bpf/libbpf.h>

#include <linux/types.h>

#include "kc_common.h"
#include "kc_collectors.h"

/* Records listed in a report, per stream: the rest are counted (`not_listed`). */
#define KC_STREAM_LISTED 4096
#define KC_MAX_STREAMS 4

/* The record types the loader decodes (each map names its own: the `kc_record:` tag). */
enum kc_record {
	KC_RECORD_UNKNOWN, /* counted, not decoded */
	KC_RECORD_PROCESS_EXIT, /* struct kc_process_exit */
	KC_RECORD_FLOW_CLOSE,	/* struct kc_flow_close */
};

/* What one stream map delivered in the current pass. */
struct kc_stream {
	char map[64];
	enum kc_record record;
	char record_name[64];
	unsigned long long received, bytes, malformed, not_listed;
	unsigned long long rows; /* records that carried their table row (removed from the table) */
	/* The first KC_STREAM_LISTED records of a decoded type, `record_size` bytes each. */
	unsigned char *listed;
	size_t record_size;
	unsigned nlisted;
};

struct kc_object_streams {
	int n;
	struct kc_stream s[KC_MAX_STREAMS];
};

/* --stream-size's bytes: a power of two, a multiple of the page size, at most 1 GiB (what
 * the kernel takes for a ring); 0 where `arg` is none of that. */
unsigned int kc_stream_size_parse(const char *arg);
/* Whether a program event is a stream's (`kc_<collector>_stream`, includes/kc_bpf.h). */
int kc_is_stream_event(const char *event);
/* Why stream events stay out of this run (NULL where they load): `no_streams` (--streams off),
 * or a kernel without ring buffers (before 5.8), where the tables keep every row instead. */
const char *kc_streams_unwanted(int no_streams);

/* Once a pass's programs are attached: adds `obj`'s stream maps (those of the object as it is
 * loaded now: an attach may have loaded it again) to the pass's poll set, what they deliver
 * into `out` (emptied first). 0, or -errno. */
int kc_streams_watch(struct bpf_object *obj, struct kc_object_streams *out);
/* Starts polling every stream watched (a thread). 0, or -errno. */
int kc_streams_start(void);
/* After detach: stops the thread, takes what the rings still hold and drops the poll set; the
 * records stay in each kc_object_streams for the report. */
void kc_streams_stop(void);
/* After the report: frees the records kept. */
void kc_streams_release(struct kc_object_streams *st);

#endif
