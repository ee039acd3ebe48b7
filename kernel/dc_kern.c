// SPDX-License-Identifier: GPL-2.0
/* Legacy dc collector: see includes/collectors/dc.bpf.h. */
#include "kc_legacy.h"
#include "collectors/dc.bpf.h"
