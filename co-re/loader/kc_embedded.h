/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The CO-RE objects kc-loader carries inside itself. `cargo xtask build` generates
 * kc_skeletons.h, which includes each collector's libbpf skeleton and defines
 *
 *     static const struct kc_embedded_object kc_embedded[];   (KC_N_EMBEDDED entries)
 *
 * from them; a loader built without skeletons (vmtest's, which loads objects from files)
 * gets KC_N_EMBEDDED 0.
 */
#ifndef KC_EMBEDDED_H
#define KC_EMBEDDED_H

#include <stddef.h>

struct kc_embedded_object {
	/* The collector's name: the object is reported as <name>.bpf.o. */
	const char *name;
	/* The skeleton's <name>_bpf__elf_bytes(): the object's ELF bytes and size. */
	const void *(*elf_bytes)(size_t *sz);
};

#endif
