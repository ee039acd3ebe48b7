// SPDX-License-Identifier: GPL-2.0
/*
 * kc-loader: loads kernel-collector objects into the running kernel, attaches their
 * programs, optionally lets the host work, and prints what each object counted.
 *
 *   kc-loader [--run SECS] [--json] [--no-attach] [--strict] [--embedded] [OBJECTS...] [-- CMD ARGS...]
 *
 * What follows `--` is run as the workload once everything is attached: its own argv, as given
 * (no shell, no splitting), found on PATH.
 * Any .o can be given (legacy or CO-RE); --embedded loads the CO-RE objects compiled into this
 * binary from their skeletons. Exit status: 0 when every object loaded and attached, 1 when
 * one did not, 2 on bad usage.
 *
 * Programs named `<group>__<variant>` are alternatives for a kernel function that was renamed:
 * the first variant whose target this kernel has is used, the others are not loaded. Any other
 * program whose target is missing is skipped and reported (a failure with --strict).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "kc_embedded.h"
#include "kc_skeletons.h"

#define MAX_PROGS 64
#define MAX_MAPS 32
#define LOG_TAIL 2048

struct prog_result {
	char name[64];
	char target[128];
	const char *state; /* "attached", "loaded", "skipped", "failed" */
	char detail[160];
};

struct map_result {
	char name[64];
	unsigned long long entries;
	unsigned long long sum;
};

struct object_result {
	char name[256];
	const char *status; /* "ok", "failed" */
	char error[256];
	char log_tail[LOG_TAIL];
	int nprogs, nmaps;
	struct prog_result progs[MAX_PROGS];
	struct map_result maps[MAX_MAPS];
	struct bpf_link *links[MAX_PROGS];
	struct bpf_object *obj; /* kept open until the counters are read */
};

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

static const char *tracefs_root(void)
{
	static const char *roots[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	char path[256];

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/events", roots[i]);
		if (access(path, F_OK) == 0)
			return roots[i];
	}
	/* Not mounted (minimal systems, initramfs): mount it, libbpf needs it for tracepoints. */
	if (mount("tracefs", roots[0], "tracefs", 0, NULL) == 0)
		return roots[0];
	return roots[0];
}

static char *kallsyms;
static size_t kallsyms_len;

static void load_kallsyms(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[512];
	size_t cap = 1 << 20;

	if (!f)
		return;
	kallsyms = malloc(cap);
	if (!kallsyms) {
		fclose(f);
		return;
	}
	kallsyms[kallsyms_len++] = '\n';
	while (fgets(line, sizeof(line), f)) {
		char name[256];
		size_t n;

		if (sscanf(line, "%*s %*s %255s", name) != 1)
			continue;
		n = strlen(name);
		if (kallsyms_len + n + 2 > cap) {
			char *bigger = realloc(kallsyms, cap * 2);

			if (!bigger)
				break;
			kallsyms = bigger;
			cap *= 2;
		}
		memcpy(kallsyms + kallsyms_len, name, n);
		kallsyms_len += n;
		kallsyms[kallsyms_len++] = '\n';
	}
	kallsyms[kallsyms_len] = '\0';
	fclose(f);
}

static int has_symbol(const char *sym)
{
	char needle[260];

	if (!kallsyms)
		return 1; /* cannot tell: let the attach decide */
	snprintf(needle, sizeof(needle), "\n%s\n", sym);
	return strstr(kallsyms, needle) != NULL;
}

/* Does the kernel have what this program attaches to? Fills `target`. */
static int target_exists(struct bpf_program *prog, char *target, size_t size)
{
	const char *sec = bpf_program__section_name(prog);
	const char *fn = NULL;
	char path[512];

	if (strncmp(sec, "kprobe/", 7) == 0)
		fn = sec + 7;
	else if (strncmp(sec, "kretprobe/", 10) == 0)
		fn = sec + 10;
	if (fn) {
		snprintf(target, size, "%s", fn);
		return has_symbol(fn);
	}
	if (strncmp(sec, "tracepoint/", 11) == 0) {
		snprintf(target, size, "%s", sec + 11);
		snprintf(path, sizeof(path), "%s/events/%s", tracefs_root(), sec + 11);
		return access(path, F_OK) == 0;
	}
	snprintf(target, size, "%s", sec);
	return 1;
}

/* Decides which programs load: alternatives and programs whose target is missing do not. */
static void select_programs(struct bpf_object *obj, struct object_result *r, int strict)
{
	struct bpf_program *prog;
	char chosen[MAX_PROGS][64];
	int nchosen = 0;

	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p;
		const char *name = bpf_program__name(prog);
		const char *sep = strstr(name, "__");
		char group[64] = "";
		int exists;

		if (r->nprogs >= MAX_PROGS)
			break;
		p = &r->progs[r->nprogs++];
		snprintf(p->name, sizeof(p->name), "%s", name);
		exists = target_exists(prog, p->target, sizeof(p->target));
		p->state = "loaded";
		if (sep)
			snprintf(group, sizeof(group), "%.*s", (int)(sep - name), name);
		if (sep) {
			int taken = 0;

			for (int i = 0; i < nchosen; i++)
				taken |= strcmp(chosen[i], group) == 0;
			if (taken || !exists) {
				bpf_program__set_autoload(prog, false);
				p->state = "skipped";
				snprintf(p->detail, sizeof(p->detail), taken ? "another variant of %s is used" : "kernel has no %s",
					 taken ? group : p->target);
				continue;
			}
			snprintf(chosen[nchosen++], sizeof(chosen[0]), "%s", group);
		} else if (!exists) {
			char target[sizeof(p->target)];

			memcpy(target, p->target, sizeof(target));
			bpf_program__set_autoload(prog, false);
			p->state = strict ? "failed" : "skipped";
			snprintf(p->detail, sizeof(p->detail), "kernel has no %s", target);
		}
	}
	/* A group none of whose variants exists. */
	for (int i = 0; i < r->nprogs; i++) {
		const char *sep = strstr(r->progs[i].name, "__");
		int found = 0;

		if (!sep)
			continue;
		for (int j = 0; j < nchosen; j++)
			found |= strncmp(chosen[j], r->progs[i].name, sep - r->progs[i].name) == 0 &&
				 chosen[j][sep - r->progs[i].name] == '\0';
		if (!found && strict)
			r->progs[i].state = "failed";
	}
}

static void read_maps(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_map *map;
	int ncpus = libbpf_num_possible_cpus();

	bpf_object__for_each_map(map, obj) {
		struct map_result *m;
		enum bpf_map_type type = bpf_map__type(map);
		int percpu = type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
			     type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
		size_t vsize = (bpf_map__value_size(map) + 7) / 8 * 8;
		size_t total = percpu ? vsize * (ncpus > 0 ? ncpus : 1) : vsize;
		unsigned char key[64], next[64];
		unsigned long long *value;
		int fd = bpf_map__fd(map), first = 1;

		if (bpf_map__is_internal(map) || r->nmaps >= MAX_MAPS || fd < 0 || bpf_map__key_size(map) > sizeof(key))
			continue;
		m = &r->maps[r->nmaps++];
		snprintf(m->name, sizeof(m->name), "%s", bpf_map__name(map));
		value = calloc(1, total);
		if (!value)
			continue;
		while (bpf_map_get_next_key(fd, first ? NULL : key, next) == 0) {
			first = 0;
			memcpy(key, next, bpf_map__key_size(map));
			if (bpf_map_lookup_elem(fd, key, value) != 0)
				continue;
			m->entries++;
			/* Start-time maps hold timestamps, not counts. */
			if (strstr(m->name, "_starts"))
				continue;
			for (size_t i = 0; i < total / 8; i++)
				m->sum += value[i];
		}
		free(value);
	}
}

static void run_object(struct object_result *r, const char *path, const void *mem, size_t mem_size, int attach,
		       int strict)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = r->name);
	struct bpf_object *obj;
	struct bpf_program *prog;
	int err, i = 0;

	log_len = 0;
	log_buf[0] = '\0';
	r->status = "failed";
	obj = mem ? bpf_object__open_mem(mem, mem_size, &opts) : bpf_object__open_file(path, NULL);
	if (!obj) {
		snprintf(r->error, sizeof(r->error), "open: %s", strerror(errno));
		goto out_log;
	}
	select_programs(obj, r, strict);
	err = bpf_object__load(obj);
	if (err) {
		snprintf(r->error, sizeof(r->error), "load: %s (the verifier log tail follows)", strerror(-err));
		goto out_close;
	}
	bpf_object__for_each_program(prog, obj) {
		struct prog_result *p = &r->progs[i];

		if (i >= r->nprogs)
			break;
		i++;
		if (!bpf_program__autoload(prog) || !attach)
			continue;
		r->links[i - 1] = bpf_program__attach(prog);
		if (!r->links[i - 1]) {
			p->state = "failed";
			snprintf(p->detail, sizeof(p->detail), "attach: %s", strerror(errno));
		} else {
			p->state = "attached";
		}
	}
	r->status = "ok";
	for (i = 0; i < r->nprogs; i++)
		if (strcmp(r->progs[i].state, "failed") == 0)
			r->status = "failed";
	if (strcmp(r->status, "failed") == 0)
		snprintf(r->error, sizeof(r->error), "some programs failed");
	/* Kept open: counters are read after the workload. */
	r->obj = obj;
	return;
out_close:
	bpf_object__close(obj);
out_log:
	snprintf(r->log_tail, sizeof(r->log_tail), "%s", log_len > LOG_TAIL - 1 ? log_buf + log_len - (LOG_TAIL - 1) : log_buf);
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(struct object_result *rs, int n, const char *kernel)
{
	printf("{\"kernel\": ");
	json_string(kernel);
	printf(", \"objects\": [");
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];

		printf("%s\n  {\"object\": ", i ? "," : "");
		json_string(r->name);
		printf(", \"status\": \"%s\", \"error\": ", r->status);
		json_string(r->error);
		printf(", \"log_tail\": ");
		json_string(r->log_tail);
		printf(", \"programs\": [");
		for (int j = 0; j < r->nprogs; j++) {
			printf("%s{\"name\": ", j ? ", " : "");
			json_string(r->progs[j].name);
			printf(", \"target\": ");
			json_string(r->progs[j].target);
			printf(", \"state\": \"%s\", \"detail\": ", r->progs[j].state);
			json_string(r->progs[j].detail);
			printf("}");
		}
		printf("], \"maps\": [");
		for (int j = 0; j < r->nmaps; j++) {
			printf("%s{\"name\": ", j ? ", " : "");
			json_string(r->maps[j].name);
			printf(", \"entries\": %llu, \"sum\": %llu}", r->maps[j].entries, r->maps[j].sum);
		}
		printf("]}");
	}
	printf("\n]}\n");
}

static void print_table(struct object_result *rs, int n, const char *kernel)
{
	printf("kernel %s\n", kernel);
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];
		int attached = 0, skipped = 0;

		for (int j = 0; j < r->nprogs; j++) {
			attached += strcmp(r->progs[j].state, "attached") == 0 || strcmp(r->progs[j].state, "loaded") == 0;
			skipped += strcmp(r->progs[j].state, "skipped") == 0;
		}
		printf("%-28s %-6s programs %d/%d (%d skipped)", r->name, r->status, attached, r->nprogs, skipped);
		for (int j = 0; j < r->nmaps; j++)
			printf(" %s=%llu", r->maps[j].name, r->maps[j].sum);
		printf("\n");
		if (r->error[0])
			printf("  error: %s\n", r->error);
		for (int j = 0; j < r->nprogs; j++)
			if (r->progs[j].detail[0])
				printf("  %s %s: %s\n", r->progs[j].name, r->progs[j].state, r->progs[j].detail);
		if (r->log_tail[0])
			printf("  log tail:\n%s\n", r->log_tail);
	}
}

/* Runs the workload argv (NULL-terminated) and waits; its exit status, or -1. */
static int run_workload(char **cmd)
{
	int status = 0;
	pid_t pid = fork();

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
	fprintf(out, "usage: kc-loader [--run SECS] [--json] [--no-attach] [--strict] [--verbose] "
		     "[--embedded] [OBJECTS...] [-- CMD ARGS...]\n");
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "run", required_argument, NULL, 'r' },    { "json", no_argument, NULL, 'j' },
		{ "no-attach", no_argument, NULL, 'n' },
		{ "strict", no_argument, NULL, 's' },       { "embedded", no_argument, NULL, 'E' },
		{ "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int run_secs = 0, json = 0, attach = 1, strict = 0, embedded = 0, opt, n = 0, failed = 0, total;
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
	while ((opt = getopt_long(argc, argv, "r:jnsEvh", long_opts, NULL)) != -1) {
		switch (opt) {
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
	if (total == 0) {
		usage(stderr);
		return 2;
	}
	uname(&uts);
	libbpf_set_print(capture_log);
	load_kallsyms();
	results = calloc(total, sizeof(*results));
	if (!results)
		return 1;
	for (int i = optind; i < argc; i++, n++) {
		const char *base = strrchr(argv[i], '/');

		snprintf(results[n].name, sizeof(results[n].name), "%s", base ? base + 1 : argv[i]);
		run_object(&results[n], argv[i], NULL, 0, attach, strict);
	}
	for (size_t i = 0; embedded && i < KC_N_EMBEDDED; i++, n++) {
		size_t size;
		const void *bytes = kc_embedded[i].elf_bytes(&size);

		snprintf(results[n].name, sizeof(results[n].name), "%s.bpf.o", kc_embedded[i].name);
		run_object(&results[n], NULL, bytes, size, attach, strict);
	}
	if (workload && run_workload(workload) != 0)
		fprintf(stderr, "kc-loader: the workload %s failed\n", workload[0]);
	if (run_secs > 0)
		sleep(run_secs);
	for (int i = 0; i < n; i++) {
		if (results[i].obj)
			read_maps(results[i].obj, &results[i]);
		failed += strcmp(results[i].status, "ok") != 0;
	}
	if (json)
		print_json(results, n, uts.release);
	else
		print_table(results, n, uts.release);
	return failed ? 1 : 0;
}
