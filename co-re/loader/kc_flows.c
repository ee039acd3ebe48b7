// SPDX-License-Identifier: GPL-2.0
/* Flow tables and flow close records. See kc_flows.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kc_flows.h"
#include "kc_map_walk.h"

/* Rows a text summary lists; the JSON has them all. */
#define TEXT_ROWS 16
#define TCP_CLOSE 7 /* include/net/tcp_states.h */

static const char *state_name(unsigned state)
{
	/* include/net/tcp_states.h */
	static const char *const names[] = { "?",	  "ESTABLISHED", "SYN_SENT",   "SYN_RECV", "FIN_WAIT1",
					     "FIN_WAIT2", "TIME_WAIT",	 "CLOSE",      "CLOSE_WAIT", "LAST_ACK",
					     "LISTEN",	  "CLOSING",	 "NEW_SYN_RECV" };

	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

static const char *direction_name(unsigned direction)
{
	static const char *const names[] = { "unknown", "connect", "accept" };

	return direction < sizeof(names) / sizeof(names[0]) ? names[direction] : "?";
}

static const char *protocol_name(unsigned protocol)
{
	return protocol == IPPROTO_UDP ? "udp" : protocol == IPPROTO_TCP ? "tcp" : "?";
}

static void address(char *out, size_t n, const struct kc_flow *f, const __u8 *addr)
{
	if (!inet_ntop(f->family == AF_INET6 ? AF_INET6 : AF_INET, addr, out, (socklen_t)n))
		snprintf(out, n, "?");
}

void kc_flow_json(struct kc_buf *j, const struct kc_flow *f)
{
	char saddr[INET6_ADDRSTRLEN], daddr[INET6_ADDRSTRLEN], comm[sizeof(f->comm) + 1] = { 0 };

	address(saddr, sizeof(saddr), f, f->saddr);
	address(daddr, sizeof(daddr), f, f->daddr);
	kc_put(j, "{\"protocol\": \"%s\", \"family\": \"%s\", \"saddr\": \"%s\", \"sport\": %u, \"daddr\": \"%s\", "
		  "\"dport\": %u, \"state\": \"%s\", \"direction\": \"%s\", \"first_ns\": %llu, \"last_ns\": %llu, "
		  "\"owner\": ",
	       protocol_name(f->protocol), f->family == AF_INET6 ? "ipv6" : "ipv4", saddr, f->sport, daddr, f->dport,
	       state_name(f->state),
	       direction_name(f->direction), (unsigned long long)f->first_ns, (unsigned long long)f->last_ns);
	if (f->known & KC_FLOW_KNOWN_OWNER) {
		memcpy(comm, f->comm, sizeof(f->comm));
		kc_put(j, "{\"tgid\": %u, \"cgroup\": %llu, \"comm\": ", f->tgid, (unsigned long long)f->cgroup);
		kc_put_string(j, comm);
		kc_put(j, "}");
	} else {
		kc_put(j, "null");
	}
	kc_put(j, ", \"counts\": ");
	if (f->known & KC_FLOW_KNOWN_COUNTS)
		kc_put(j, "{\"bytes_sent\": %llu, \"bytes_received\": %llu, \"segs_out\": %llu, \"segs_in\": %llu, "
			  "\"retransmits\": %llu}",
		       (unsigned long long)f->bytes_sent, (unsigned long long)f->bytes_received,
		       (unsigned long long)f->segs_out, (unsigned long long)f->segs_in,
		       (unsigned long long)f->retransmits);
	else
		kc_put(j, "null");
	kc_put(j, ", \"datagrams\": ");
	if (f->known & KC_FLOW_KNOWN_DATAGRAMS)
		kc_put(j, "{\"bytes_sent\": %llu, \"bytes_received\": %llu, \"sent\": %llu, \"received\": %llu}}",
		       (unsigned long long)f->bytes_sent, (unsigned long long)f->bytes_received,
		       (unsigned long long)f->segs_out, (unsigned long long)f->segs_in);
	else
		kc_put(j, "null}");
}

static void flow_text(struct kc_buf *t, const struct kc_flow *f)
{
	char saddr[INET6_ADDRSTRLEN], daddr[INET6_ADDRSTRLEN];

	address(saddr, sizeof(saddr), f, f->saddr);
	address(daddr, sizeof(daddr), f, f->daddr);
	kc_put(t, "    %s %s %s:%u -> %s:%u %s", protocol_name(f->protocol), direction_name(f->direction), saddr,
	       f->sport, daddr, f->dport, state_name(f->state));
	if (f->known & KC_FLOW_KNOWN_OWNER)
		kc_put(t, " tgid %u", f->tgid);
	if (f->known & (KC_FLOW_KNOWN_COUNTS | KC_FLOW_KNOWN_DATAGRAMS))
		kc_put(t, " sent %llu received %llu bytes", (unsigned long long)f->bytes_sent,
		       (unsigned long long)f->bytes_received);
	kc_put(t, "\n");
}

/* What a walk of a flow table carries from row to row. */
struct flows_walk {
	struct kc_buf *j, *t;
	int rows, nclosed, room;
	__u64 *closed;
};

static void visit_flow(const void *k, const void *value, void *ctx)
{
	struct flows_walk *w = ctx;
	struct kc_flow f;

	memcpy(&f, value, sizeof(f));
	kc_put(w->j, "%s", w->rows ? ", " : "");
	kc_flow_json(w->j, &f);
	if (w->rows < TEXT_ROWS)
		flow_text(w->t, &f);
	if (f.state == TCP_CLOSE && w->closed && w->nclosed < w->room)
		memcpy(&w->closed[w->nclosed++], k, sizeof(__u64));
	w->rows++;
}

void kc_flows_read(struct kc_buf *j, struct kc_buf *t, struct bpf_map *map, int reads, unsigned long long inserted,
		   unsigned long long streamed)
{
	unsigned size = bpf_map__max_entries(map);
	struct flows_walk w = { .j = j, .t = t, .room = (int)size, .closed = calloc(size, sizeof(__u64)) };
	int fd = bpf_map__fd(map);
	unsigned long long evicted, removed = 0;

	kc_put(j, ", \"flows\": [");
	kc_put(t, "  %s:\n", bpf_map__name(map));
	/* Its rows are checked to be struct kc_flow before load (kc_maps_check). */
	kc_map_walk(fd, sizeof(__u64), sizeof(struct kc_flow), reads, visit_flow, &w);
	/* Deleted after the walk: deleting during it would restart it. */
	if (w.closed)
		removed = kc_map_delete_all(fd, w.closed, (unsigned long)w.nclosed, sizeof(__u64), reads);
	free(w.closed);
	/* This loader collects once, and removes closed rows only after this walk. */
	evicted = kc_map_evicted(inserted, (unsigned long long)w.rows, streamed);
	kc_put(j, "], \"flow_table\": {\"map\": ");
	kc_put_string(j, bpf_map__name(map));
	kc_put(j, ", \"table_size\": %u, \"rows\": %d, \"insertions\": %llu, \"evicted\": %llu, \"removed_closed\": %llu}",
	       size, w.rows, inserted, evicted, removed);
	kc_put(t, "    %d rows of %u (insertions %llu, evicted %llu, %llu closed removed)\n", w.rows, size, inserted,
	       evicted, removed);
}
