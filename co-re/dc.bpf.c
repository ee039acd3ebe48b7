// SPDX-License-Identifier: GPL-2.0
/* CO-RE dc collector: see includes/collectors/dc.bpf.h. */
#include "kc_core.h"
#include "collectors/dc.bpf.h"
