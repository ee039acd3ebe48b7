// SPDX-License-Identifier: GPL-2.0
/* CO-RE mdflush collector: see includes/collectors/mdflush.bpf.h. */
#include "kc_core.h"
#include "collectors/mdflush.bpf.h"
