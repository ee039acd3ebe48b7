/* SPDX-License-Identifier: GPL-2.0 */
/* Every entry of a map, read in batches where the kernel has them, else one key at a time. */
#ifndef KC_MAP_WALK_H
#define KC_MAP_WALK_H

#include <stddef.h>

/* --map-reads: how a collection reads each table. */
enum kc_map_reads {
	KC_READS_BATCH, /* BPF_MAP_LOOKUP_BATCH (5.6+), one key at a time where the kernel refuses it */
	KC_READS_PER_KEY, /* BPF_MAP_GET_NEXT_KEY and a lookup per entry */
};

const char *kc_map_reads_name(int reads);
/* enum kc_map_reads for "batch", "per-key"; -1 otherwise. */
int kc_map_reads_parse(const char *s);

/* Called once per entry with its key and value (a per-CPU map's value: every CPU's slot). */
typedef void (*kc_visit_fn)(const void *key, const void *value, void *ctx);

/* Visits each entry of the map `fd` (keys of `key_size` bytes, values of `value_size`) in the
 * kernel's order; an entry deleted during the walk is skipped. 0, or -errno of the first read
 * the kernel refused (entries visited before it stay visited). */
int kc_map_walk(int fd, size_t key_size, size_t value_size, int reads, kc_visit_fn visit, void *ctx);

/* Deletes the `n` keys at `keys` (each `key_size` bytes) from the map `fd`: in batches
 * (BPF_MAP_DELETE_BATCH, 5.6+) unless `reads` is per-key or the kernel refuses them, a key no
 * longer there passed over. Returns how many were deleted. */
unsigned long kc_map_delete_all(int fd, const void *keys, unsigned long n, size_t key_size, int reads);

/* An LRU table's evictions, which it makes silently: every row the programs inserted is still
 * there (`rows`, read before any removal), moved out with a stream's record (`streamed`), or
 * was evicted to make room. */
static inline unsigned long long kc_map_evicted(unsigned long long inserted, unsigned long long rows,
						unsigned long long streamed)
{
	return inserted > rows + streamed ? inserted - rows - streamed : 0;
}

#endif
