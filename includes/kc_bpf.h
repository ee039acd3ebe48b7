/* SPDX-License-Identifier: GPL-2.0 */
/* BPF-side helpers shared by every collector, legacy and CO-RE. Include kc_legacy.h or
 * kc_core.h first: they provide the kernel types and KC_READ. */
#ifndef KC_BPF_H
#define KC_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kc_common.h"
#include "kc_collectors.h"

/* 1: entry and return probes ('r' objects, and every CO-RE object); 0: entry only ('p'). */
#ifndef KC_RETURN_MODE
#define KC_RETURN_MODE 1
#endif

/* Program names `<group>__<variant>` are alternatives for kernels that renamed a function:
 * the loader attaches the first variant (in source order) whose target the kernel has. */

#define KC_COUNTERS(name, n)                             \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__type(key, __u32);                      \
		__type(value, __u64);                    \
		__uint(max_entries, n);                  \
	} name SEC(".maps")

/* Entry timestamps (or any u64) keyed by thread, for latency in return mode. */
#define KC_START_MAP(name, key_type)             \
	struct {                                 \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__type(key, key_type);           \
		__type(value, __u64);            \
		__uint(max_entries, 10240);      \
	} name SEC(".maps")

#define KC_HIST_MAP(name)                               \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_PERCPU_HASH); \
		__type(key, struct kc_hist_key);        \
		__type(value, __u64);                   \
		__uint(max_entries, 4096);              \
	} name SEC(".maps")

static __always_inline void kc_add(void *counters, __u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(counters, &idx);

	if (v)
		*v += n; /* per-CPU: no atomics needed */
}

/* floor(log2(v)) without loops (the verifier of older kernels rejects bounded loops). */
static __always_inline __u32 kc_log2(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/* Histogram slot of a duration: log2 of its microseconds, clamped to the histogram. */
static __always_inline __u32 kc_slot(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 hi = us >> 32;
	__u32 slot = hi ? kc_log2(hi) + 32 : kc_log2((__u32)us);

	return slot < KC_HIST_SLOTS ? slot : KC_HIST_SLOTS - 1;
}

static __always_inline void kc_hist_add(void *hist, __u32 id, __u64 ns)
{
	struct kc_hist_key key = { .id = id, .slot = kc_slot(ns) };
	__u64 one = 1, *v = bpf_map_lookup_elem(hist, &key);

	if (v)
		*v += 1;
	else
		bpf_map_update_elem(hist, &key, &one, BPF_NOEXIST);
}

/* Stores now under `key`, for a return probe to compute the latency. */
static __always_inline void kc_start(void *starts, void *key)
{
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(starts, key, &ts, BPF_ANY);
}

/* Nanoseconds since kc_start(key), or 0 when the entry was not seen; forgets the key. */
static __always_inline __u64 kc_elapsed(void *starts, void *key)
{
	__u64 *ts = bpf_map_lookup_elem(starts, key);
	__u64 delta;

	if (!ts)
		return 0;
	delta = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(starts, key);
	return delta;
}

char LICENSE[] SEC("license") = "GPL";

#endif
