// SPDX-License-Identifier: GPL-2.0
/* Legacy schedlat collector: see includes/collectors/schedlat.bpf.h. */
#include "kc_legacy.h"
#include "collectors/schedlat.bpf.h"
