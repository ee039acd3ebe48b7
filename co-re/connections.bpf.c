// SPDX-License-Identifier: GPL-2.0
/* CO-RE connections collector: see includes/collectors/connections.bpf.h. */
#include "kc_core.h"
#include "collectors/connections.bpf.h"
