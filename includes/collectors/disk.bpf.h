/* SPDX-License-Identifier: GPL-2.0 */
/* disk: block requests issued and completed, bytes and errors per the block layer's
 * tracepoints; return mode adds a latency histogram per device (issue to completion). */

KC_COUNTERS(disk_counters, KC_DISK_END);

struct kc_disk_request {
	__u64 dev;
	__u64 sector;
};

#if KC_RETURN_MODE
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

#if KC_CORE
/* Before 5.14 the record was named after the event, not after its class. */
struct trace_event_raw_block_rq_complete___old {
	dev_t dev;
	sector_t sector;
	int error;
} __attribute__((preserve_access_index));
#endif

/* Reads the completion record (device, sector, error) whatever the kernel names it. */
static __always_inline int kc_disk_completion(void *ctx, struct kc_disk_request *req)
{
#if KC_CORE
	if (!bpf_core_type_exists(struct trace_event_raw_block_rq_completion)) {
		struct trace_event_raw_block_rq_complete___old *old = ctx;

		req->dev = BPF_CORE_READ(old, dev);
		req->sector = BPF_CORE_READ(old, sector);
		return BPF_CORE_READ(old, error);
	}
#endif
	struct trace_event_raw_block_rq_completion *rec = ctx;

	req->dev = KC_READ(rec, dev);
	req->sector = KC_READ(rec, sector);
	return KC_READ(rec, error);
}

SEC("tracepoint/block/block_rq_complete")
int kc_disk_complete(void *ctx)
{
	struct kc_disk_request req = {};

	kc_add(&disk_counters, KC_DISK_COMPLETE, 1);
	if (kc_disk_completion(ctx, &req))
		kc_add(&disk_counters, KC_DISK_ERROR, 1);
#if KC_RETURN_MODE
	__u64 ns = kc_elapsed(&disk_starts, &req);

	if (ns)
		kc_hist_add(&disk_latency, req.dev, ns);
#endif
	return 0;
}
