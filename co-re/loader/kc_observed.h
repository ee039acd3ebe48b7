/* SPDX-License-Identifier: GPL-2.0 */
/* Which counters a pass observed (includes/kc_collectors.h's tags against the families the
 * pass attached): a counter nobody observed is reported with the reason, never as 0. */
#ifndef KC_OBSERVED_H
#define KC_OBSERVED_H

#include <linux/types.h>

#include <bpf/btf.h>

/* A collector's counters the loader reads: kc_maps_check refuses an object with more. */
#define KC_MAX_COUNTERS 32
#define KC_WHY_UNOBSERVED 200

/* An event of the object as a pass attached it: the family that observed it, or -1 (none). */
struct kc_event_family {
	const char *name;
	int family;
};

/* What a pass observed: each event's family, and whether anything was attached at all
 * (--no-attach: nothing was). */
struct kc_observed {
	const struct kc_event_family *events;
	int nevents;
	int attached;
};

/* For each of the `n` members of the counter struct `struct_id` of `collector`'s object: why
 * the pass did not observe it, or "" when it did. A counter is unobserved when its object's
 * tag says so (a `p` object's return-only counters), when the pass observed one of its events
 * in no family (or the object has no program for it), or when the family that observed it is
 * blind to it. Members without tags (objects built elsewhere) count as observed. */
void kc_observed_counters(const struct btf *btf, __u32 struct_id, const char *collector,
			  const struct kc_observed *seen, int n, char why[][KC_WHY_UNOBSERVED]);

#endif
