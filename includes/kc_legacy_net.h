/* SPDX-License-Identifier: GPL-2.0 */
/* The networking layer of the legacy headers: a collector that reads socket structures
 * includes this file before kc_legacy.h, and the build precompiles it next to the base layer
 * (kc_legacy_kernel.h). `net/sock.h` alone costs as much to parse as the base. */
#ifndef KC_LEGACY_NET_H
#define KC_LEGACY_NET_H

#include "kc_legacy_kernel.h"
#include <net/sock.h>

#endif
