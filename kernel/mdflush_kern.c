// SPDX-License-Identifier: GPL-2.0
/* Legacy mdflush collector: see includes/collectors/mdflush.bpf.h. The bio (and before 5.12
 * its gendisk) come from the block headers, which no other collector needs. */
#include "kc_legacy.h"
#include <linux/blk_types.h>
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 12, 0)
#include <linux/genhd.h>
#endif
#include "collectors/mdflush.bpf.h"
