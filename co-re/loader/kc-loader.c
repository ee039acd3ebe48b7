// SPDX-License-Identifier: GPL-2.0
/*
 * kc-loader: loads kernel-collector objects into the running kernel, attaches their
 * programs, optionally lets the host work, and prints what each object counted.
 *
 *   kc-loader [--attach MODE[,MODE...]] [--group-by none|process|cgroup] [--table-size N]
 *             [--flow-table-size N] [--run SECS] [--json] [--no-attach] [--strict] [--verbose] [--embedded] [OBJECTS...] [-- CMD ARGS...]
 *
 * MODE is auto, trampoline, probe or tracepoint. Several modes (e.g. `--attach
 * trampoline,probe,tracepoint,auto`) are one pass each over objects loaded once: each pass
 * attaches its choice, runs the workload, detaches, reports (one JSON document or table per
 * pass, in order) and empties the maps for the next; the verifier sees each program once.
 * Where auto is one of them, an object whose forced family's pass would attach exactly what
 * auto's attaches (every event the same family: a legacy object's probes, a CO-RE object
 * whose events all take trampolines) sits that pass out, reported there as "as-auto" with
 * no counters: auto's pass counts it.
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
 *
 * SIGINT, SIGTERM or SIGHUP end the collection early: the workload gets the same signal (a
 * second one kills it), the pass detaches and reports what was counted until then
 * ("stopped_by" names the signal), no further pass runs, and the exit status is 128 + the
 * signal's number, as a shell reports a process the signal ended.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
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
#include "kc_map_walk.h"
#include "kc_maps.h"
#include "kc_embedded.h"
#include "kc_kernel.h"
#include "kc_loader.h"
#include "kc_log.h"
#include "kc_probe_events.h"
#include "kc_skeletons.h"

/* What every pass does, from the command line. */
struct options {
	int attach;	/* 0: --no-attach */
	int json;
	int with_auto;	/* one of the passes is auto's */
	int run_secs;
	char **workload; /* argv after `--`, or NULL */
	struct kc_app_options apps;
};

/* The signal that asked us to stop (SIGINT, SIGTERM, SIGHUP), or 0; how many came. */
static volatile sig_atomic_t stop_signal, stop_count;

static void on_stop(int sig)
{
	stop_signal = sig;
	stop_count++;
}

/* Without SA_RESTART: a wait or sleep returns early, and the pass goes on to detach. */
static void catch_stop_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Runs the workload argv (NULL-terminated) and waits; its exit status, or -1. Its pid goes
 * in the pass: its row is the one that proves what it did. The kernel's figures for it are
 * read once it exited and before it is reaped (its last ones), and the system's around it.
 * A stop signal is passed on to it (the first as it came, then SIGKILL), and it is still
 * waited for: no orphan is left. */
static int run_workload(char **cmd, struct kc_pass *pass)
{
	int status = 0, forwarded = 0;
	struct kc_figures start;
	siginfo_t info;
	pid_t pid;

	kc_system_figures(&start);
	pid = fork();
	pass->workload_pid = pid;
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		execvp(cmd[0], cmd);
		fprintf(stderr, "kc-loader: cannot run %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		return -1;
	/* Checked before each wait, not only after an interrupted one: a signal that came
	 * between the fork and the first wait interrupts nothing. */
	for (;;) {
		if (stop_count > forwarded)
			kill(pid, forwarded++ ? SIGKILL : stop_signal);
		if (waitid(P_PID, pid, &info, WEXITED | WNOWAIT) == 0)
			break;
		if (errno != EINTR)
			return -1;
	}
	kc_process_figures(pid, &pass->workload);
	kc_system_figures(&pass->inner);
	kc_figures_delta(&start, &pass->inner, &pass->inner);
	pass->measured = 1;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* `--run`: sleeps `secs`, or until a stop signal. */
static void run_for(int secs)
{
	struct timespec left = { .tv_sec = secs };

	while (!stop_signal && nanosleep(&left, &left) < 0 && errno == EINTR)
		;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: kc-loader [--attach MODE[,MODE...]] [--group-by none|process|cgroup] [--table-size N] [--flow-table-size N] "
		     "[--map-reads batch|per-key] [--streams on|off] [--stream-size BYTES] [--run SECS] [--json] [--no-attach] [--strict] [--verbose] [--embedded] "
		     "[OBJECTS...] [-- CMD ARGS...]\n"
		     "  MODE: auto (the default), trampoline, probe or tracepoint; several: one pass each\n"
		     "  (an object whose forced pass would attach what auto's does sits it out: \"as-auto\")\n"
		     "  --map-reads: batch (the default; one key at a time where the kernel has no batches) or per-key\n"
		     "  --streams off: no stream event loads (exits stay in the tables, as on kernels without ring buffers)\n"
		     "  --stream-size: bytes of each stream's ring buffer (a power of two, a multiple of the page size)\n"
		     "  --table-size, --flow-table-size: rows of each per-application table, of each flow table\n");
}

/* `--attach`'s comma-separated modes into `modes`: their number, or -1 (said on stderr). */
static int parse_modes(const char *arg, int modes[MAX_MODES])
{
	char word[32];
	int n = 0;

	for (const char *p = arg;; p++) {
		size_t len = strcspn(p, ",");
		int mode;

		snprintf(word, sizeof(word), "%.*s", (int)len, p);
		mode = kc_attach_parse(word);
		if (mode < KC_ATTACH_AUTO) {
			fprintf(stderr, "kc-loader: --attach %s: \"%s\" is none of auto, trampoline, probe, tracepoint\n",
				arg, word);
			return -1;
		}
		for (int i = 0; i < n; i++)
			if (modes[i] == mode) {
				fprintf(stderr, "kc-loader: --attach %s: %s twice\n", arg, word);
				return -1;
			}
		modes[n++] = mode;
		p += len;
		if (!*p)
			return n;
		if (n == MAX_MODES) {
			fprintf(stderr, "kc-loader: --attach %s: at most %d modes\n", arg, MAX_MODES);
			return -1;
		}
	}
}

/* `--run`'s seconds: 0 to a day, or -1. */
static int parse_seconds(const char *arg)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	return *arg && !*end && n <= 86400 ? (int)n : -1;
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

/* What an object's maps hold after a pass, told against what the pass observed. */
static void report_counters(struct object_result *r, const struct options *o)
{
	struct kc_event_family events[MAX_EVENTS];
	struct kc_observed seen = { .events = events, .nevents = r->nevents, .attached = o->attach };

	for (int j = 0; j < r->nevents; j++)
		events[j] = (struct kc_event_family){ .name = r->events[j].name, .family = r->events[j].family };
	kc_maps_report(r->obj, &o->apps, &seen, &r->streams, &r->counters_json, &r->counters_text);
}

/* Polls the object's stream maps during the pass; one that cannot be polled fails the object
 * (its records would be lost without a count). */
static void watch_streams(struct object_result *r)
{
	int err;

	if (!r->obj || r->load_failed || r->status == KC_OBJECT_FAILED || r->status == KC_OBJECT_AS_AUTO)
		return;
	err = kc_streams_watch(r->obj, &r->streams);
	if (err) {
		snprintf(r->error, sizeof(r->error), "polling its stream maps: %s", strerror(-err));
		r->status = KC_OBJECT_FAILED;
	}
}

/* One pass: attach each object for `mode`, run the workload, detach, report. Returns how
 * many objects failed. */
static int run_pass(struct object_result *rs, int n, int mode, const struct options *o, const char *kernel)
{
	struct kc_pass pass = { .kernel = kernel, .mode = mode };
	struct kc_figures before;
	double t = kc_now_ms();
	int failed = 0, err;

	kc_system_figures(&before);

	for (int i = 0; i < n; i++) {
		if (mode == KC_ATTACH_AUTO || !o->with_auto || !kc_object_sit_out(&rs[i], mode, KC_ATTACH_AUTO))
			kc_object_attach(&rs[i], mode, o->attach);
		rs[i].misses_before = kc_object_misses(&rs[i]);
		watch_streams(&rs[i]);
	}
	err = kc_streams_start();
	if (err)
		fprintf(stderr, "kc-loader: cannot start polling the stream maps: %s\n", strerror(-err));
	pass.ms_attach = kc_now_ms() - t;
	t = kc_now_ms();
	if (o->workload && !stop_signal && run_workload(o->workload, &pass) != 0 && !stop_signal)
		fprintf(stderr, "kc-loader: the workload %s failed\n", o->workload[0]);
	if (o->run_secs > 0)
		run_for(o->run_secs);
	pass.stopped_by = stop_signal;
	pass.ms_workload = kc_now_ms() - t;
	t = kc_now_ms();
	/* Detached before anything is read: the counters, per-application rows and histograms of
	 * a report are one frozen moment (reading them would otherwise count scheduling too). */
	kc_objects_detach(rs, n);
	kc_streams_stop();
	kc_system_figures(&pass.outer);
	for (int i = 0; i < n; i++)
		rs[i].missed_runs = kc_object_misses(&rs[i]) - rs[i].misses_before;
	/* The return probes' events go once their counts of missed calls are read. */
	kc_probe_events_remove();
	kc_figures_delta(&before, &pass.outer, &pass.outer);
	pass.ms_detach = kc_now_ms() - t;
	t = kc_now_ms();
	for (int i = 0; i < n; i++) {
		free(rs[i].counters_json);
		free(rs[i].counters_text);
		rs[i].counters_json = rs[i].counters_text = NULL;
		if (rs[i].obj && !rs[i].load_failed && rs[i].status != KC_OBJECT_AS_AUTO)
			report_counters(&rs[i], o);
		failed += rs[i].status == KC_OBJECT_FAILED;
	}
	pass.ms_read = kc_now_ms() - t;
	if (o->json)
		kc_print_json(rs, n, &pass);
	else
		kc_print_table(rs, n, &pass);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		kc_streams_release(&rs[i].streams);
	return failed;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "run", required_argument, NULL, 'r' },    { "json", no_argument, NULL, 'j' },
		{ "attach", required_argument, NULL, 'a' },
		{ "group-by", required_argument, NULL, 'g' }, { "table-size", required_argument, NULL, 't' },
		{ "map-reads", required_argument, NULL, 'm' }, { "streams", required_argument, NULL, 'S' },
		{ "stream-size", required_argument, NULL, 'B' }, { "flow-table-size", required_argument, NULL, 'F' },
		{ "no-attach", no_argument, NULL, 'n' },
		{ "strict", no_argument, NULL, 's' },       { "embedded", no_argument, NULL, 'E' },
		{ "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { .attach = 1, .apps = { .group_by = KC_GROUP_PROCESS } };
	int modes[MAX_MODES] = { KC_ATTACH_AUTO }, nmodes = 1;
	int strict = 0, embedded = 0, verbose = 0, opt, n = 0, failed = 0, total;
	struct object_result *results;
	struct utsname uts;

	/* Everything after the first `--` is the workload's argv, untouched by getopt. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			argv[i] = NULL;
			o.workload = &argv[i + 1];
			argc = i;
			break;
		}
	}
	if (o.workload && !o.workload[0]) {
		fprintf(stderr, "kc-loader: nothing to run after --\n");
		usage(stderr);
		return 2;
	}
	while ((opt = getopt_long(argc, argv, "a:g:t:m:r:jnsEvh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'S':
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
				fprintf(stderr, "kc-loader: --streams %s: expected on or off\n", optarg);
				return 2;
			}
			o.apps.no_streams = strcmp(optarg, "off") == 0;
			break;
		case 'B':
			o.apps.stream_size = kc_stream_size_parse(optarg);
			if (!o.apps.stream_size) {
				fprintf(stderr, "kc-loader: --stream-size %s: expected bytes, a power of two and a multiple of the page size (%ld), at most 1 GiB\n",
					optarg, sysconf(_SC_PAGESIZE));
				return 2;
			}
			break;
		case 'g':
			o.apps.group_by = kc_group_by_parse(optarg);
			if (o.apps.group_by < 0) {
				fprintf(stderr, "kc-loader: --group-by %s: expected none, process or cgroup\n", optarg);
				return 2;
			}
			break;
		case 'm':
			o.apps.map_reads = kc_map_reads_parse(optarg);
			if (o.apps.map_reads < 0) {
				fprintf(stderr, "kc-loader: --map-reads %s: expected batch or per-key\n", optarg);
				return 2;
			}
			break;
		case 't':
		case 'F': {
			char *end;
			unsigned long rows = strtoul(optarg, &end, 10);

			if (*end || rows == 0 || rows > (1u << 24)) {
				fprintf(stderr, "kc-loader: --%s %s: expected 1 to %u rows\n",
					opt == 't' ? "table-size" : "flow-table-size", optarg, 1u << 24);
				return 2;
			}
			*(opt == 't' ? &o.apps.table_size : &o.apps.flow_table_size) = rows;
			break;
		}
		case 'a':
			nmodes = parse_modes(optarg, modes);
			if (nmodes < 0)
				return 2;
			break;
		case 'r':
			o.run_secs = parse_seconds(optarg);
			if (o.run_secs < 0) {
				fprintf(stderr, "kc-loader: --run %s: expected whole seconds, 0 to 86400\n", optarg);
				return 2;
			}
			break;
		case 'j':
			o.json = 1;
			break;
		case 'n':
			o.attach = 0;
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
	for (int m = 0; m < nmodes; m++)
		o.with_auto |= nmodes > 1 && modes[m] == KC_ATTACH_AUTO;
	if (!o.attach && nmodes > 1) {
		fprintf(stderr, "kc-loader: --no-attach takes one --attach mode: passes differ only in what attaches\n");
		return 2;
	}
	total = (argc - optind) + (embedded ? (int)KC_N_EMBEDDED : 0);
	raise_fd_limit();
	if (total == 0) {
		usage(stderr);
		return 2;
	}
	uname(&uts);
	catch_stop_signals();
	kc_log_capture(verbose);
	if (o.attach)
		kc_probe_events_sweep();
	results = calloc(total, sizeof(*results));
	if (!results)
		return 1;
	for (int i = optind; i < argc; i++, n++) {
		const char *base = strrchr(argv[i], '/');

		snprintf(results[n].name, sizeof(results[n].name), "%s", base ? base + 1 : argv[i]);
		results[n].path = argv[i];
	}
	for (size_t i = 0; embedded && i < KC_N_EMBEDDED; i++, n++) {
		snprintf(results[n].name, sizeof(results[n].name), "%s.bpf.o", kc_embedded[i].name);
		results[n].mem = kc_embedded[i].elf_bytes(&results[n].mem_size);
	}
	for (int i = 0; i < n; i++) {
		memcpy(results[i].modes, modes, sizeof(modes));
		results[i].nmodes = nmodes;
		results[i].apps = &o.apps;
		results[i].strict = strict;
		kc_object_load(&results[i]);
	}
	for (int m = 0; m < nmodes && !stop_signal; m++) {
		/* The next pass starts from empty maps, as though just loaded. */
		for (int i = 0; m > 0 && i < n; i++) {
			int err = results[i].obj && !results[i].load_failed ? kc_maps_reset(results[i].obj, &o.apps) : 0;

			if (err) {
				/* Its next counts would add to this pass's: it cannot take part. */
				snprintf(results[i].error, sizeof(results[i].error), "emptying the maps: %s", strerror(-err));
				results[i].load_failed = 1;
				results[i].status = KC_OBJECT_FAILED;
			}
		}
		failed += run_pass(results, n, modes[m], &o, uts.release);
	}
	if (stop_signal) {
		fprintf(stderr, "kc-loader: stopped by %s\n", kc_stop_signal_name(stop_signal));
		return 128 + stop_signal;
	}
	return failed ? 1 : 0;
}
