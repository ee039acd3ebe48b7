// SPDX-License-Identifier: GPL-2.0
/* Legacy connections collector: see includes/collectors/connections.bpf.h. */
#include "kc_legacy.h"
#include "collectors/connections.bpf.h"
