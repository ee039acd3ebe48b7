// SPDX-License-Identifier: GPL-2.0
/* Legacy softirq collector: see includes/collectors/softirq.bpf.h. */
#include "kc_legacy.h"
#include "collectors/softirq.bpf.h"
