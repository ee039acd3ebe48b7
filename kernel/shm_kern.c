// SPDX-License-Identifier: GPL-2.0
/* Legacy shm collector: see includes/collectors/shm.bpf.h. */
#include "kc_legacy.h"
#include "collectors/shm.bpf.h"
