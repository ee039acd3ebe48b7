// SPDX-License-Identifier: GPL-2.0
/* DNS server tables. See kc_dns_servers.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "kc_dns_servers.h"
#include "kc_map_walk.h"

/* Response codes in a row's order (the dns counters'). */
static const char *const rcode_names[KC_DNS_RCODES] = { "noerror", "nxdomain", "servfail", "rcode_other" };

/* What a walk of a server table carries from row to row. */
struct servers_walk {
	struct kc_buf *j, *t;
	struct kc_servers_seen seen;
	int rows;
};

static void visit_server(const void *k, const void *value, void *ctx)
{
	struct servers_walk *w = ctx;
	struct kc_dns_server_key key;
	struct kc_dns_server s;
	char addr[INET6_ADDRSTRLEN];
	unsigned long long answered = 0;

	memcpy(&key, k, sizeof(key));
	memcpy(&s, value, sizeof(s));
	if (!inet_ntop(key.family == AF_INET6 ? AF_INET6 : AF_INET, key.addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	kc_put(w->j, "%s{\"server\": ", w->rows++ ? ", " : "");
	kc_put_string(w->j, addr);
	kc_put(w->j, ", \"family\": \"%s\", \"queries\": ", key.family == AF_INET6 ? "ipv6" : "ipv4");
	if (w->seen.queries)
		kc_put_u64(w->j, s.queries);
	else
		kc_put(w->j, "null");
	kc_put(w->j, ", \"responses\": ");
	if (w->seen.responses) {
		kc_put(w->j, "{");
		for (int i = 0; i < KC_DNS_RCODES; i++) {
			kc_put(w->j, "%s\"%s\": %llu", i ? ", " : "", rcode_names[i], (unsigned long long)s.responses[i]);
			answered += s.responses[i];
		}
		kc_put(w->j, "}, \"latency\": [");
		for (int i = 0; i < KC_HIST_SLOTS; i++)
			kc_put(w->j, "%s%llu", i ? ", " : "", (unsigned long long)s.latency[i]);
		kc_put(w->j, "]");
	} else {
		kc_put(w->j, "null, \"latency\": null");
	}
	kc_put(w->j, ", \"timeouts\": ");
	if (w->seen.timeouts)
		kc_put_u64(w->j, s.timeouts);
	else
		kc_put(w->j, "null");
	kc_put(w->j, "}");
	kc_put(w->t, "    %s: %llu queries, %llu answered, %llu timeouts\n", addr, (unsigned long long)s.queries,
	       answered, (unsigned long long)s.timeouts);
}

void kc_dns_servers_read(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, int reads,
			 unsigned long long inserted, struct kc_servers_seen seen)
{
	struct servers_walk w = { .j = j, .t = t, .seen = seen };
	unsigned size = bpf_map__max_entries(map);
	unsigned long long evicted;

	kc_put(j, ", \"dns_servers\": [");
	kc_put(t, "  %s:\n", bpf_map__name(map));
	kc_map_walk(bpf_map__fd(map), sizeof(struct kc_dns_server_key), sizeof(struct kc_dns_server), reads,
		    visit_server, &w);
	kc_put(j, "], \"server_table\": {\"map\": ");
	kc_put_string(j, bpf_map__name(map));
	kc_put(j, ", \"table_size\": %u, \"rows\": %d", size, w.rows);
	if (!seen.tracked) {
		kc_put(j, ", \"insertions\": null, \"evicted\": null}");
		kc_put(t, "    %d rows of %u (insertions unobserved)\n", w.rows, size);
		return;
	}
	evicted = kc_map_evicted(inserted, (unsigned long long)w.rows, 0);
	kc_put(j, ", \"insertions\": %llu, \"evicted\": %llu}", inserted, evicted);
	kc_put(t, "    %d rows of %u (insertions %llu, evicted %llu)\n", w.rows, size, inserted, evicted);
}

int kc_dns_servers_check(const struct bpf_map *map, char *why, size_t n)
{
	if (bpf_map__key_size(map) == sizeof(struct kc_dns_server_key) &&
	    bpf_map__value_size(map) == sizeof(struct kc_dns_server))
		return 0;
	snprintf(why, n,
		 "%s's rows are %u bytes under keys of %u, this loader's struct kc_dns_server %zu under struct kc_dns_server_key %zu: use the loader of the object's release",
		 bpf_map__name(map), bpf_map__value_size(map), bpf_map__key_size(map), sizeof(struct kc_dns_server),
		 sizeof(struct kc_dns_server_key));
	return -1;
}
