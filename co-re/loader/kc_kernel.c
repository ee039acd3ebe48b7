// SPDX-License-Identifier: GPL-2.0
/* The kernel's own accounting, read from procfs. See kc_kernel.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "kc_kernel.h"

static void add(struct kc_figures *f, const char *file, const char *name, unsigned long long v)
{
	if (f->n == KC_MAX_FIGURES)
		return;
	snprintf(f->names[f->n], sizeof(f->names[0]), "%s.%s", file, name);
	f->values[f->n++] = v;
}

/* Lines of `path` that are "<key><sep><number>", for the keys listed: /proc/vmstat ("key n"),
 * /proc/<pid>/io ("key: n"), /proc/<pid>/status ("key:\tn"). */
static void keyed(struct kc_figures *f, const char *path, const char *file, const char *const keys[])
{
	char line[256];
	FILE *in = fopen(path, "r");

	while (in && fgets(line, sizeof(line), in)) {
		size_t len = strcspn(line, ": \t");

		for (int k = 0; keys[k]; k++)
			if (strlen(keys[k]) == len && strncmp(line, keys[k], len) == 0)
				add(f, file, keys[k], strtoull(line + len + strspn(line + len, ": \t"), NULL, 10));
	}
	if (in)
		fclose(in);
}

/* /proc/net/snmp: a header line of names and a line of values per protocol ("Udp: ..."). */
static void snmp(struct kc_figures *f, const char *proto, const char *const keys[])
{
	char names[1024], values[1024];
	FILE *in = fopen("/proc/net/snmp", "r");
	size_t plen = strlen(proto);

	while (in && fgets(names, sizeof(names), in) && fgets(values, sizeof(values), in)) {
		char *ns, *vs, *n, *v;

		if (strncmp(names, proto, plen) != 0 || names[plen] != ':')
			continue;
		n = strtok_r(names + plen + 1, " \n", &ns);
		v = strtok_r(values + plen + 1, " \n", &vs);
		for (; n && v; n = strtok_r(NULL, " \n", &ns), v = strtok_r(NULL, " \n", &vs))
			for (int k = 0; keys[k]; k++)
				if (strcmp(n, keys[k]) == 0)
					add(f, proto, n, strtoull(v, NULL, 10));
	}
	if (in)
		fclose(in);
}

/* /proc/net/dev, summed over every device: packets and bytes each way. */
static void netdev(struct kc_figures *f)
{
	char line[512];
	unsigned long long rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
	FILE *in = fopen("/proc/net/dev", "r");

	while (in && fgets(line, sizeof(line), in)) {
		char *colon = strchr(line, ':');
		unsigned long long v[16] = { 0 };

		if (!colon || sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
				     &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) != 10)
			continue;
		rx_bytes += v[0];
		rx_packets += v[1];
		tx_bytes += v[8];
		tx_packets += v[9];
	}
	if (in)
		fclose(in);
	add(f, "net", "rx_packets", rx_packets);
	add(f, "net", "rx_bytes", rx_bytes);
	add(f, "net", "tx_packets", tx_packets);
	add(f, "net", "tx_bytes", tx_bytes);
}

/* Whether a /proc/interrupts line's label (before its colon) is an interrupt whose handler
 * irq_handler_entry may see: a numbered line (device IRQs, arm64's timer), and on arm64 the
 * IPIs (interrupts with handlers since 5.9, listed by name, traced by some kernels only): an
 * upper bound of what the tracepoint sees. x86's own vectors (LOC, IPIs, NMI) run no such
 * handler. */
static int handled_line(const char *label, size_t len)
{
	size_t digits = strspn(label, "0123456789");

#if defined(__aarch64__)
	if (len > 3 && strncmp(label, "IPI", 3) == 0)
		digits = 3 + strspn(label + 3, "0123456789");
#endif
	return digits > 0 && digits == len;
}

/* /proc/interrupts: the interrupts of the lines irq_handler_entry sees, summed over the CPUs. */
static void interrupts(struct kc_figures *f)
{
	char line[4096];
	int cpus = 0;
	unsigned long long sum = 0;
	FILE *in = fopen("/proc/interrupts", "r");

	if (!in)
		return;
	if (fgets(line, sizeof(line), in))
		for (char *p = line; (p = strstr(p, "CPU")); p += 3)
			cpus++;
	while (fgets(line, sizeof(line), in)) {
		char *p = line + strspn(line, " "), *end, *colon = strchr(p, ':');

		if (!colon || !handled_line(p, (size_t)(colon - p)))
			continue;
		p = colon + 1;
		for (int c = 0; c < cpus; c++) {
			unsigned long long n = strtoull(p, &end, 10);

			if (end == p)
				break;
			sum += n;
			p = end;
		}
	}
	fclose(in);
	add(f, "interrupts", "handled", sum);
}

void kc_system_figures(struct kc_figures *f)
{
	static const char *const stat[] = { "processes", "ctxt", "intr", "softirq", NULL };
	/* Swap-ins and -outs that moved no I/O (zero-filled pages, 6.12; zswap) count apart. */
	static const char *const vmstat[] = { "pgfault",     "pgmajfault", "pswpin", "pswpout", "swpin_zero",
					      "swpout_zero", "zswpin",	   "zswpout", "oom_kill", NULL };
	static const char *const udp[] = { "InDatagrams", "OutDatagrams", NULL };
	static const char *const tcp[] = { "ActiveOpens", "PassiveOpens", "RetransSegs", NULL };
	/* /proc/net/snmp6: a line a figure ("Udp6InDatagrams n"). */
	static const char *const snmp6[] = { "Udp6InDatagrams", "Udp6OutDatagrams", NULL };

	f->n = 0;
	/* "intr" and "softirq" lines start with their total. */
	keyed(f, "/proc/stat", "stat", stat);
	keyed(f, "/proc/vmstat", "vmstat", vmstat);
	snmp(f, "Udp", udp);
	snmp(f, "Tcp", tcp);
	keyed(f, "/proc/net/snmp6", "snmp6", snmp6);
	netdev(f);
	interrupts(f);
}

void kc_process_figures(pid_t pid, struct kc_figures *f)
{
	static const char *const io[] = { "rchar", "wchar", "syscr", "syscw", NULL };
	static const char *const status[] = { "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", NULL };
	char path[64], line[1024];
	unsigned long long minflt, majflt;
	FILE *in;

	f->n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/io", (int)pid, (int)pid);
	keyed(f, path, "io", io);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)pid);
	keyed(f, path, "status", status);
	/* stat: after the command's closing parenthesis, minflt and majflt are the 8th and 10th
	 * fields (10 and 12 of the whole line). */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)pid);
	in = fopen(path, "r");
	if (in && fgets(line, sizeof(line), in)) {
		char *after = strrchr(line, ')');

		if (after && sscanf(after + 1, " %*c %*d %*d %*d %*d %*d %*u %llu %*u %llu", &minflt, &majflt) == 2) {
			add(f, "stat", "minflt", minflt);
			add(f, "stat", "majflt", majflt);
		}
	}
	if (in)
		fclose(in);
}

void kc_figures_delta(const struct kc_figures *before, const struct kc_figures *after, struct kc_figures *delta)
{
	struct kc_figures d = { 0 };

	for (int i = 0; i < after->n; i++)
		for (int j = 0; j < before->n; j++)
			if (strcmp(after->names[i], before->names[j]) == 0) {
				snprintf(d.names[d.n], sizeof(d.names[0]), "%s", after->names[i]);
				d.values[d.n++] = after->values[i] - before->values[j];
			}
	*delta = d;
}

void kc_figures_json(FILE *out, const struct kc_figures *f)
{
	fprintf(out, "{");
	for (int i = 0; i < f->n; i++)
		fprintf(out, "%s\"%s\": %llu", i ? ", " : "", f->names[i], f->values[i]);
	fprintf(out, "}");
}

int kc_kernel_at_least(int major, int minor)
{
	static int running_major = -1, running_minor;
	struct utsname u;

	if (running_major < 0 &&
	    (uname(&u) != 0 || sscanf(u.release, "%d.%d", &running_major, &running_minor) != 2))
		running_major = running_minor = 0;
	return running_major > major || (running_major == major && running_minor >= minor);
}
