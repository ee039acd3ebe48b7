// SPDX-License-Identifier: GPL-2.0
/* CO-RE hardirq collector: see includes/collectors/hardirq.bpf.h. */
#include "kc_core.h"
#include "collectors/hardirq.bpf.h"
