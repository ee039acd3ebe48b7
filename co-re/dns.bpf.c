// SPDX-License-Identifier: GPL-2.0
/* CO-RE dns collector: see includes/collectors/dns.bpf.h. */
#include "kc_core.h"
#include "collectors/dns.bpf.h"
