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

/* The captured lines from the last up: `*end` is where the walk stands (start at log_len);
 * each call gives the next line up as [*start, end of line) and moves `*end` above it, and
 * returns 0 once there is none. Empty lines are passed over. */
static int line_above(size_t *end, size_t *start)
{
	size_t e = *end;

	while (e > 0 && log_buf[e - 1] == '\n')
		e--;
	if (e == 0)
		return 0;
	*start = e;
	while (*start > 0 && log_buf[*start - 1] != '\n')
		(*start)--;
	*end = *start;
	return (int)(e - *start);
}

static int starts_with(size_t at, size_t len, const char *prefix)
{
	return len >= strlen(prefix) && !strncmp(log_buf + at, prefix, strlen(prefix));
}

/* The verifier's statistics, which close its log. */
static int is_verifier_stats(size_t at, size_t len)
{
	return starts_with(at, len, "processed ") || starts_with(at, len, "verification time") ||
	       starts_with(at, len, "stack depth");
}

void kc_log_reason(char *out, size_t n)
{
	size_t end = log_len, start;
	int len, below_stats = 0, fallback = -1;
	size_t fallback_at = 0;

	/* The verifier's verdict: the line right above its closing statistics. Else libbpf's
	 * last word above its closing "failed to load object" (refused before verifying: which
	 * program, and how); else the last line. */
	while ((len = line_above(&end, &start)) > 0) {
		if (is_verifier_stats(start, len)) {
			below_stats = 1;
			continue;
		}
		if (below_stats) {
			snprintf(out, n, "%.*s", len, log_buf + start);
			return;
		}
		if (fallback < 0 || memmem(log_buf + fallback_at, fallback, "failed to load object", 21)) {
			fallback = len;
			fallback_at = start;
		}
	}
	snprintf(out, n, "%.*s", fallback < 0 ? 0 : fallback, log_buf + fallback_at);
}

void kc_log_tail(char *out, size_t n)
{
	size_t from = log_len > n - 1 ? log_len - (n - 1) : 0;

	snprintf(out, n, "%.*s", (int)(log_len - from), log_buf + from);
}
