// SPDX-License-Identifier: GPL-2.0
/* CO-RE filesystem collector: see includes/collectors/filesystem.bpf.h. */
#include "kc_core.h"
#include "collectors/filesystem.bpf.h"
