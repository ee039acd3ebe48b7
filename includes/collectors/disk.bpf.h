/* SPDX-License-Identifier: GPL-2.0 */
/* disk: block requests issued and completed, bytes and errors per the block layer's
 * tracepoints; return mode adds a latency histogram per device (issue to completion). */

KC_COUNTERS(disk_counters, KC_DISK_END);

#if KC_RETURN_MODE
struct kc_disk_request {
	__u64 dev;
	__u64 sector;
};

KC_START_MAP(disk_starts, struct kc_disk_request);
KC_HIST_MAP(disk_latency);
#endif

SEC("tracepoint/block/block_rq_issue")
int kc_disk_issue(struct trace_event_raw_block_rq *ctx)
{
	kc_add(&disk_counters, KC_DISK_ISSUE, 1);
	kc_add(&disk_counters, KC_DISK_BYTES, KC_READ(ctx, bytes));
#if KC_RETURN_MODE
	struct kc_disk_request req = { .dev = KC_READ(ctx, dev), .sector = KC_READ(ctx, sector) };

	kc_start(&disk_starts, &req);
#endif
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int kc_disk_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	kc_add(&disk_counters, KC_DISK_COMPLETE, 1);
	if (KC_READ(ctx, error))
		kc_add(&disk_counters, KC_DISK_ERROR, 1);
#if KC_RETURN_MODE
	struct kc_disk_request req = { .dev = KC_READ(ctx, dev), .sector = KC_READ(ctx, sector) };
	__u64 ns = kc_elapsed(&disk_starts, &req);

	if (ns)
		kc_hist_add(&disk_latency, req.dev, ns);
#endif
	return 0;
}
