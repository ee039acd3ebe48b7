// SPDX-License-Identifier: GPL-2.0
/* Legacy swap collector: see includes/collectors/swap.bpf.h. */
#include "kc_legacy.h"
#include "collectors/swap.bpf.h"
