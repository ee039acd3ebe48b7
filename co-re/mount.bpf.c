// SPDX-License-Identifier: GPL-2.0
/* CO-RE mount collector: see includes/collectors/mount.bpf.h. */
#include "kc_core.h"
#include "collectors/mount.bpf.h"
