// SPDX-License-Identifier: GPL-2.0
/*
 * kc-fill-tables: the workload of `cargo xtask bench collect`. Fills every per-application
 * table (a map named `*_apps`) its parent holds, the loader that runs it, with ROWS rows, so
 * that the loader's collection reads full tables:
 *
 *   kc-fill-tables ROWS OUT
 *
 * Rows are keyed by ids no cgroup has (from 2^40 up: the bench collects by cgroup, where no
 * row is removed as exited), each counter of a row set to a small nonzero count. The parent's
 * maps are found through /proc/PPID/fdinfo (`map_id:`), not by name over the whole system:
 * only the tables of the loader being measured are filled. Writes "TABLES ROWS" (tables
 * filled, rows inserted in all) to OUT; exits 1 with the reason where a map cannot be read
 * or written.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/bpf.h>

#define FIRST_ID (1ULL << 40)
/* Rows per BPF_MAP_UPDATE_BATCH call. */
#define BATCH 4096
#define MAX_TABLES 256

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The `map_id:` of the parent's descriptor `fd`, 0 where it is not a map. */
static unsigned int parent_map_id(pid_t parent, const char *fd)
{
	char path[320], line[128];
	unsigned int id = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", parent, fd);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "map_id: %u", &id) == 1)
			break;
	fclose(f);
	return id;
}

/* Inserts `rows` rows into the map `fd`: in batches where the kernel has them (5.6+), one at
 * a time otherwise. Returns the rows inserted. */
static unsigned long long fill(int fd, const struct bpf_map_info *info, unsigned long long rows)
{
	size_t vsize = info->value_size;
	unsigned long long *keys = calloc(BATCH, sizeof(*keys)), done = 0;
	unsigned char *values = calloc(BATCH, vsize);
	int batches = 1;

	if (!keys || !values)
		fail("calloc");
	while (done < rows) {
		__u32 n = rows - done < BATCH ? (__u32)(rows - done) : BATCH;
		union bpf_attr attr;

		for (__u32 i = 0; i < n; i++) {
			keys[i] = FIRST_ID + done + i;
			for (size_t w = 0; w < vsize / 8; w++) {
				unsigned long long count = (done + i) % 7 + 1;

				memcpy(values + i * vsize + w * 8, &count, 8);
			}
		}
		if (batches) {
			memset(&attr, 0, sizeof(attr));
			attr.batch.keys = (__u64)(unsigned long)keys;
			attr.batch.values = (__u64)(unsigned long)values;
			attr.batch.count = n;
			attr.batch.map_fd = fd;
			if (sys_bpf(BPF_MAP_UPDATE_BATCH, &attr) == 0) {
				done += n;
				continue;
			}
			if (errno != EINVAL && errno != EOPNOTSUPP && errno != 524 /* ENOTSUPP */)
				fail("BPF_MAP_UPDATE_BATCH");
			batches = 0;
		}
		for (__u32 i = 0; i < n; i++) {
			memset(&attr, 0, sizeof(attr));
			attr.map_fd = fd;
			attr.key = (__u64)(unsigned long)&keys[i];
			attr.value = (__u64)(unsigned long)(values + i * vsize);
			if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr))
				fail("BPF_MAP_UPDATE_ELEM");
		}
		done += n;
	}
	free(keys);
	free(values);
	return done;
}

int main(int argc, char **argv)
{
	pid_t parent = getppid();
	unsigned long long rows, inserted = 0;
	unsigned int filled[MAX_TABLES];
	int tables = 0;
	char dir[64], *end;
	struct dirent *d;
	FILE *out;
	DIR *fds;

	if (argc != 3) {
		fprintf(stderr, "usage: kc-fill-tables ROWS OUT\n");
		return 2;
	}
	rows = strtoull(argv[1], &end, 10);
	if (*end || rows == 0) {
		fprintf(stderr, "kc-fill-tables: ROWS %s: expected a positive number\n", argv[1]);
		return 2;
	}
	snprintf(dir, sizeof(dir), "/proc/%d/fd", parent);
	fds = opendir(dir);
	if (!fds)
		fail(dir);
	while ((d = readdir(fds))) {
		unsigned int id = d->d_name[0] == '.' ? 0 : parent_map_id(parent, d->d_name);
		struct bpf_map_info info;
		union bpf_attr attr;
		size_t n;
		int fd;

		if (!id)
			continue;
		memset(&attr, 0, sizeof(attr));
		attr.map_id = id;
		fd = (int)sys_bpf(BPF_MAP_GET_FD_BY_ID, &attr);
		if (fd < 0)
			fail("BPF_MAP_GET_FD_BY_ID");
		memset(&info, 0, sizeof(info));
		memset(&attr, 0, sizeof(attr));
		attr.info.bpf_fd = fd;
		attr.info.info_len = sizeof(info);
		attr.info.info = (__u64)(unsigned long)&info;
		if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr))
			fail("BPF_OBJ_GET_INFO_BY_FD");
		n = strlen(info.name);
		if (n >= 5 && strcmp(info.name + n - 5, "_apps") == 0 && info.key_size == 8) {
			int i;

			/* A map may be open twice in the parent: filled once. */
			for (i = 0; i < tables && filled[i] != id; i++)
				;
			if (i == tables && tables < MAX_TABLES) {
				filled[tables++] = id;
				inserted += fill(fd, &info, rows < info.max_entries ? rows : info.max_entries);
			}
		}
		close(fd);
	}
	closedir(fds);
	out = fopen(argv[2], "we");
	if (!out || fprintf(out, "%d %llu\n", tables, inserted) < 0 || fclose(out))
		fail(argv[2]);
	return 0;
}
