// SPDX-License-Identifier: GPL-2.0
/* CO-RE vfs collector: see includes/collectors/vfs.bpf.h. */
#include "kc_core.h"
#include "collectors/vfs.bpf.h"
