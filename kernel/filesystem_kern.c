// SPDX-License-Identifier: GPL-2.0
/* Legacy filesystem collector: see includes/collectors/filesystem.bpf.h. */
#include "kc_legacy.h"
#include "collectors/filesystem.bpf.h"
