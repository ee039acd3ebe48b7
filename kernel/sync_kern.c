// SPDX-License-Identifier: GPL-2.0
/* Legacy sync collector: see includes/collectors/sync.bpf.h. */
#include "kc_legacy.h"
#include "collectors/sync.bpf.h"
