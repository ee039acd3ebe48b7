// SPDX-License-Identifier: GPL-2.0
/* CO-RE sync collector: see includes/collectors/sync.bpf.h. */
#include "kc_core.h"
#include "collectors/sync.bpf.h"
