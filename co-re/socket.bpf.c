// SPDX-License-Identifier: GPL-2.0
/* CO-RE socket collector: see includes/collectors/socket.bpf.h. */
#include "kc_core.h"
#include "collectors/socket.bpf.h"
