// SPDX-License-Identifier: GPL-2.0
/*
 * kc-loader: loads kernel-collector objects into the running kernel, attaches their
 * programs, optionally lets the host work, and prints what each object counted.
 *
 *   kc-loader [--attach auto|trampoline|probe|tracepoint] [--run SECS] [--json] [--no-attach] [--strict] [--embedded] [OBJECTS...] [-- CMD ARGS...]
 *
 * What follows `--` is run as the workload once everything is attached: its own argv, as given
 * (no shell, no splitting), found on PATH.
 * Any .o can be given (legacy or CO-RE); --embedded loads the CO-RE objects compiled into this
 * binary from their skeletons.
 *
 * Each event a collector observes comes in attach families (trampoline, probe, tracepoint; see
 * includes/kc_bpf.h). --attach picks one family for every event, or (auto, the default) the
 * cheapest family that this kernel loads and attaches, event by event: programs whose targets
 * the kernel lacks, or whose kind it refuses, are never loaded (bpf_program__set_autoload); a
 * family that still fails to load or attach is dropped for that event and the object loaded
 * again. The report says, per event, the family used and why the others were passed over.
 * Exit status: 0 when every object loaded and attached (an event that no family can observe
 * here is reported, and fails only with --strict), 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <linux/types.h>

#include "kc_attach.h"
#include "kc_common.h"
#include "kc_maps.h"
#include "kc_embedded.h"
#include "kc_loader.h"
#include "kc_skeletons.h"

static char log_buf[1 << 16];
static size_t log_len;
static int verbose;

/* libbpf's messages (the verifier log among them) are kept for the failing object's report. */
static int capture_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	int n;

	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	if (log_len >= sizeof(log_buf) - 1) {
		/* Keep the tail: drop the older half. */
		memmove(log_buf, log_buf + sizeof(log_buf) / 2, sizeof(log_buf) / 2);
		log_len = sizeof(log_buf) / 2 - 1;
	}
	n = vsnprintf(log_buf + log_len, sizeof(log_buf) - log_len, fmt, args);
	if (n > 0)
		log_len += (size_t)n < sizeof(log_buf) - log_len ? (size_t)n : sizeof(log_buf) - log_len - 1;
	return 0;
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

/* Picks each event's family (the first of `--attach`'s order that fits and was not found
 * failing) and which programs load: set_autoload before the load. */
static void choose(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;
	int i = 0;

	for (int e = 0; e < r->nevents; e++) {
		struct event_result *ev = &r->events[e];

		ev->family = -1;
		for (int f = 0; f < KC_N_FAMILIES; f++) {
			if (ev->banned[f])
				continue;
			ev->why[f][0] = '\0';
			ev->kind[f] = KC_WHY_NONE;
			if (r->mode != KC_ATTACH_AUTO && f != r->mode) {
				ev->kind[f] = KC_WHY_NOT_ASKED;
				snprintf(ev->why[f], sizeof(ev->why[f]), "not asked for (--attach %s)",
					 kc_family_name(r->mode));
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
	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p = &r->progs[i++];
		int load;

		if (i > r->nprogs)
			break;
		load = p->event < 0 ? target_ok(p) : r->events[p->event].family == p->family && p->chosen;
		bpf_program__set_autoload(prog, load);
		p->state = load ? "loaded" : "skipped";
		p->detail[0] = '\0';
		if (load)
			continue;
		if (p->event < 0 || r->events[p->event].family == p->family)
			snprintf(p->detail, sizeof(p->detail), "%s",
				 p->target_why <= KC_WHY_NONE ? "another variant is used" : p->why);
		else if (r->events[p->event].family >= 0)
			snprintf(p->detail, sizeof(p->detail), "the event uses %s",
				 kc_family_name(r->events[p->event].family));
		else
			snprintf(p->detail, sizeof(p->detail), "no family observes the event");
		if (p->event < 0 && !p->target_ok && r->strict)
			p->state = "failed";
	}
}

/* Reads the programs of a freshly opened object: names, events, and targets. */
static void describe(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p;
		struct kc_program_name pn;
		const char *sec = bpf_program__section_name(prog);
		int e;

		if (r->nprogs >= MAX_PROGS)
			break;
		p = &r->progs[r->nprogs++];
		snprintf(p->name, sizeof(p->name), "%s", bpf_program__name(prog));
		snprintf(p->group, sizeof(p->group), "%s", bpf_program__name(prog));
		snprintf(p->section, sizeof(p->section), "%s", sec);
		snprintf(p->target, sizeof(p->target), "%s", strchr(sec, '/') ? strchr(sec, '/') + 1 : sec);
		p->target_why = -1; /* asked of the kernel when a family needs it: see target_ok() */
		p->event = -1;
		if (kc_parse_program_name(p->name, &pn) != 0 || pn.family != kc_section_family(sec))
			continue;
		snprintf(p->group, sizeof(p->group), "%s", pn.group);
		p->family = pn.family;
		for (e = 0; e < r->nevents && strcmp(r->events[e].name, pn.event) != 0; e++)
			;
		if (e == r->nevents) {
			if (r->nevents >= MAX_EVENTS)
				continue;
			snprintf(r->events[r->nevents++].name, sizeof(r->events[0].name), "%s", pn.event);
		}
		p->event = e;
		r->events[e].present |= 1u << pn.family;
	}
}
static struct bpf_object *open_object(struct object_result *r)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = r->name);

	return r->mem ? bpf_object__open_mem(r->mem, r->mem_size, &opts) : bpf_object__open_file(r->path, NULL);
}

/* The log's last line: the verifier's verdict, usually. */
static void last_log_line(char *out, size_t n)
{
	size_t end = log_len;
	size_t start;

	while (end > 0 && (log_buf[end - 1] == '\n' || log_buf[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && log_buf[start - 1] != '\n')
		start--;
	snprintf(out, n, "%.*s", (int)(end - start), log_buf + start);
}

/* After a load failed: loads each event's chosen programs alone, and bans the family of each
 * event that fails so. Returns how many were banned. */
static int ban_failing_loads(struct object_result *r)
{
	int banned = 0;

	for (int e = 0; e < r->nevents; e++) {
		struct event_result *ev = &r->events[e];
		struct bpf_object *obj;
		struct bpf_program *prog;
		int i = 0, err;
		char line[96];

		if (ev->family < 0)
			continue;
		obj = open_object(r);
		if (!obj)
			return banned;
		bpf_object__for_each_program(prog, obj) {
			struct prog_result *p = &r->progs[i++];

			if (i > r->nprogs)
				break;
			bpf_program__set_autoload(prog, p->event == e && p->family == ev->family && p->chosen);
		}
		log_len = 0;
		err = bpf_object__load(obj);
		bpf_object__close(obj);
		if (!err)
			continue;
		last_log_line(line, sizeof(line));
		snprintf(ev->why[ev->family], sizeof(ev->why[0]), "load: %s (%s)", strerror(-err), line);
		ev->kind[ev->family] = KC_WHY_FAILED;
		ev->banned[ev->family] = 1;
		banned++;
	}
	return banned;
}

static void detach_all(struct object_result *r)
{
	for (int i = 0; i < r->nprogs; i++) {
		bpf_link__destroy(r->links[i]);
		r->links[i] = NULL;
	}
}

/* Attaches what loaded; a family that fails to attach is banned for its event. Returns how
 * many were banned. */
static int attach_all(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;
	int i = 0, banned = 0;

	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p = &r->progs[i];

		if (i >= r->nprogs)
			break;
		i++;
		if (!bpf_program__autoload(prog))
			continue;
		r->links[i - 1] = bpf_program__attach(prog);
		if (r->links[i - 1]) {
			p->state = "attached";
			continue;
		}
		p->state = "failed";
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

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void run_object(struct object_result *r, int attach)
{
	double t = now_ms();
	struct bpf_object *obj;
	int err;

	log_len = 0;
	log_buf[0] = '\0';
	r->status = "failed";
	obj = open_object(r);
	if (!obj) {
		snprintf(r->error, sizeof(r->error), "open: %s", strerror(errno));
		goto out_log;
	}
	describe(obj, r);
	/* Each round bans at least one (event, family) or ends: bounded by their number. */
	for (int round = 0; round <= r->nevents * KC_N_FAMILIES; round++) {
		if (!obj)
			obj = open_object(r);
		if (!obj) {
			snprintf(r->error, sizeof(r->error), "open: %s", strerror(errno));
			goto out_log;
		}
		choose(obj, r);
		kc_maps_prepare(obj, r->apps);
		r->ms_choose += now_ms() - t;
		t = now_ms();
		log_len = 0;
		err = bpf_object__load(obj);
		r->ms_load += now_ms() - t;
		t = now_ms();
		if (err) {
			bpf_object__close(obj);
			obj = NULL;
			if (ban_failing_loads(r) > 0)
				continue;
			snprintf(r->error, sizeof(r->error), "load: %s (the verifier log tail follows)", strerror(-err));
			goto out_log;
		}
		if (attach && attach_all(obj, r) > 0) {
			detach_all(r);
			bpf_object__close(obj);
			obj = NULL;
			r->ms_attach += now_ms() - t;
			t = now_ms();
			continue;
		}
		r->ms_attach += now_ms() - t;
		break;
	}
	if (!obj) {
		/* Unreachable while each retry bans a family: the bound says so. */
		snprintf(r->error, sizeof(r->error), "gave up after retrying every family of every event");
		goto out_log;
	}
	err = kc_maps_control(obj, r->apps);
	if (err) {
		snprintf(r->error, sizeof(r->error), "writing the control maps: %s", strerror(-err));
		bpf_object__close(obj);
		goto out_log;
	}
	r->status = "ok";
	for (int e = 0; e < r->nevents; e++)
		if (r->events[e].family < 0)
			r->status = r->strict ? "failed" : "partial";
	for (int i = 0; i < r->nprogs; i++)
		if (strcmp(r->progs[i].state, "failed") == 0)
			r->status = "failed";
	if (strcmp(r->status, "ok") != 0)
		snprintf(r->error, sizeof(r->error), "%s", strcmp(r->status, "partial") == 0 ?
			 "some events cannot be observed on this kernel" : "some programs or events failed");
	/* Kept open: counters are read after the workload. */
	r->obj = obj;
	return;
out_log:
	snprintf(r->log_tail, sizeof(r->log_tail), "%s", log_len > LOG_TAIL - 1 ? log_buf + log_len - (LOG_TAIL - 1) : log_buf);
}
/* Runs the workload argv (NULL-terminated) and waits; its exit status, or -1. Its pid goes
 * in `pid`: its row is the one that proves what it did. */
static int run_workload(char **cmd, pid_t *workload_pid)
{
	int status = 0;
	pid_t pid = fork();

	*workload_pid = pid;
	if (pid == 0) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "kc-loader: cannot run %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: kc-loader [--attach auto|trampoline|probe|tracepoint] [--group-by none|process|cgroup] "
		     "[--table-size N] [--run SECS] [--json] [--no-attach] [--strict] [--verbose] [--embedded] "
		     "[OBJECTS...] [-- CMD ARGS...]\n");
}

/* Every program link, map and BTF object is a descriptor: a release's objects together hold
 * more than the usual soft limit of 1024. Up to the hard limit, which only root can raise. */
static void raise_fd_limit(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "run", required_argument, NULL, 'r' },    { "json", no_argument, NULL, 'j' },
		{ "attach", required_argument, NULL, 'a' },
		{ "group-by", required_argument, NULL, 'g' }, { "table-size", required_argument, NULL, 't' },
		{ "no-attach", no_argument, NULL, 'n' },
		{ "strict", no_argument, NULL, 's' },       { "embedded", no_argument, NULL, 'E' },
		{ "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int run_secs = 0, json = 0, attach = 1, strict = 0, embedded = 0, opt, n = 0, failed = 0, total;
	int mode = KC_ATTACH_AUTO;
	pid_t workload_pid = 0;
	struct kc_app_options apps = { .group_by = KC_GROUP_PROCESS };
	char **workload = NULL;
	struct object_result *results;
	struct utsname uts;

	/* Everything after the first `--` is the workload's argv, untouched by getopt. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			argv[i] = NULL;
			workload = &argv[i + 1];
			argc = i;
			break;
		}
	}
	if (workload && !workload[0]) {
		fprintf(stderr, "kc-loader: nothing to run after --\n");
		usage(stderr);
		return 2;
	}
	while ((opt = getopt_long(argc, argv, "a:g:t:r:jnsEvh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'g':
			apps.group_by = kc_group_by_parse(optarg);
			if (apps.group_by < 0) {
				fprintf(stderr, "kc-loader: --group-by %s: expected none, process or cgroup\n", optarg);
				return 2;
			}
			break;
		case 't': {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);

			if (*end || n == 0 || n > (1u << 24)) {
				fprintf(stderr, "kc-loader: --table-size %s: expected 1 to %u rows\n", optarg, 1u << 24);
				return 2;
			}
			apps.table_size = n;
			break;
		}
		case 'a':
			mode = kc_attach_parse(optarg);
			if (mode < KC_ATTACH_AUTO) {
				fprintf(stderr, "kc-loader: --attach %s: expected auto, trampoline, probe or tracepoint\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			run_secs = atoi(optarg);
			break;
		case 'j':
			json = 1;
			break;
		case 'n':
			attach = 0;
			break;
		case 's':
			strict = 1;
			break;
		case 'E':
			embedded = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	total = (argc - optind) + (embedded ? (int)KC_N_EMBEDDED : 0);
	raise_fd_limit();
	if (total == 0) {
		usage(stderr);
		return 2;
	}
	uname(&uts);
	libbpf_set_print(capture_log);
	results = calloc(total, sizeof(*results));
	if (!results)
		return 1;
	for (int i = optind; i < argc; i++, n++) {
		const char *base = strrchr(argv[i], '/');

		snprintf(results[n].name, sizeof(results[n].name), "%s", base ? base + 1 : argv[i]);
		results[n].path = argv[i];
		results[n].mode = mode;
		results[n].apps = &apps;
		results[n].strict = strict;
		run_object(&results[n], attach);
	}
	for (size_t i = 0; embedded && i < KC_N_EMBEDDED; i++, n++) {
		size_t size;
		const void *bytes = kc_embedded[i].elf_bytes(&size);

		snprintf(results[n].name, sizeof(results[n].name), "%s.bpf.o", kc_embedded[i].name);
		results[n].mem = bytes;
		results[n].mem_size = size;
		results[n].mode = mode;
		results[n].apps = &apps;
		results[n].strict = strict;
		run_object(&results[n], attach);
	}
	if (workload && run_workload(workload, &workload_pid) != 0)
		fprintf(stderr, "kc-loader: the workload %s failed\n", workload[0]);
	if (run_secs > 0)
		sleep(run_secs);
	/* Detached before anything is read: the counters, per-application rows and histograms of
	 * a report are one frozen moment (reading them would otherwise count scheduling too). */
	for (int i = 0; i < n; i++)
		detach_all(&results[i]);
	for (int i = 0; i < n; i++) {
		if (results[i].obj) {
			kc_maps_report(results[i].obj, &apps, &results[i].counters_json, &results[i].counters_text);
		}
		failed += strcmp(results[i].status, "failed") == 0;
	}
	if (json)
		kc_print_json(results, n, uts.release, workload_pid);
	else
		kc_print_table(results, n, uts.release);
	return failed ? 1 : 0;
}
