// SPDX-License-Identifier: GPL-2.0
/* CO-RE schedlat collector: see includes/collectors/schedlat.bpf.h. */
#include "kc_core.h"
#include "collectors/schedlat.bpf.h"
