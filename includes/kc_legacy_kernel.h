/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel headers legacy collectors use. Parsing them is most of a compile, so the build
 * precompiles this file once per bucket and mode-independent flags (`-include-pch`). */
#ifndef KC_LEGACY_KERNEL_H
#define KC_LEGACY_KERNEL_H

#include <linux/version.h>
#include <linux/types.h>
#include <uapi/linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/oom.h>
#include <net/sock.h>

#endif
