// SPDX-License-Identifier: GPL-2.0
/* Walking a map's entries. See kc_map_walk.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "kc_map_walk.h"

/* The kernel's ENOTSUPP (524), which user space headers do not name. */
#define KC_ENOTSUPP 524

/* Entries asked for per batch at first: a hash map's batch never splits a bucket, and a
 * bucket longer than this is asked for again with room for twice as many. */
#define KC_BATCH 1024

static const char *const reads_names[] = { "batch", "per-key" };

const char *kc_map_reads_name(int reads)
{
	return reads >= KC_READS_BATCH && reads <= KC_READS_PER_KEY ? reads_names[reads] : "?";
}

int kc_map_reads_parse(const char *s)
{
	for (int i = KC_READS_BATCH; i <= KC_READS_PER_KEY; i++)
		if (strcmp(s, reads_names[i]) == 0)
			return i;
	return -1;
}

static int walk_per_key(int fd, size_t key_size, size_t value_size, kc_visit_fn visit, void *ctx)
{
	void *key = calloc(1, key_size), *next = calloc(1, key_size), *value = calloc(1, value_size);
	int first = 1, err = 0;

	if (!key || !next || !value) {
		err = -ENOMEM;
		goto out;
	}
	while ((err = bpf_map_get_next_key(fd, first ? NULL : key, next)) == 0) {
		first = 0;
		memcpy(key, next, key_size);
		if (bpf_map_lookup_elem(fd, key, value) == 0)
			visit(key, value, ctx);
	}
	/* -ENOENT ends every walk; anything else is the kernel refusing it. */
	if (err == -ENOENT)
		err = 0;
out:
	free(key);
	free(next);
	free(value);
	return err;
}

/* The error by which a kernel says it has no batch operations (before 5.6: an unknown
 * command), or none for this map type. */
static int no_batches(int err)
{
	return err == -EINVAL || err == -EOPNOTSUPP || err == -KC_ENOTSUPP;
}

/* The walk through BPF_MAP_LOOKUP_BATCH. `*refused` is set where the kernel refused its first
 * call for want of batches: nothing was visited then. */
static int walk_batched(int fd, size_t key_size, size_t value_size, kc_visit_fn visit, void *ctx, int *refused)
{
	/* The hash maps' token is a bucket index (u32), an array's a key: room for either. */
	size_t token_size = key_size > 8 ? key_size : 8;
	void *in = calloc(1, token_size), *out = calloc(1, token_size);
	__u32 room = KC_BATCH;
	char *keys = malloc((size_t)room * key_size), *values = malloc((size_t)room * value_size);
	int first = 1, err = 0;

	for (;;) {
		__u32 count = room;

		if (!in || !out || !keys || !values) {
			err = -ENOMEM;
			break;
		}
		err = bpf_map_lookup_batch(fd, first ? NULL : in, out, keys, values, &count, NULL);
		if (err < 0)
			err = -errno;
		if (count > room)
			count = room;
		for (__u32 i = 0; i < count; i++)
			visit(keys + (size_t)i * key_size, values + (size_t)i * value_size, ctx);
		if (err == -ENOENT) {
			/* The last batch. */
			err = 0;
			break;
		}
		if (err == -ENOSPC && count == 0) {
			/* A bucket longer than `room`: nothing was copied; again with more room. */
			room *= 2;
			free(keys);
			free(values);
			keys = malloc((size_t)room * key_size);
			values = malloc((size_t)room * value_size);
			continue;
		}
		if (err) {
			*refused = first && count == 0 && no_batches(err);
			break;
		}
		memcpy(in, out, token_size);
		first = 0;
	}
	free(in);
	free(out);
	free(keys);
	free(values);
	return err;
}

int kc_map_walk(int fd, size_t key_size, size_t value_size, int reads, kc_visit_fn visit, void *ctx)
{
	int refused = 0, err;

	if (reads == KC_READS_PER_KEY)
		return walk_per_key(fd, key_size, value_size, visit, ctx);
	err = walk_batched(fd, key_size, value_size, visit, ctx, &refused);
	return refused ? walk_per_key(fd, key_size, value_size, visit, ctx) : err;
}

static unsigned long delete_per_key(int fd, const char *keys, unsigned long n, size_t key_size)
{
	unsigned long deleted = 0;

	for (unsigned long i = 0; i < n; i++)
		deleted += bpf_map_delete_elem(fd, keys + i * key_size) == 0;
	return deleted;
}

unsigned long kc_map_delete_all(int fd, const void *keys, unsigned long n, size_t key_size, int reads)
{
	const char *k = keys;
	unsigned long at = 0, deleted = 0;

	if (reads == KC_READS_PER_KEY)
		return delete_per_key(fd, k, n, key_size);
	while (at < n) {
		__u32 count = (__u32)(n - at);
		int err = bpf_map_delete_batch(fd, k + at * key_size, &count, NULL);

		if (err < 0)
			err = -errno;
		/* The kernel stops at the first key it cannot delete; `count` is how many it did. */
		if (count > n - at)
			count = (__u32)(n - at);
		at += count;
		deleted += count;
		if (!err)
			continue;
		if (err == -ENOENT) {
			at++; /* gone already (an LRU eviction meanwhile): on with the next */
			continue;
		}
		if (at == 0 && no_batches(err)) /* refused at the first call: nothing deleted */
			return delete_per_key(fd, k, n, key_size);
		break;
	}
	return deleted;
}
