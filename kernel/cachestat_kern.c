// SPDX-License-Identifier: GPL-2.0
/* Legacy cachestat collector: see includes/collectors/cachestat.bpf.h. */
#include "kc_legacy.h"
#include "collectors/cachestat.bpf.h"
