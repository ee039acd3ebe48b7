// SPDX-License-Identifier: GPL-2.0
/* CO-RE shm collector: see includes/collectors/shm.bpf.h. */
#include "kc_core.h"
#include "collectors/shm.bpf.h"
