// SPDX-License-Identifier: GPL-2.0
/* kc-loader's report: JSON for programs, a table for people. See kc_loader.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kc_loader.h"

const char *kc_prog_state_name(enum kc_prog_state s)
{
	static const char *const names[] = { "skipped", "loaded", "attached", "failed" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

const char *kc_object_status_name(enum kc_object_status s)
{
	static const char *const names[] = { "ok", "partial", "failed", "as-auto" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

const char *kc_stop_signal_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "?";
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

/* A program's verifier statistics; absent when it did not load (or the kernel kept none). */
static void print_verifier(const struct kc_verifier_stats *v)
{
	if (!v->known)
		return;
	printf(", \"verifier\": {\"insns\": %u, \"limit\": %u, \"states\": %u, \"peak_states\": %u, \"max_states_per_insn\": %u, "
	       "\"usec\": %llu}",
	       v->insns, v->limit, v->states, v->peak_states, v->max_states_per_insn, v->usec);
}

void kc_print_json(struct object_result *rs, int n, const struct kc_pass *pass)
{
	printf("{\"kernel\": ");
	json_string(pass->kernel);
	printf(", \"attach\": \"%s\"", kc_family_name(pass->mode));
	printf(", \"workload_pid\": %d", (int)pass->workload_pid);
	if (pass->stopped_by)
		printf(", \"stopped_by\": \"%s\"", kc_stop_signal_name(pass->stopped_by));
	else
		printf(", \"stopped_by\": null");
	printf(", \"ms\": {\"attach\": %.1f, \"workload\": %.1f, \"detach\": %.1f, \"read\": %.1f}", pass->ms_attach,
	       pass->ms_workload, pass->ms_detach, pass->ms_read);
	/* The kernel's own accounting: the workload's final figures, the system's deltas over its
	 * run (inner) and from before attach to after detach (outer). */
	printf(", \"kernel_figures\": {\"workload\": ");
	if (pass->measured)
		kc_figures_json(stdout, &pass->workload);
	else
		printf("null");
	printf(", \"inner\": ");
	if (pass->measured)
		kc_figures_json(stdout, &pass->inner);
	else
		printf("null");
	printf(", \"outer\": ");
	kc_figures_json(stdout, &pass->outer);
	printf("}");
	printf(", \"objects\": [");
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];

		printf("%s\n  {\"object\": ", i ? "," : "");
		json_string(r->name);
		printf(", \"attach\": \"%s\", \"status\": \"%s\", \"error\": ", kc_family_name(r->mode),
		       kc_object_status_name(r->status));
		json_string(r->error);
		printf(", \"events\": [");
		for (int j = 0; j < r->nevents; j++) {
			struct event_result *ev = &r->events[j];
			int first = 1;

			printf("%s{\"event\": ", j ? ", " : "");
			json_string(ev->name);
			if (ev->family >= 0)
				printf(", \"family\": \"%s\"", kc_family_name(ev->family));
			else
				printf(", \"family\": null");
			printf(", \"passed_over\": {");
			for (int f = 0; f < KC_N_FAMILIES; f++) {
				if (f == ev->family)
					continue;
				printf("%s\"%s\": {\"kind\": \"%s\", \"why\": ", first ? "" : ", ", kc_family_name(f),
				       kc_why_name(ev->kind[f]));
				json_string(ev->why[f]);
				printf("}");
				first = 0;
			}
			printf("}}");
		}
		printf("]");
		printf(", \"ms\": {\"choose\": %.1f, \"load\": %.1f, \"attach\": %.1f}", r->ms_choose, r->ms_load,
		       r->ms_attach);
		printf(", \"missed_runs\": %llu", r->missed_runs);
		printf(", \"log_tail\": ");
		json_string(r->log_tail);
		printf(", \"programs\": [");
		for (int j = 0; j < r->nprogs; j++) {
			printf("%s{\"name\": ", j ? ", " : "");
			json_string(r->progs[j].name);
			printf(", \"target\": ");
			json_string(r->progs[j].target);
			printf(", \"state\": \"%s\", \"detail\": ", kc_prog_state_name(r->progs[j].state));
			json_string(r->progs[j].detail);
			print_verifier(&r->progs[j].verifier);
			printf("}");
		}
		printf("]%s%s}", r->counters_json ? ", " : "", r->counters_json ? r->counters_json : "");
	}
	printf("\n]}\n");
}

void kc_print_table(struct object_result *rs, int n, const struct kc_pass *pass)
{
	printf("kernel %s, --attach %s: attach %.0f ms, workload %.0f ms, detach %.0f ms%s%s\n", pass->kernel,
	       kc_family_name(pass->mode), pass->ms_attach, pass->ms_workload, pass->ms_detach,
	       pass->stopped_by ? ", stopped early by " : "", pass->stopped_by ? kc_stop_signal_name(pass->stopped_by) : "");
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];
		int attached = 0, skipped = 0;

		for (int j = 0; j < r->nprogs; j++) {
			attached += r->progs[j].state == KC_PROG_ATTACHED || r->progs[j].state == KC_PROG_LOADED;
			skipped += r->progs[j].state == KC_PROG_SKIPPED;
		}
		printf("%-28s %-6s programs %d/%d (%d skipped)\n", r->name, kc_object_status_name(r->status), attached,
		       r->nprogs, skipped);
		if (r->error[0])
			printf("  error: %s\n", r->error);
		if (r->counters_text)
			printf("%s", r->counters_text);
		if (r->missed_runs)
			printf("  missed runs: %llu (the kernel skipped its programs while one ran on that CPU: counts may be low by that many)\n",
			       r->missed_runs);
		for (int j = 0; j < r->nevents; j++) {
			struct event_result *ev = &r->events[j];

			printf("  %-32s %-10s", ev->name, ev->family >= 0 ? kc_family_name(ev->family) : "NONE");
			for (int f = 0; f < KC_N_FAMILIES; f++)
				if (f != ev->family && ev->why[f][0])
					printf("  %s: %s;", kc_family_name(f), ev->why[f]);
			printf("\n");
		}
		for (int j = 0; j < r->nprogs; j++)
			if (r->progs[j].state == KC_PROG_FAILED)
				printf("  %s failed: %s\n", r->progs[j].name, r->progs[j].detail);
		if (r->log_tail[0])
			printf("  log tail:\n%s\n", r->log_tail);
	}
}
