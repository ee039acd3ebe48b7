// SPDX-License-Identifier: GPL-2.0
/* CO-RE pagefault collector: see includes/collectors/pagefault.bpf.h. */
#include "kc_core.h"
#include "collectors/pagefault.bpf.h"
