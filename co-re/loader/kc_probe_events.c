// SPDX-License-Identifier: GPL-2.0
/* Return probes made through tracefs's kprobe_events, where the caller can say how many calls
 * may be in flight at once (maxactive).
 *
 * A kretprobe keeps one instance per call between entry and return. The kernel sizes the pool
 * itself for a probe made through the kprobe PMU (what libbpf uses): as many as possible CPUs
 * on a kernel without CONFIG_PREEMPTION (5.10's Debian kernel: 2 in a 2-CPU guest), at least
 * 10 elsewhere. A function that sleeps holds its instance while it sleeps (handle_mm_fault
 * waiting for a page to be read, for memory to be reclaimed), and a call that finds the pool
 * empty is not seen at all: a count silently low. kprobe_events takes `r<maxactive>:`, and its
 * kprobe_profile says how many calls each probe missed, which kc-loader reports with the runs
 * the kernel skipped. cilium/ebpf makes the same choice (RetprobeMaxActive). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/perf_event.h>

#include <bpf/libbpf.h>

#include "kc_attach.h"
#include "kc_probe_events.h"

/* Our probes' group in kprobe_events: events are kc_<pid>_<n>, so a later run can tell those a
 * killed kc-loader left behind. */
#define GROUP "kc_loader"
/* The kernel refuses more (KRETPROBE_MAXACTIVE_MAX). */
#define MAXACTIVE_LIMIT 4096
#define MAX_PROBE_EVENTS 1024

static int created[MAX_PROBE_EVENTS];
static int ncreated, next_index;

static void event_name(char *buf, size_t n, int pid, int index)
{
	snprintf(buf, n, "kc_%d_%d", pid, index);
}

/* A line to kprobe_events; 0 or -errno. */
static int write_kprobe_events(const char *line)
{
	char path[256];
	ssize_t len = (ssize_t)strlen(line), w;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/kprobe_events", kc_tracefs_root());
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	w = write(fd, line, (size_t)len);
	if (w != len)
		err = w < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

static void remove_event(int pid, int index)
{
	char name[64], line[128];

	event_name(name, sizeof(name), pid, index);
	snprintf(line, sizeof(line), "-:%s/%s", GROUP, name);
	write_kprobe_events(line);
}

/* Threads asleep in a probed call (a read of an empty pipe, a fault waiting for storage) hold
 * their instance: room for 8 per CPU and never fewer than 128, ~64 bytes each on 5.10 (a
 * 2-CPU host: 8 KiB per probe; 256 CPUs: 128 KiB). Calls beyond that are counted as missed. */
unsigned kc_probe_events_maxactive(int possible_cpus)
{
	unsigned want = possible_cpus > 16 ? 8u * (unsigned)possible_cpus : 128u;

	return want > MAXACTIVE_LIMIT ? MAXACTIVE_LIMIT : want;
}

/* The event's tracepoint id, or -errno. */
static int event_id(const char *name)
{
	char path[320], buf[32];
	FILE *f;
	int id = -ENOENT;

	snprintf(path, sizeof(path), "%s/events/%s/%s/id", kc_tracefs_root(), GROUP, name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fgets(buf, sizeof(buf), f))
		id = atoi(buf);
	fclose(f);
	return id > 0 ? id : -EINVAL;
}

struct bpf_link *kc_probe_events_attach_return(struct bpf_program *prog, const char *fn,
					       unsigned long long addr, int *index)
{
	struct perf_event_attr attr = { .type = PERF_TYPE_TRACEPOINT, .size = sizeof(attr) };
	char name[64], line[320];
	struct bpf_link *link;
	int id, pfd, err, cpus;

	*index = -1;
	if (ncreated >= MAX_PROBE_EVENTS) {
		errno = ENOSPC;
		return NULL;
	}
	cpus = libbpf_num_possible_cpus();
	event_name(name, sizeof(name), getpid(), next_index);
	/* By address where the caller found it (no lookup of the name by the kernel). */
	if (addr)
		snprintf(line, sizeof(line), "r%u:%s/%s 0x%llx", kc_probe_events_maxactive(cpus), GROUP, name, addr);
	else
		snprintf(line, sizeof(line), "r%u:%s/%s %s", kc_probe_events_maxactive(cpus), GROUP, name, fn);
	err = write_kprobe_events(line);
	if (err) {
		errno = -err;
		return NULL;
	}
	created[ncreated++] = next_index;
	*index = next_index++;
	id = event_id(name);
	if (id < 0) {
		errno = -id;
		return NULL;
	}
	attr.config = (unsigned long long)id;
	pfd = (int)syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (pfd < 0)
		return NULL;
	link = bpf_program__attach_perf_event(prog, pfd);
	if (!link) {
		err = errno;
		close(pfd);
		errno = err;
	}
	return link;
}

unsigned long long kc_probe_events_missed(int index)
{
	char path[256], name[64], line[512], seen[128];
	unsigned long long hits, missed, found = 0;
	FILE *f;

	if (index < 0)
		return 0;
	event_name(name, sizeof(name), getpid(), index);
	snprintf(path, sizeof(path), "%s/kprobe_profile", kc_tracefs_root());
	f = fopen(path, "re");
	if (!f)
		return 0;
	/* "  <event> <hits> <missed>": the event's name, without its group. */
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %127s %llu %llu", seen, &hits, &missed) == 3 && strcmp(seen, name) == 0) {
			found = missed;
			break;
		}
	fclose(f);
	return found;
}

void kc_probe_events_remove(void)
{
	for (int i = 0; i < ncreated; i++)
		remove_event(getpid(), created[i]);
	ncreated = 0;
}

/* "r64:kc_loader/kc_<pid>_<n> ...": the pid and n of one of our events, or -1. */
static int parse_event(const char *line, int *pid, int *index)
{
	const char *s = line;
	int used = 0;

	if (*s != 'r' && *s != 'p')
		return -1;
	s++;
	while (isdigit((unsigned char)*s))
		s++;
	if (strncmp(s, ":" GROUP "/kc_", strlen(":" GROUP "/kc_")) != 0)
		return -1;
	s += strlen(":" GROUP "/kc_");
	if (sscanf(s, "%d_%d%n", pid, index, &used) != 2 || (s[used] != ' ' && s[used] != '\0'))
		return -1;
	return 0;
}

void kc_probe_events_sweep(void)
{
	char path[256], line[512];
	int pids[MAX_PROBE_EVENTS], indexes[MAX_PROBE_EVENTS], n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/kprobe_events", kc_tracefs_root());
	f = fopen(path, "re");
	if (!f)
		return;
	while (n < MAX_PROBE_EVENTS && fgets(line, sizeof(line), f)) {
		int pid, index;

		/* Left by a kc-loader that is gone (killed before it could remove them). */
		if (parse_event(line, &pid, &index) == 0 && pid != getpid() &&
		    kill(pid, 0) != 0 && errno == ESRCH) {
			pids[n] = pid;
			indexes[n++] = index;
		}
	}
	fclose(f);
	for (int i = 0; i < n; i++)
		remove_event(pids[i], indexes[i]);
}
