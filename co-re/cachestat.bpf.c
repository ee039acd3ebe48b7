// SPDX-License-Identifier: GPL-2.0
/* CO-RE cachestat collector: see includes/collectors/cachestat.bpf.h. */
#include "kc_core.h"
#include "collectors/cachestat.bpf.h"
