// SPDX-License-Identifier: GPL-2.0
/* Legacy dns collector: see includes/collectors/dns.bpf.h. */
#include "kc_legacy.h"
#include "collectors/dns.bpf.h"
