// SPDX-License-Identifier: GPL-2.0
/* Legacy signal collector: see includes/collectors/signal.bpf.h. */
#include "kc_legacy.h"
#include "collectors/signal.bpf.h"
