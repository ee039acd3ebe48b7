/* SPDX-License-Identifier: GPL-2.0 */
/* DNS server tables (`<collector>_servers`, rows of struct kc_dns_server keyed by struct
 * kc_dns_server_key), as the report shows them. */
#ifndef KC_DNS_SERVERS_H
#define KC_DNS_SERVERS_H

#include <bpf/libbpf.h>

#include <linux/types.h>

#include "kc_common.h"
#include "kc_collectors.h"
#include "kc_json.h"

/* Which of a row's figures the pass observed (the counters they add to: `query`, `response`,
 * `timeout`), and the table's insertions (`servers_tracked`); one not observed is null, never 0. */
struct kc_servers_seen {
	int queries, responses, timeouts, tracked;
};

/* The rows of server table `map` as `"dns_servers": [...]` and its accounting as
 * `"server_table"`. `inserted` is what the programs added (the collector's `servers_tracked`):
 * the evictions are the rest of what is not here. */
void kc_dns_servers_read(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, int reads,
			 unsigned long long inserted, struct kc_servers_seen seen);

/* Whether `map`'s rows and keys are this loader's structs; else why not, in `why`. */
int kc_dns_servers_check(const struct bpf_map *map, char *why, size_t n);

#endif
