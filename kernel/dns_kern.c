// SPDX-License-Identifier: GPL-2.0
/* Legacy dns collector: see includes/collectors/dns.bpf.h. */
#include "kc_legacy.h"
#include <linux/sched/signal.h> /* the exit reads signal->live */
#include "collectors/dns.bpf.h"
