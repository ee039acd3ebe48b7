// SPDX-License-Identifier: GPL-2.0
/* CO-RE process collector: see includes/collectors/process.bpf.h. */
#include "kc_core.h"
#include "collectors/process.bpf.h"
