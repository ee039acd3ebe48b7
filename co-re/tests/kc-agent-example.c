// SPDX-License-Identifier: GPL-2.0
/*
 * kc-agent-example: what an agent written against a CO-RE release needs, and nothing more: the
 * skeleton (vfs.skel.h) and the shipped headers (kc_common.h, kc_collectors.h), no code
 * generation. It keeps the tracepoint family (every kernel has it), asks for rows per process,
 * reads 1000 bytes one at a time, and prints its own row's and the totals' `read` counters as
 * "row=N total=M". `cargo xtask test` builds it against a built cell and runs it as root.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "kc_common.h"
#include "kc_collectors.h"
#include "vfs.skel.h"

int main(void)
{
	struct kc_ctrl ctrl = { .group_by = KC_GROUP_PROCESS };
	struct kc_vfs_counters row = { 0 }, *per_cpu;
	unsigned long long total = 0;
	__u64 me = getpid();
	__u32 zero = 0;
	struct bpf_program *prog;
	struct vfs_bpf *skel;
	int ncpus = libbpf_num_possible_cpus(), fd;
	char c;

	skel = vfs_bpf__open();
	if (!skel)
		return 1;
	bpf_object__for_each_program(prog, skel->obj)
		bpf_program__set_autoload(prog, strstr(bpf_program__name(prog), "__tracepoint") != NULL);
	bpf_map__set_max_entries(skel->maps.vfs_apps, 64);
	if (vfs_bpf__load(skel) || vfs_bpf__attach(skel)) {
		fprintf(stderr, "kc-agent-example: load or attach failed\n");
		return 1;
	}
	if (bpf_map__update_elem(skel->maps.vfs_ctrl, &zero, sizeof(zero), &ctrl, sizeof(ctrl), BPF_ANY))
		return 1;
	fd = open("/dev/zero", O_RDONLY);
	for (int i = 0; i < 1000; i++)
		if (read(fd, &c, 1) != 1)
			return 1;
	close(fd);
	bpf_map__lookup_elem(skel->maps.vfs_apps, &me, sizeof(me), &row, sizeof(row), 0);
	per_cpu = calloc(ncpus, sizeof(*per_cpu));
	if (!per_cpu || bpf_map__lookup_elem(skel->maps.vfs_counters, &zero, sizeof(zero), per_cpu,
					     ncpus * sizeof(*per_cpu), 0))
		return 1;
	for (int i = 0; i < ncpus; i++)
		total += per_cpu[i].read;
	printf("row=%llu total=%llu\n", (unsigned long long)row.read, total);
	vfs_bpf__destroy(skel);
	return 0;
}
