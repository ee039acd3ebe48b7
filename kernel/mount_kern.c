// SPDX-License-Identifier: GPL-2.0
/* Legacy mount collector: see includes/collectors/mount.bpf.h. */
#include "kc_legacy.h"
#include "collectors/mount.bpf.h"
