// SPDX-License-Identifier: GPL-2.0
/* Legacy fd collector: see includes/collectors/fd.bpf.h. */
#include "kc_legacy.h"
#include "collectors/fd.bpf.h"
