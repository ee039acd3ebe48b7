// SPDX-License-Identifier: GPL-2.0
/* Legacy hardirq collector: see includes/collectors/hardirq.bpf.h. */
#include "kc_legacy.h"
#include "collectors/hardirq.bpf.h"
