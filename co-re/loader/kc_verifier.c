// SPDX-License-Identifier: GPL-2.0
/* The verifier's own statistics of each program's load, as the kernel's BPF CI (veristat)
 * reads them: each loaded program gets a log at BPF_LOG_STATS (level 4, 5.2 on), which holds
 * only the closing lines ("verification time N usec", "processed N insns (limit L)
 * max_states_per_insn M total_states T peak_states P mark_read R") when the load succeeds.
 * See kc_loader.h. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "kc_loader.h"

#define BPF_LOG_STATS 4

void kc_verifier_request(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;
	int i = 0;

	free(r->stats_logs);
	r->stats_logs = calloc(r->nprogs ? r->nprogs : 1, KC_STATS_LOG);
	if (!r->stats_logs)
		return;
	bpf_object__for_each_program(prog, obj) {
		if (i >= r->nprogs)
			break;
		if (bpf_program__autoload(prog)) {
			bpf_program__set_log_buf(prog, r->stats_logs + (size_t)i * KC_STATS_LOG, KC_STATS_LOG);
			bpf_program__set_log_level(prog, BPF_LOG_STATS);
		}
		i++;
	}
}

/* Fills `v` from one program's log; 0 when the log has the statistics line. The lines are
 * matched at their start: kernels add lines around them (7.2's "insns processed N"). */
int kc_verifier_parse(const char *log, struct kc_verifier_stats *v)
{
	memset(v, 0, sizeof(*v));
	for (const char *line = log, *end; *line; line = end ? end + 1 : line + strlen(line)) {
		end = strchr(line, '\n');
		if (sscanf(line, "processed %u insns (limit %u) max_states_per_insn %u total_states %u peak_states %u",
			   &v->insns, &v->limit, &v->max_states_per_insn, &v->states, &v->peak_states) == 5)
			v->known = 1;
		else
			sscanf(line, "verification time %llu usec", &v->usec);
	}
	return v->known ? 0 : -1;
}

void kc_verifier_read(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;
	int i = 0;

	if (!r->stats_logs)
		return;
	bpf_object__for_each_program(prog, obj) {
		if (i >= r->nprogs)
			break;
		if (bpf_program__autoload(prog) && bpf_program__fd(prog) >= 0)
			kc_verifier_parse(r->stats_logs + (size_t)i * KC_STATS_LOG, &r->progs[i].verifier);
		i++;
	}
}

void kc_verifier_log_each(struct object_result *r, void (*take)(const char *log))
{
	for (int i = 0; r->stats_logs && i < r->nprogs; i++)
		if (r->stats_logs[(size_t)i * KC_STATS_LOG])
			take(r->stats_logs + (size_t)i * KC_STATS_LOG);
}

void kc_verifier_release(struct bpf_object *obj, struct object_result *r)
{
	struct bpf_program *prog;

	/* libbpf keeps the pointers: detach them before the buffers go. */
	if (obj)
		bpf_object__for_each_program(prog, obj) bpf_program__set_log_buf(prog, NULL, 0);
	free(r->stats_logs);
	r->stats_logs = NULL;
}
