// SPDX-License-Identifier: GPL-2.0
/* Which counters a pass observed: the BTF declaration tags on each member of a collector's
 * counter struct (includes/kc_collectors.h) against the families the pass attached. */
#include <stdio.h>
#include <string.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "kc_attach.h"
#include "kc_observed.h"

#define MAX_SOURCES 8

/* One counter's tags. */
struct source {
	const char *events[MAX_SOURCES]; /* after "kc_event:" */
	int nevents;
	const char *unobserved;		 /* after "kc_unobserved:" */
	const char *blind[KC_N_FAMILIES]; /* after "kc_blind:<family>:" */
};

static const char *after(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static void read_tag(struct source *src, const char *tag)
{
	const char *rest;

	if ((rest = after(tag, "kc_event:")) && src->nevents < MAX_SOURCES) {
		src->events[src->nevents++] = rest;
	} else if ((rest = after(tag, "kc_unobserved:"))) {
		src->unobserved = rest;
	} else if ((rest = after(tag, "kc_blind:"))) {
		char family[32];
		const char *why = strchr(rest, ':');
		int f;

		if (!why || (size_t)(why - rest) >= sizeof(family))
			return;
		snprintf(family, sizeof(family), "%.*s", (int)(why - rest), rest);
		f = kc_attach_parse(family);
		if (f >= 0)
			src->blind[f] = why + 1;
	}
}

/* The family the pass observed `kc_<collector>_<short>` with: >= 0, -1 none, -2 no such event. */
static int family_of(const struct kc_observed *seen, const char *collector, const char *short_name)
{
	char name[128];

	snprintf(name, sizeof(name), "kc_%s_%s", collector, short_name);
	for (int i = 0; i < seen->nevents; i++)
		if (strcmp(seen->events[i].name, name) == 0)
			return seen->events[i].family;
	return -2;
}

/* Why `src` was not observed in this pass, into `why`; empty when it was. */
static void judge(const struct source *src, const char *collector, const struct kc_observed *seen, char *why,
		  size_t n)
{
	why[0] = '\0';
	if (!src->nevents)
		return; /* an object without our tags: nothing to tell */
	if (src->unobserved) {
		snprintf(why, n, "%s", src->unobserved);
		return;
	}
	if (!seen->attached) {
		snprintf(why, n, "--no-attach: nothing was attached");
		return;
	}
	for (int i = 0; i < src->nevents; i++) {
		int f = family_of(seen, collector, src->events[i]);

		if (f == -2)
			snprintf(why, n, "the object has no program for its event kc_%s_%s", collector, src->events[i]);
		else if (f < 0)
			snprintf(why, n, "no family observes its event kc_%s_%s on this kernel",
				 collector, src->events[i]);
		else if (src->blind[f])
			snprintf(why, n, "the %s family observes kc_%s_%s, but %s", kc_family_name(f), collector,
				 src->events[i], src->blind[f]);
		if (why[0])
			return;
	}
}

void kc_observed_counters(const struct btf *btf, __u32 struct_id, const char *collector,
			  const struct kc_observed *seen, int n, char why[][KC_WHY_UNOBSERVED])
{
	struct source src[KC_MAX_COUNTERS];

	memset(src, 0, sizeof(src));
	if (n > KC_MAX_COUNTERS)
		n = KC_MAX_COUNTERS;
	for (__u32 id = 1; btf && id < btf__type_cnt(btf); id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		int member;

		if (!btf_is_decl_tag(t) || t->type != struct_id)
			continue;
		member = btf_decl_tag(t)->component_idx;
		if (member >= 0 && member < n)
			read_tag(&src[member], btf__name_by_offset(btf, t->name_off));
	}
	for (int i = 0; i < n; i++)
		judge(&src[i], collector, seen, why[i], KC_WHY_UNOBSERVED);
}
