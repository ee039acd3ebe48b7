/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel headers every legacy collector uses. Parsing them is most of a compile, so the
 * build precompiles this file once per bucket (`-include-pch`). Headers only some collectors
 * need go into a layer above it (kc_legacy_net.h), so the others load a smaller PCH. */
#ifndef KC_LEGACY_KERNEL_H
#define KC_LEGACY_KERNEL_H

#include <linux/version.h>
#include <linux/types.h>
#include <uapi/linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/oom.h>

#endif
