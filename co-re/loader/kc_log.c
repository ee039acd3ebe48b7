// SPDX-License-Identifier: GPL-2.0
/* libbpf's messages, the verifier's log among them, kept for the report of an object that
 * fails and for the reason a family's programs did not load. See kc_log.h. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "kc_log.h"

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

static void capture_text(const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	capture_log(LIBBPF_WARN, fmt, args);
	va_end(args);
}

/* Appends a program's own log (kc_verifier.c) to the captured messages, as libbpf's are. */
void kc_log_append(const char *text)
{
	capture_text("%s", text);
}

void kc_log_capture(int debug)
{
	verbose = debug;
	libbpf_set_print(capture_log);
}

void kc_log_reset(void)
{
	log_len = 0;
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

/* libbpf's last message above its closing "failed to load object": which program failed
 * and how, when the verifier did not say (its log is empty: refused before verifying). */
static void libbpf_reason(char *out, size_t n)
{
	size_t end = log_len;

	while (end > 0) {
		size_t start = end - 1;

		while (start > 0 && log_buf[start - 1] != '\n')
			start--;
		if (end - start > 1 && !memmem(log_buf + start, end - start, "failed to load object", 21)) {
			snprintf(out, n, "%.*s", (int)(end - start - (log_buf[end - 1] == '\n')), log_buf + start);
			return;
		}
		end = start;
	}
	last_log_line(out, n);
}

/* The verifier's reason for refusing the last program libbpf loaded: the line before its
 * closing statistics ("processed N insns", "verification time"), or "" when the log has no
 * such line (a failure before the verifier ran). */
static void verifier_verdict(char *out, size_t n)
{
	static const char *const stats[] = { "processed ", "verification time", "stack depth", NULL };
	size_t end = log_len;

	out[0] = 0;
	while (end > 0) {
		size_t start = end - 1;
		int is_stats = 0;

		while (start > 0 && log_buf[start - 1] != '\n')
			start--;
		for (int i = 0; stats[i]; i++)
			is_stats |= !strncmp(log_buf + start, stats[i], strlen(stats[i]));
		if (is_stats) {
			/* The verdict is the first line above the statistics. */
			size_t vend = start, vstart;

			while (vend > 0 && log_buf[vend - 1] == '\n')
				vend--;
			vstart = vend;
			while (vstart > 0 && log_buf[vstart - 1] != '\n')
				vstart--;
			for (int i = 0; stats[i]; i++)
				if (!strncmp(log_buf + vstart, stats[i], strlen(stats[i])))
					goto next; /* still in the statistics */
			snprintf(out, n, "%.*s", (int)(vend - vstart), log_buf + vstart);
			return;
		}
next:
		end = start;
	}
}

void kc_log_reason(char *out, size_t n)
{
	verifier_verdict(out, n);
	if (!out[0])
		libbpf_reason(out, n);
}

void kc_log_tail(char *out, size_t n)
{
	size_t from = log_len > n - 1 ? log_len - (n - 1) : 0;

	snprintf(out, n, "%.*s", (int)(log_len - from), log_buf + from);
}
