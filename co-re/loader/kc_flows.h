/* SPDX-License-Identifier: GPL-2.0 */
/* Flow tables (`<collector>_flows`, rows of struct kc_flow keyed by a socket's address) and
 * flow close records (struct kc_flow_close), as the report shows them. */
#ifndef KC_FLOWS_H
#define KC_FLOWS_H

#include <bpf/libbpf.h>

#include <linux/types.h>

#include "kc_common.h"
#include "kc_collectors.h"
#include "kc_json.h"

/* One flow as a JSON object: its owner and counts null where the object did not observe them. */
void kc_flow_json(struct kc_buf *j, const struct kc_flow *f);

/* The rows of flow table `map` as `"flows": [...]` and its accounting as `"flow_table"`, then
 * the removal of its closed rows (their final figures are reported once; the table keeps the
 * live ones). `inserted` is what the programs added (the collector's `tracked` and `udp_tracked`), `streamed` the
 * rows they moved into a stream with a close: the evictions are the rest of what is not here. */
void kc_flows_read(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, int reads, unsigned long long inserted,
		   unsigned long long streamed);

#endif
