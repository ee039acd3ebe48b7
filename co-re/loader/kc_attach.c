// SPDX-License-Identifier: GPL-2.0
/* Attach families: names, and the running kernel's answers about targets. See kc_attach.h. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <linux/bpf.h>
#include <linux/btf.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "kc_attach.h"

static const char *const family_names[KC_N_FAMILIES] = { "trampoline", "probe", "tracepoint" };

const char *kc_why_name(enum kc_why why)
{
	static const char *const names[] = { "used", "not-asked", "costlier", "no-program", "absent", "refused", "failed" };

	return why < sizeof(names) / sizeof(names[0]) ? names[why] : "?";
}

const char *kc_family_name(int family)
{
	return family >= 0 && family < KC_N_FAMILIES ? family_names[family] : "auto";
}

int kc_attach_parse(const char *s)
{
	if (strcmp(s, "auto") == 0)
		return KC_ATTACH_AUTO;
	for (int f = 0; f < KC_N_FAMILIES; f++)
		if (strcmp(s, family_names[f]) == 0)
			return f;
	return -2;
}

int kc_parse_program_name(const char *name, struct kc_program_name *out)
{
	const char *sep = strstr(name, "__"), *fam, *variant;
	size_t len;

	if (!sep || (size_t)(sep - name) >= sizeof(out->event))
		return -1;
	fam = sep + 2;
	len = strcspn(fam, "_");
	out->family = -1;
	for (int f = 0; f < KC_N_FAMILIES; f++)
		if (strlen(family_names[f]) == len && strncmp(fam, family_names[f], len) == 0)
			out->family = f;
	if (out->family < 0)
		return -1;
	variant = strstr(fam, "__");
	snprintf(out->event, sizeof(out->event), "%.*s", (int)(sep - name), name);
	snprintf(out->group, sizeof(out->group), "%.*s", (int)(variant ? (size_t)(variant - name) : strlen(name)),
		 name);
	return 0;
}

static int has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int kc_section_family(const char *sec)
{
	static const struct {
		const char *prefix;
		int family;
	} kinds[] = {
		{ "fentry/", KC_TRAMPOLINE },	 { "fexit/", KC_TRAMPOLINE },	 { "tp_btf/", KC_TRAMPOLINE },
		{ "kprobe/", KC_PROBE },	 { "kretprobe/", KC_PROBE },	 { "ksyscall/", KC_PROBE },
		{ "kretsyscall/", KC_PROBE },	 { "tracepoint/", KC_TRACEPOINT }, { "tp/", KC_TRACEPOINT },
		{ "raw_tp/", KC_TRACEPOINT },	 { "raw_tracepoint/", KC_TRACEPOINT },
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (has_prefix(sec, kinds[i].prefix))
			return kinds[i].family;
	return -1;
}

const char *kc_tracefs_root(void)
{
	static const char *roots[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	static const char *root;
	char path[256];

	if (root)
		return root;
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]) && !root; i++) {
		snprintf(path, sizeof(path), "%s/events", roots[i]);
		if (access(path, F_OK) == 0)
			root = roots[i];
	}
	if (!root) {
		/* Not mounted (minimal systems, initramfs): mount it, libbpf needs it for tracepoints. */
		mount("tracefs", roots[0], "tracefs", 0, NULL);
		root = roots[0];
	}
	return root;
}

/* A file's names (field `column`, 0-based, of each line) in a hash set. kallsyms has some
 * 200,000: read whole in large chunks and indexed in place, with no copy of each name and no
 * sort (under emulation, a strdup and qsort of them cost seconds). */
struct name_set {
	char *text;	    /* the file, its names cut out in place */
	const char **slots; /* open addressing: a power of two, at most half full */
	unsigned char *twice; /* per slot: the name is on more than one line */
	size_t mask;
	int loaded;
};

static size_t hash_name(const char *s)
{
	size_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The whole of a file whose size stat does not tell (procfs, debugfs), NUL-terminated. */
static char *read_whole(const char *path)
{
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap), *bigger;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0 || !buf)
		goto fail;
	while ((got = read(fd, buf + len, cap - 1 - len)) > 0) {
		len += (size_t)got;
		if (len == cap - 1) {
			bigger = realloc(buf, cap * 2);
			if (!bigger)
				goto fail;
			buf = bigger;
			cap *= 2;
		}
	}
	if (got < 0)
		goto fail;
	close(fd);
	buf[len] = '\0';
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static const char **slot_of(const struct name_set *set, const char *name)
{
	size_t i = hash_name(name) & set->mask;

	while (set->slots[i] && strcmp(set->slots[i], name) != 0)
		i = (i + 1) & set->mask;
	return &set->slots[i];
}

static void load_names(struct name_set *set, const char *path, int column)
{
	size_t lines = 0, size = 2;
	char *line, *next;
	const char **slot;

	set->text = read_whole(path);
	if (!set->text)
		return;
	for (const char *c = set->text; *c; c++)
		lines += *c == '\n';
	while (size < 2 * (lines + 1))
		size *= 2;
	set->slots = calloc(size, sizeof(*set->slots));
	set->twice = calloc(size, 1);
	if (!set->slots || !set->twice) {
		free(set->slots);
		free(set->twice);
		free(set->text);
		return;
	}
	set->mask = size - 1;
	for (line = set->text; *line; line = next) {
		char *tok = line, *end;

		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = '\0';
		for (int c = 0; c < column && *tok; c++) {
			tok += strcspn(tok, " \t");
			tok += strspn(tok, " \t");
		}
		end = tok + strcspn(tok, " \t");
		if (end == tok)
			continue;
		*end = '\0';
		slot = slot_of(set, tok);
		if (*slot)
			set->twice[slot - set->slots] = 1; /* the first line keeps it, as the kernel's lookup */
		else
			*slot = tok;
	}
	set->loaded = 1;
}

static int listed(const struct name_set *set, const char *name)
{
	return *slot_of(set, name) != NULL;
}

static struct name_set kallsyms;
static int kprobe_pmu;

unsigned long long kc_kprobe_address(const char *fn)
{
	const char **slot, *line;

	if (!kprobe_pmu || !kallsyms.loaded)
		return 0;
	slot = slot_of(&kallsyms, fn);
	if (!*slot || kallsyms.twice[slot - kallsyms.slots])
		return 0;
	/* The name's line starts after the previous line's end (cut to a NUL) or the file's start. */
	for (line = *slot; line > kallsyms.text && line[-1] != '\0'; line--)
		;
	return strtoull(line, NULL, 16); /* 0 where kptr_restrict hides it */
}

static enum kc_why probe_check(const char *fn, char *why, size_t n)
{
	static struct name_set blacklist;
	static int checked, kprobes;
	char path[256];

	if (!checked) {
		checked = 1;
		snprintf(path, sizeof(path), "%s/kprobe_events", kc_tracefs_root());
		kprobe_pmu = access("/sys/bus/event_source/devices/kprobe/type", F_OK) == 0;
		kprobes = kprobe_pmu || access(path, F_OK) == 0;
	}
	if (!kprobes) {
		snprintf(why, n, "this kernel has no kprobes (no kprobe PMU, no kprobe_events)");
		return KC_WHY_REFUSED;
	}
	if (!kallsyms.loaded) {
		load_names(&kallsyms, "/proc/kallsyms", 2);
		load_names(&blacklist, "/sys/kernel/debug/kprobes/blacklist", 1);
	}
	if (kallsyms.loaded && !listed(&kallsyms, fn)) {
		snprintf(why, n, "kernel has no function %s", fn);
		return KC_WHY_ABSENT;
	}
	if (blacklist.loaded && listed(&blacklist, fn)) {
		snprintf(why, n, "%s is on the kprobe blacklist", fn);
		return KC_WHY_REFUSED;
	}
	return KC_WHY_NONE;
}

/* The kernel's ENOTSUPP (not in the UAPI headers): what attaching a trampoline to a kernel
 * function returns where the architecture cannot enter one (arm64 before 6.4: no ftrace direct
 * calls), though such programs load. */
#define KC_ENOTSUPP 524

/* Loads a two-instruction program of `type` at BTF id `btf_id`, as libbpf-tools'
 * fentry_can_attach does: the kernel says whether it takes a trampoline program there (EPERM
 * where trampolines are refused, EINVAL where the function cannot be traced). Attaching is
 * left to the real program (each trampoline attach rewrites kernel text, slow to do twice),
 * except once per run: a kernel that cannot enter trampolines from its functions loads the
 * program and refuses every attach, which only an attach shows. */
static enum kc_why trial_trampoline(enum bpf_attach_type type, int btf_obj_fd, int btf_id, char *why, size_t n)
{
	static int attaches = -1; /* unknown, then 0 or 1 */
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = type, .attach_btf_id = btf_id,
		    .attach_btf_obj_fd = btf_obj_fd);
	int prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "kc_trial", "GPL", insns, 2, &opts);

	if (prog < 0) {
		snprintf(why, n, "a test program does not load there: %s", strerror(errno));
		return KC_WHY_REFUSED;
	}
	if (attaches < 0) {
		int link = bpf_raw_tracepoint_open(NULL, prog);

		attaches = link >= 0 || errno != KC_ENOTSUPP;
		if (link >= 0)
			close(link);
	}
	close(prog);
	if (!attaches) {
		snprintf(why, n, "this kernel attaches no trampolines to its functions (ENOTSUPP)");
		return KC_WHY_REFUSED;
	}
	return KC_WHY_NONE;
}

/* The BTF of each loaded module (5.11 on), split on the kernel's: functions of modules (MD,
 * the file systems) are trampoline targets too, named by the module's BTF object. */
struct module_btf {
	struct btf *btf;
	int fd;
};

static int load_module_btfs(struct btf *vmlinux, struct module_btf *out, int max)
{
	__u32 id = 0;
	int n = 0;

	while (n < max && bpf_btf_get_next_id(id, &id) == 0) {
		struct bpf_btf_info info = { 0 };
		__u32 len = sizeof(info);
		char name[64] = "";
		int fd = bpf_btf_get_fd_by_id(id);

		info.name = (unsigned long)name;
		info.name_len = sizeof(name);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) || !info.kernel_btf || strcmp(name, "vmlinux") == 0 ||
		    !(out[n].btf = btf__load_from_kernel_by_id_split(id, vmlinux))) {
			close(fd);
			continue;
		}
		out[n++].fd = fd;
	}
	return n;
}

static enum kc_why trampoline_check(const char *sec, const char *name, char *why, size_t n)
{
	static struct module_btf modules[256];
	static int nmodules, modules_loaded;
	static struct btf *vmlinux;
	static int loaded;
	char type_name[160];
	enum bpf_attach_type type;
	int kind, id;

	if (!loaded) {
		loaded = 1;
		vmlinux = btf__load_vmlinux_btf();
	}
	if (!vmlinux) {
		snprintf(why, n, "this kernel has no BTF (/sys/kernel/btf/vmlinux)");
		return KC_WHY_REFUSED;
	}
	if (has_prefix(sec, "tp_btf/")) {
		snprintf(type_name, sizeof(type_name), "btf_trace_%s", name);
		kind = BTF_KIND_TYPEDEF;
		type = BPF_TRACE_RAW_TP;
	} else {
		snprintf(type_name, sizeof(type_name), "%s", name);
		kind = BTF_KIND_FUNC;
		type = has_prefix(sec, "fexit/") ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY;
	}
	id = btf__find_by_name_kind(vmlinux, type_name, kind);
	if (id >= 0)
		return trial_trampoline(type, 0, id, why, n);
	/* Read once, when a first name is not the kernel's: most objects never need them. A
	 * split BTF's lookup also searches the kernel's, where the name is not. */
	if (!modules_loaded) {
		modules_loaded = 1;
		nmodules = load_module_btfs(vmlinux, modules, sizeof(modules) / sizeof(modules[0]));
	}
	for (int i = 0; i < nmodules; i++) {
		id = btf__find_by_name_kind(modules[i].btf, type_name, kind);
		if (id >= 0)
			return trial_trampoline(type, modules[i].fd, id, why, n);
	}
	snprintf(why, n, "kernel BTF (and %d modules' BTF) has no %s %s", nmodules,
		 kind == BTF_KIND_FUNC ? "function" : "tracepoint", name);
	return KC_WHY_ABSENT;
}

static enum kc_why tracepoint_check(const char *sec, const char *name, char *why, size_t n)
{
	char path[512];
	int found;

	if (has_prefix(sec, "tracepoint/") || has_prefix(sec, "tp/")) {
		snprintf(path, sizeof(path), "%s/events/%s", kc_tracefs_root(), name);
		found = access(path, F_OK) == 0;
	} else {
		glob_t g;

		/* A raw tracepoint is named without its category. */
		snprintf(path, sizeof(path), "%s/events/*/%s", kc_tracefs_root(), name);
		found = glob(path, 0, NULL, &g) == 0;
		globfree(&g);
	}
	if (!found)
		snprintf(why, n, "kernel has no tracepoint %s", name);
	return found ? KC_WHY_NONE : KC_WHY_ABSENT;
}

struct cached_check {
	char sec[128];
	enum kc_why result;
	char why[160];
};

enum kc_why kc_target_check(const char *sec, char *target, size_t target_size, char *why, size_t why_size)
{
	static struct cached_check cache[512];
	static int ncache;
	const char *slash = strchr(sec, '/');
	const char *name = slash ? slash + 1 : sec;
	int family = kc_section_family(sec);
	enum kc_why result = KC_WHY_NONE;

	snprintf(target, target_size, "%s", name);
	why[0] = '\0';
	for (int i = 0; i < ncache; i++) {
		if (strcmp(cache[i].sec, sec) == 0) {
			snprintf(why, why_size, "%s", cache[i].why);
			return cache[i].result;
		}
	}
	if (family == KC_TRAMPOLINE)
		result = trampoline_check(sec, name, why, why_size);
	else if (family == KC_PROBE)
		result = probe_check(name, why, why_size);
	else if (family == KC_TRACEPOINT)
		result = tracepoint_check(sec, name, why, why_size);
	if (ncache < (int)(sizeof(cache) / sizeof(cache[0]))) {
		snprintf(cache[ncache].sec, sizeof(cache[ncache].sec), "%s", sec);
		cache[ncache].result = result;
		snprintf(cache[ncache].why, sizeof(cache[ncache].why), "%s", why);
		ncache++;
	}
	return result;
}
