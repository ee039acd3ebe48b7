// SPDX-License-Identifier: GPL-2.0
/* CO-RE fd collector: see includes/collectors/fd.bpf.h. */
#include "kc_core.h"
#include "collectors/fd.bpf.h"
