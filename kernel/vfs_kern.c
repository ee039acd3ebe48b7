// SPDX-License-Identifier: GPL-2.0
/* Legacy vfs collector: see includes/collectors/vfs.bpf.h. */
#include "kc_legacy.h"
#include "collectors/vfs.bpf.h"
