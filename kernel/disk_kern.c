// SPDX-License-Identifier: GPL-2.0
/* Legacy disk collector: see includes/collectors/disk.bpf.h. */
#include "kc_legacy.h"
#include "collectors/disk.bpf.h"
