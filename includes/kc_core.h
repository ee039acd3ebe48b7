/* SPDX-License-Identifier: GPL-2.0 */
/* CO-RE objects: compiled once against vmlinux.h; every kernel struct read is a CO-RE
 * relocation that libbpf resolves against the running kernel's BTF. */
#ifndef KC_CORE_H
#define KC_CORE_H

#include "vmlinux.h"

#define KC_CORE 1
#define KC_READ(src, a, ...) BPF_CORE_READ(src, a, ##__VA_ARGS__)
#define KC_READ_INTO(dst, src, a, ...) BPF_CORE_READ_INTO(dst, src, a, ##__VA_ARGS__)

#include "kc_bpf.h"

#endif
