// SPDX-License-Identifier: GPL-2.0
/* kc-loader's report: JSON for programs, a table for people. See kc_loader.h. */
#include <stdio.h>
#include <string.h>

#include "kc_loader.h"

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

void kc_print_json(struct object_result *rs, int n, const char *kernel, pid_t workload_pid)
{
	printf("{\"kernel\": ");
	json_string(kernel);
	printf(", \"workload_pid\": %d", (int)workload_pid);
	printf(", \"objects\": [");
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];

		printf("%s\n  {\"object\": ", i ? "," : "");
		json_string(r->name);
		printf(", \"attach\": \"%s\", \"status\": \"%s\", \"error\": ", kc_family_name(r->mode), r->status);
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
		printf("]%s%s}", r->counters_json ? ", " : "", r->counters_json ? r->counters_json : "");
	}
	printf("\n]}\n");
}

void kc_print_table(struct object_result *rs, int n, const char *kernel)
{
	printf("kernel %s\n", kernel);
	for (int i = 0; i < n; i++) {
		struct object_result *r = &rs[i];
		int attached = 0, skipped = 0;

		for (int j = 0; j < r->nprogs; j++) {
			attached += strcmp(r->progs[j].state, "attached") == 0 || strcmp(r->progs[j].state, "loaded") == 0;
			skipped += strcmp(r->progs[j].state, "skipped") == 0;
		}
		printf("%-28s %-6s programs %d/%d (%d skipped)\n", r->name, r->status, attached, r->nprogs, skipped);
		if (r->error[0])
			printf("  error: %s\n", r->error);
		if (r->counters_text)
			printf("%s", r->counters_text);
		for (int j = 0; j < r->nevents; j++) {
			struct event_result *ev = &r->events[j];

			printf("  %-32s %-10s", ev->name, ev->family >= 0 ? kc_family_name(ev->family) : "NONE");
			for (int f = 0; f < KC_N_FAMILIES; f++)
				if (f != ev->family && ev->why[f][0])
					printf("  %s: %s;", kc_family_name(f), ev->why[f]);
			printf("\n");
		}
		for (int j = 0; j < r->nprogs; j++)
			if (strcmp(r->progs[j].state, "failed") == 0)
				printf("  %s %s: %s\n", r->progs[j].name, r->progs[j].state, r->progs[j].detail);
		if (r->log_tail[0])
			printf("  log tail:\n%s\n", r->log_tail);
	}
}
