// SPDX-License-Identifier: GPL-2.0
/* CO-RE softirq collector: see includes/collectors/softirq.bpf.h. */
#include "kc_core.h"
#include "collectors/softirq.bpf.h"
