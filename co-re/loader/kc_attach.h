/* SPDX-License-Identifier: GPL-2.0 */
/* Attach families (see includes/kc_bpf.h): parsing program names, and asking the running
 * kernel whether a program's target exists and whether its family loads and attaches there. */
#ifndef KC_ATTACH_H
#define KC_ATTACH_H

#include <stddef.h>

/* In the order `--attach auto` prefers them: cheapest first (see `cargo xtask bench overhead`). */
enum kc_family {
	KC_TRAMPOLINE,
	KC_PROBE,
	KC_TRACEPOINT,
	KC_N_FAMILIES,
};

/* `--attach`: one family, or auto (-1). */
#define KC_ATTACH_AUTO (-1)

const char *kc_family_name(int family);
/* KC_ATTACH_AUTO or a family for "auto", "trampoline", "probe", "tracepoint"; -2 otherwise. */
int kc_attach_parse(const char *s);

/* A program's name `<event>__<family>[_<role>][__<variant>]`: its event, family and the group
 * of alternatives it belongs to (the name without `__<variant>`). Returns 0 when the name
 * follows the convention, -1 when it is a program outside any family. */
struct kc_program_name {
	char event[64];
	int family;
	char group[128];
};
int kc_parse_program_name(const char *name, struct kc_program_name *out);

/* The family a section's program type belongs to, or -1. */
int kc_section_family(const char *sec);

/* Why a family was passed over for an event, as the report's `kind` says it. */
enum kc_why {
	KC_WHY_NONE,	   /* it was not: the family is used */
	KC_WHY_NOT_ASKED,  /* --attach named another family */
	KC_WHY_COSTLIER,   /* a cheaper family fits */
	KC_WHY_NO_PROGRAM, /* the collector has no program of this family for the event */
	KC_WHY_ABSENT,	   /* the kernel lacks the target (function, tracepoint) */
	KC_WHY_REFUSED,	   /* the kernel cannot attach this kind (no kprobes, no BTF, EPERM) */
	KC_WHY_FAILED,	   /* our program failed to load or attach */
};
const char *kc_why_name(enum kc_why why);

/* Whether this kernel has the target of a program in section `sec` and can attach a program
 * of that kind there: KC_WHY_NONE yes; else why not (KC_WHY_ABSENT, KC_WHY_REFUSED), in words
 * in `why`. Fills `target`. Trampolines are judged by kernel BTF and by loading a
 * two-instruction program at the target; probes by kallsyms, the kprobe blacklist and the
 * kprobe PMU; tracepoints by tracefs. Results are cached per section. What still fails to
 * load or attach is the caller's to drop (kc-loader retries without it). */
enum kc_why kc_target_check(const char *sec, char *target, size_t target_size, char *why, size_t why_size);

/* The address of kernel function `fn` for a kprobe, once kc_target_check has looked at a
 * probe: 0 when the kernel has no kprobe PMU, the name is not in kallsyms or is there twice,
 * or kptr_restrict hides addresses (then attach by name). */
unsigned long long kc_kprobe_address(const char *fn);

/* tracefs' mount point, mounting it when needed. */
const char *kc_tracefs_root(void);

#endif
