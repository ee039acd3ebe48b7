// SPDX-License-Identifier: GPL-2.0
/* Legacy socket collector: see includes/collectors/socket.bpf.h. */
#include "kc_legacy_net.h"
#include "kc_legacy.h"
#include "collectors/socket.bpf.h"
