// SPDX-License-Identifier: GPL-2.0
/* CO-RE oomkill collector: see includes/collectors/oomkill.bpf.h. */
#include "kc_core.h"
#include "collectors/oomkill.bpf.h"
