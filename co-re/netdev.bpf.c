// SPDX-License-Identifier: GPL-2.0
/* CO-RE netdev collector: see includes/collectors/netdev.bpf.h. */
#include "kc_core.h"
#include "collectors/netdev.bpf.h"
