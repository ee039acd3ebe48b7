// SPDX-License-Identifier: GPL-2.0
/* CO-RE disk collector: see includes/collectors/disk.bpf.h. */
#include "kc_core.h"
#include "collectors/disk.bpf.h"
