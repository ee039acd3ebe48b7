// SPDX-License-Identifier: GPL-2.0
/* Legacy netdev collector: see includes/collectors/netdev.bpf.h. */
#include "kc_legacy.h"
#include "collectors/netdev.bpf.h"
