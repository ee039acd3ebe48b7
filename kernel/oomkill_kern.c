// SPDX-License-Identifier: GPL-2.0
/* Legacy oomkill collector: see includes/collectors/oomkill.bpf.h. */
#include "kc_legacy.h"
#include "collectors/oomkill.bpf.h"
