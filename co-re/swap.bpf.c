// SPDX-License-Identifier: GPL-2.0
/* CO-RE swap collector: see includes/collectors/swap.bpf.h. */
#include "kc_core.h"
#include "collectors/swap.bpf.h"
