// SPDX-License-Identifier: GPL-2.0
/* Legacy pagefault collector: see includes/collectors/pagefault.bpf.h. */
#include "kc_legacy.h"
#include "collectors/pagefault.bpf.h"
