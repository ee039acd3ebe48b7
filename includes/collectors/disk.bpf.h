/* SPDX-License-Identifier: GPL-2.0 */
/* disk: block requests issued and completed, bytes and errors per the block layer's
 * tracepoints; return mode adds a latency histogram per device (issue to completion).
 * Families: block/block_rq_{issue,complete} as tp_btf (trampoline: the request itself) or
 * classic (tracepoint: the record). Both key a request by (device, sector). */

/* Totals only, no per-application table: these events run in interrupt context, where the
 * current task is whichever was interrupted. */
KC_TOTALS(disk, disk)

struct kc_disk_request {
	__u64 dev;
	__u64 sector;
};

#if KC_RETURN_MODE
KC_START_MAP(disk_starts, struct kc_disk_request);
KC_HIST_MAP(disk_latency, 128 /* devices */);
#endif

static __always_inline void kc_disk_on_issue(struct kc_disk_request *req, __u32 bytes)
{
	kc_disk_count2(KC_DISK_ISSUE, 1, KC_DISK_BYTES, bytes);
#if KC_RETURN_MODE
	kc_start(&disk_starts, req);
#endif
}

static __always_inline void kc_disk_on_complete(struct kc_disk_request *req, int error)
{
	kc_disk_count(KC_DISK_COMPLETE, 1);
	if (error)
		kc_disk_count(KC_DISK_ERROR, 1);
#if KC_RETURN_MODE
	__u64 ns = kc_elapsed(&disk_starts, req);

	if (ns)
		kc_hist_add(&disk_latency, req->dev, ns);
#endif
}

#if KC_CORE
/* Before 5.14 the record was named after the event, not after its class. */
struct trace_event_raw_block_rq_complete___old {
	dev_t dev;
	sector_t sector;
	int error;
} __attribute__((preserve_access_index));

/* Before 5.16 a request named its disk itself; later through its queue. */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

/* The request as the classic record describes it: dev_t as the kernel encodes it (MKDEV). */
static __always_inline void kc_disk_describe(struct request *rq, struct kc_disk_request *req)
{
	struct gendisk *disk;

	if (bpf_core_field_exists(rq->q->disk))
		disk = BPF_CORE_READ(rq, q, disk);
	else
		disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
	req->dev = disk ? ((__u64)BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor) : 0;
	req->sector = BPF_CORE_READ(rq, __sector);
}

/* The request alone: the queue argument went before 5.10 on Debian's kernels (the oldest this
 * collector supports). */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(kc_disk_issue__trampoline, struct request *rq)
{
	struct kc_disk_request req = {};

	kc_disk_describe(rq, &req);
	kc_disk_on_issue(&req, BPF_CORE_READ(rq, __data_len));
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(kc_disk_complete__trampoline, struct request *rq, int error)
{
	struct kc_disk_request req = {};

	kc_disk_describe(rq, &req);
	kc_disk_on_complete(&req, error);
	return 0;
}
#endif

SEC("tracepoint/block/block_rq_issue")
int kc_disk_issue__tracepoint(struct trace_event_raw_block_rq *ctx)
{
	struct kc_disk_request req = { .dev = KC_READ(ctx, dev), .sector = KC_READ(ctx, sector) };

	kc_disk_on_issue(&req, KC_READ(ctx, bytes));
	return 0;
}

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
int kc_disk_complete__tracepoint(void *ctx)
{
	struct kc_disk_request req = {};
	int error = kc_disk_completion(ctx, &req);

	kc_disk_on_complete(&req, error);
	return 0;
}
