// SPDX-License-Identifier: GPL-2.0
/* CO-RE signal collector: see includes/collectors/signal.bpf.h. */
#include "kc_core.h"
#include "collectors/signal.bpf.h"
