/* SPDX-License-Identifier: GPL-2.0 */
/* Legacy objects: compiled against one bucket's kernel headers (`-D__KERNEL__`). Field reads
 * use the offsets of that bucket's headers (`LINUX_VERSION_CODE` is the bucket's). */
#ifndef KC_LEGACY_H
#define KC_LEGACY_H

#include "kc_legacy_kernel.h"

#define KC_CORE 0
#define KC_READ(src, a, ...) BPF_PROBE_READ(src, a, ##__VA_ARGS__)
#define KC_READ_INTO(dst, src, a, ...) BPF_PROBE_READ_INTO(dst, src, a, ##__VA_ARGS__)

#include "kc_bpf.h"
#include "kc_legacy_tp.h"

/* The bucket's LINUX_VERSION_CODE: `verify` checks it against the object's name. */
__u32 _version SEC("version") = LINUX_VERSION_CODE;

#endif
