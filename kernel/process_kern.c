// SPDX-License-Identifier: GPL-2.0
/* Legacy process collector: see includes/collectors/process.bpf.h. */
#include "kc_legacy.h"
#include "collectors/process.bpf.h"
