// SPDX-License-Identifier: GPL-2.0
/* One object's life in kc-loader: open, choose each event's family, load, attach, detach.
 * See kc_loader.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "kc_kernel.h"
#include "kc_log.h"
#include "kc_loader.h"
#include "kc_probe_events.h"

double kc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Asks the kernel (once) whether a program's target exists and its kind attaches there. */
static int target_ok(struct prog_result *p)
{
	if (p->target_why < 0) {
		p->target_why = kc_target_check(p->section, p->target, sizeof(p->target), p->why, sizeof(p->why));
		p->target_ok = p->target_why == KC_WHY_NONE;
	}
	return p->target_ok;
}

/* Is `group` (of event e, family f) already seen among the first `upto` programs? */
static int group_seen(struct object_result *r, int upto, const char *group)
{
	for (int i = 0; i < upto; i++)
		if (strcmp(r->progs[i].group, group) == 0)
			return 1;
	return 0;
}

/* Whether family `f` can observe event `e`: each of its groups (entry, return, one per
 * syscall...) needs a program whose target this kernel has; the first such variant is
 * marked chosen. Fills the event's reason when it cannot. */
static int family_fits(struct object_result *r, int e, int f)
{
	struct event_result *ev = &r->events[e];

	for (int i = 0; i < r->nprogs; i++)
		if (r->progs[i].event == e && r->progs[i].family == f)
			r->progs[i].chosen = 0;
	for (int i = 0; i < r->nprogs; i++) {
		struct prog_result *p = &r->progs[i];
		int found = -1;

		if (p->event != e || p->family != f || group_seen(r, i, p->group))
			continue;
		for (int j = i; j < r->nprogs && found < 0; j++)
			if (strcmp(r->progs[j].group, p->group) == 0 && target_ok(&r->progs[j]))
				found = j;
		if (found < 0) {
			ev->kind[f] = p->target_why;
			snprintf(ev->why[f], sizeof(ev->why[f]), "%s", p->why);
			return 0;
		}
		r->progs[found].chosen = 1;
	}
	return 1;
}

/* Picks each event's family for `mode` (the first of its order that fits and was not found
 * failing), with why each other family was passed over. Touches no libbpf state. */
static void choose(struct object_result *r, int mode)
{
	for (int e = 0; e < r->nevents; e++) {
		struct event_result *ev = &r->events[e];
		const char *no_stream = kc_is_stream_event(ev->name) ? kc_streams_unwanted(r->apps->no_streams) : NULL;

		ev->family = -1;
		for (int f = 0; f < KC_N_FAMILIES; f++) {
			if (ev->banned[f])
				continue;
			ev->why[f][0] = '\0';
			ev->kind[f] = KC_WHY_NONE;
			if (no_stream) {
				ev->kind[f] = r->apps->no_streams ? KC_WHY_NOT_ASKED : KC_WHY_ABSENT;
				snprintf(ev->why[f], sizeof(ev->why[f]), "%s", no_stream);
			} else if (mode != KC_ATTACH_AUTO && f != mode) {
				ev->kind[f] = KC_WHY_NOT_ASKED;
				snprintf(ev->why[f], sizeof(ev->why[f]), "not asked for (--attach %s)", kc_family_name(mode));
			} else if (!(ev->present & (1u << f))) {
				ev->kind[f] = KC_WHY_NO_PROGRAM;
				snprintf(ev->why[f], sizeof(ev->why[f]), "the collector has no %s program for this event",
					 kc_family_name(f));
			} else if (ev->family >= 0) {
				ev->kind[f] = KC_WHY_COSTLIER;
				snprintf(ev->why[f], sizeof(ev->why[f]), "%s fits, and costs less",
					 kc_family_name(ev->family));
			} else if (family_fits(r, e, f)) {
				ev->family = f;
			}
		}
	}
}

/* Whether program `p` is part of the current choice (each event's chosen family, or outside
 * any family with its target here). */
static int in_choice(struct object_result *r, struct prog_result *p)
{
	return p->event < 0 ? target_ok(p) : r->events[p->event].family == p->family && p->chosen;
}

/* Each program's state and detail for the current choice: "loaded" (to be attached) or
 * "skipped" and why. */
static void mark_states(struct object_result *r)
{
	for (int i = 0; i < r->nprogs; i++) {
		struct prog_result *p = &r->progs[i];

		p->detail[0] = '\0';
		if (in_choice(r, p)) {
			p->state = KC_PROG_LOADED;
			continue;
		}
		p->state = p->event < 0 && r->strict ? KC_PROG_FAILED : KC_PROG_SKIPPED;
		if (p->event < 0 || r->events[p->event].family == p->family)
			snprintf(p->detail, sizeof(p->detail), "%s",
				 p->target_why <= KC_WHY_NONE ? "another variant is used" : p->why);
		else if (r->events[p->event].family >= 0)
			snprintf(p->detail, sizeof(p->detail), "the event uses %s",
				 kc_family_name(r->events[p->event].family));
		else
			snprintf(p->detail, sizeof(p->detail), "no family observes the event");
	}
}

/* Reads the programs of a freshly opened object: names, events, and targets. */
static void fail(struct object_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int describe(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p;
		struct kc_program_name pn;
		const char *sec = bpf_program__section_name(prog);
		int e;

		if (r->nprogs >= MAX_PROGS) {
			fail(r, "more than %d programs: split the collector, or raise MAX_PROGS in co-re/loader/kc_loader.h and kc-verify/src/families.rs",
			     MAX_PROGS);
			return -1;
		}
		p = &r->progs[r->nprogs++];
		snprintf(p->name, sizeof(p->name), "%s", bpf_program__name(prog));
		snprintf(p->group, sizeof(p->group), "%s", bpf_program__name(prog));
		snprintf(p->section, sizeof(p->section), "%s", sec);
		snprintf(p->target, sizeof(p->target), "%s", strchr(sec, '/') ? strchr(sec, '/') + 1 : sec);
		p->target_why = -1; /* asked of the kernel when a family needs it: see target_ok() */
		p->event = -1;
		p->probe_event = -1;
		if (kc_parse_program_name(p->name, &pn) != 0 || pn.family != kc_section_family(sec))
			continue;
		snprintf(p->group, sizeof(p->group), "%s", pn.group);
		p->family = pn.family;
		for (e = 0; e < r->nevents && strcmp(r->events[e].name, pn.event) != 0; e++)
			;
		if (e == r->nevents) {
			if (r->nevents >= MAX_EVENTS) {
				fail(r, "more than %d events: split the collector, or raise MAX_EVENTS in co-re/loader/kc_loader.h and kc-verify/src/families.rs",
				     MAX_EVENTS);
				return -1;
			}
			snprintf(r->events[r->nevents++].name, sizeof(r->events[0].name), "%s", pn.event);
		}
		p->event = e;
		r->events[e].present |= 1u << pn.family;
	}
	return 0;
}

static struct bpf_object *open_object(struct object_result *r)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = r->name);

	return r->mem ? bpf_object__open_mem(r->mem, r->mem_size, &opts) : bpf_object__open_file(r->path, NULL);
}
/* Sets which programs load: every family that one of `modes` chooses for each event (the
 * union over the passes), and the programs outside any family whose targets are here. */
static void set_autoload(struct bpf_object *obj, struct object_result *r, const int *modes, int nmodes)
{
	struct bpf_program *prog;
	int i = 0;

	for (int e = 0; e < r->nevents; e++)
		r->events[e].load = 0;
	for (int m = 0; m < nmodes; m++) {
		choose(r, modes[m]);
		for (int e = 0; e < r->nevents; e++)
			if (r->events[e].family >= 0)
				r->events[e].load |= 1u << r->events[e].family;
	}
	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p = &r->progs[i++];

		if (i > r->nprogs)
			break;
		bpf_program__set_autoload(prog, p->event < 0 ? target_ok(p) :
					  (r->events[p->event].load >> p->family & 1) && p->chosen);
	}
}

/* After a load failed: loads each (event, family) of the load set alone, and bans the
 * family of each that fails so. Returns how many were banned. */
static int ban_failing_loads(struct object_result *r)
{
	int banned = 0;

	for (int e = 0; e < r->nevents; e++) {
		struct event_result *ev = &r->events[e];

		for (int f = 0; f < KC_N_FAMILIES; f++) {
			struct bpf_object *obj;
			struct bpf_program *prog;
			int i = 0, err;
			char line[96];

			if (!(ev->load >> f & 1))
				continue;
			obj = open_object(r);
			if (!obj)
				return banned;
			bpf_object__for_each_program(prog, obj) {
				struct prog_result *p = &r->progs[i++];

				if (i > r->nprogs)
					break;
				bpf_program__set_autoload(prog, p->event == e && p->family == f && p->chosen);
			}
			kc_log_reset();
			err = bpf_object__load(obj);
			bpf_object__close(obj);
			if (!err)
				continue;
			kc_log_reason(line, sizeof(line));
			snprintf(ev->why[f], sizeof(ev->why[0]), "load: %s (%s)", strerror(-err), line);
			ev->kind[f] = KC_WHY_FAILED;
			ev->banned[f] = 1;
			banned++;
		}
	}
	return banned;
}

static void fail(struct object_result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	r->status = KC_OBJECT_FAILED;
	r->load_failed = 1;
	kc_log_tail(r->log_tail, sizeof(r->log_tail));
}

/* (Re)loads the object with the union of what `modes` choose; a family whose programs the
 * verifier refuses is banned for its event and the rest loaded again. */
static int load(struct object_result *r)
{
	double t = kc_now_ms();
	int err;

	bpf_object__close(r->obj);
	r->obj = NULL;
	/* Each round bans at least one (event, family) or ends: bounded by their number. */
	for (int round = 0; round <= r->nevents * KC_N_FAMILIES; round++) {
		r->obj = open_object(r);
		if (!r->obj) {
			fail(r, "open: %s", strerror(errno));
			return -1;
		}
		if (!r->nprogs) {
			char why[200];

			if (describe(r->obj, r) != 0)
				return -1;
			if (kc_maps_check(r->obj, why, sizeof(why)) != 0) {
				fail(r, "%s", why);
				return -1;
			}
		}
		set_autoload(r->obj, r, r->modes, r->nmodes);
		kc_maps_prepare(r->obj, r->apps);
		if (!r->no_stats)
			kc_verifier_request(r->obj, r);
		r->ms_choose += kc_now_ms() - t;
		t = kc_now_ms();
		kc_log_reset();
		err = bpf_object__load(r->obj);
		r->ms_load += kc_now_ms() - t;
		t = kc_now_ms();
		if (!err)
			kc_verifier_read(r->obj, r);
		else
			kc_verifier_log_each(r, kc_log_append);
		kc_verifier_release(r->obj, r);
		if (err == -ENOSPC && !r->no_stats) {
			/* A statistics log was too small for what the kernel wrote. */
			r->no_stats = 1;
			bpf_object__close(r->obj);
			r->obj = NULL;
			continue;
		}
		if (!err) {
			err = kc_maps_control(r->obj, r->apps);
			if (err) {
				fail(r, "writing the control maps: %s", strerror(-err));
				return -1;
			}
			for (int e = 0; e < r->nevents; e++)
				r->events[e].loaded = r->events[e].load;
			return 0;
		}
		bpf_object__close(r->obj);
		r->obj = NULL;
		if (ban_failing_loads(r) == 0) {
			fail(r, "load: %s (the verifier log tail follows)", strerror(-err));
			return -1;
		}
	}
	/* Unreachable while each retry bans a family: the bound says so. */
	fail(r, "gave up after retrying every family of every event");
	return -1;
}

int kc_object_load(struct object_result *r)
{
	r->status = KC_OBJECT_FAILED;
	return load(r);
}

void kc_object_detach(struct object_result *r)
{
	for (int i = 0; i < r->nprogs; i++) {
		bpf_link__destroy(r->links[i]);
		r->links[i] = NULL;
	}
}

/* Closing a link waits in the kernel for grace periods (a classic tracepoint's perf event
 * waits for RCU and tasks-trace RCU; a kprobe, for RCU): tens of milliseconds each, one after
 * another. Closed from several threads at once, the waits overlap and share grace periods. */
#define DETACH_THREADS 16

struct detach_share {
	struct bpf_link **links;
	int n, next;
	pthread_mutex_t lock;
};

static void *detach_some(void *arg)
{
	struct detach_share *d = arg;

	for (;;) {
		int i;

		pthread_mutex_lock(&d->lock);
		i = d->next++;
		pthread_mutex_unlock(&d->lock);
		if (i >= d->n)
			return NULL;
		bpf_link__destroy(d->links[i]);
	}
}

void kc_objects_detach(struct object_result *rs, int n)
{
	struct detach_share d = { .lock = PTHREAD_MUTEX_INITIALIZER };
	pthread_t threads[DETACH_THREADS];
	int started = 0;

	d.links = calloc((size_t)n * MAX_PROGS + 1, sizeof(*d.links));
	if (!d.links) {
		for (int i = 0; i < n; i++)
			kc_object_detach(&rs[i]);
		return;
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < rs[i].nprogs; j++)
			if (rs[i].links[j]) {
				d.links[d.n++] = rs[i].links[j];
				rs[i].links[j] = NULL;
			}
	while (started < DETACH_THREADS && started < d.n &&
	       pthread_create(&threads[started], NULL, detach_some, &d) == 0)
		started++;
	/* No thread at all (a process out of threads): this one does it all. */
	detach_some(&d);
	for (int t = 0; t < started; t++)
		pthread_join(threads[t], NULL);
	free(d.links);
}

/* Whether this kernel looks a kprobe's function up by a linear scan of every symbol: before
 * 6.1 kallsyms_lookup_name did, two to four times per kprobe (~80 ms each on 5.10 under
 * emulation, seconds for a release's kprobes); 6.1 made it a binary search. */
static int kallsyms_lookup_is_linear(void)
{
	return !kc_kernel_at_least(6, 1);
}

/* Attaches one program. Where the kernel's own lookup is linear, a kprobe goes by the address
 * our kallsyms reading found for its function (the one line of that name); else, and whenever
 * that is unknown, by name as libbpf does. A return probe goes through kprobe_events, sized for
 * the calls in flight (kc_probe_events.c), and through the kprobe PMU where that fails. */
static struct bpf_link *attach_program(struct bpf_program *prog, struct prog_result *p)
{
	int ret = strncmp(p->section, "kretprobe/", strlen("kretprobe/")) == 0;
	unsigned long long addr = 0;
	struct bpf_link *link;

	if ((ret || strncmp(p->section, "kprobe/", strlen("kprobe/")) == 0) && kallsyms_lookup_is_linear())
		addr = kc_kprobe_address(p->target);
	if (ret) {
		link = kc_probe_events_attach_return(prog, p->target, addr, &p->probe_event);
		if (link)
			return link;
		p->probe_event = -1;
	}
	if (addr) {
		LIBBPF_OPTS(bpf_kprobe_opts, opts, .retprobe = ret, .offset = addr);

		return bpf_program__attach_kprobe_opts(prog, NULL, &opts);
	}
	return bpf_program__attach(prog);
}

/* Attaches the current choice; a family that fails to attach is banned for its event.
 * Returns how many were banned. */
static int attach_choice(struct object_result *r)
{
	struct bpf_program *prog;
	int i = 0, banned = 0;

	bpf_object__for_each_program(prog, r->obj) {
		struct prog_result *p = &r->progs[i];

		if (i >= r->nprogs)
			break;
		i++;
		p->probe_event = -1;
		if (p->state != KC_PROG_LOADED)
			continue;
		r->links[i - 1] = attach_program(prog, p);
		if (r->links[i - 1]) {
			p->state = KC_PROG_ATTACHED;
			continue;
		}
		p->state = KC_PROG_FAILED;
		snprintf(p->detail, sizeof(p->detail), "attach: %s", strerror(errno));
		if (p->event >= 0) {
			struct event_result *ev = &r->events[p->event];

			snprintf(ev->why[p->family], sizeof(ev->why[0]), "%s: attach: %s", p->name, strerror(errno));
			ev->kind[p->family] = KC_WHY_FAILED;
			ev->banned[p->family] = 1;
			banned++;
		}
	}
	return banned;
}

/* Whether everything the current choice needs was loaded. */
static int choice_loaded(struct object_result *r)
{
	for (int e = 0; e < r->nevents; e++)
		if (r->events[e].family >= 0 && !(r->events[e].loaded >> r->events[e].family & 1))
			return 0;
	return 1;
}

/* The object's status for this mode: ok, partial (an event no family observes here), failed. */
static void settle(struct object_result *r)
{
	r->status = KC_OBJECT_OK;
	r->error[0] = '\0';
	for (int e = 0; e < r->nevents; e++)
		/* A stream left out by choice (--streams off) is not an event this kernel cannot see. */
		if (r->events[e].family < 0 && !(r->apps->no_streams && kc_is_stream_event(r->events[e].name)))
			r->status = r->strict ? KC_OBJECT_FAILED : KC_OBJECT_PARTIAL;
	for (int i = 0; i < r->nprogs; i++)
		if (r->progs[i].state == KC_PROG_FAILED)
			r->status = KC_OBJECT_FAILED;
	if (r->status != KC_OBJECT_OK)
		snprintf(r->error, sizeof(r->error), "%s", r->status == KC_OBJECT_PARTIAL ?
			 "some events cannot be observed on this kernel" : "some programs or events failed");
}

int kc_object_sit_out(struct object_result *r, int mode, int other)
{
	int family[MAX_EVENTS];

	if (r->load_failed)
		return 0;
	choose(r, other);
	for (int e = 0; e < r->nevents; e++)
		family[e] = r->events[e].family;
	choose(r, mode);
	for (int e = 0; e < r->nevents; e++)
		if (r->events[e].family != family[e])
			return 0;
	r->mode = mode;
	r->ms_attach = 0;
	mark_states(r);
	for (int i = 0; i < r->nprogs; i++)
		if (r->progs[i].state == KC_PROG_LOADED) {
			r->progs[i].state = KC_PROG_SKIPPED;
			snprintf(r->progs[i].detail, sizeof(r->progs[i].detail),
				 "the auto pass attaches the same programs");
		}
	r->status = KC_OBJECT_AS_AUTO;
	snprintf(r->error, sizeof(r->error), "the auto pass attaches what this pass would: counted there");
	return 1;
}

int kc_object_attach(struct object_result *r, int mode, int attach)
{
	double t = kc_now_ms();

	r->mode = mode;
	r->ms_attach = 0;
	if (r->load_failed)
		return -1;
	for (int round = 0; round <= r->nevents * KC_N_FAMILIES; round++) {
		choose(r, mode);
		/* A family dropped at attach leaves a costlier one that may not be loaded yet; the
		 * reload chooses for every mode, so this one chooses again after it. */
		if (!choice_loaded(r)) {
			if (load(r) != 0)
				return -1;
			choose(r, mode);
		}
		mark_states(r);
		if (!attach || attach_choice(r) == 0) {
			r->ms_attach += kc_now_ms() - t;
			settle(r);
			return 0;
		}
		kc_object_detach(r);
	}
	r->ms_attach += kc_now_ms() - t;
	fail(r, "gave up after retrying every family of every event");
	return -1;
}

unsigned long long kc_object_misses(const struct object_result *r)
{
	struct bpf_program *prog;
	unsigned long long misses = 0;

	if (!r->obj || r->load_failed)
		return 0;
	bpf_object__for_each_program(prog, r->obj) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		memset(&info, 0, sizeof(info));
		if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			misses += info.recursion_misses;
	}
	/* Calls a return probe did not see: its pool of calls in flight was empty. */
	for (int i = 0; i < r->nprogs; i++)
		misses += kc_probe_events_missed(r->progs[i].probe_event);
	return misses;
}
