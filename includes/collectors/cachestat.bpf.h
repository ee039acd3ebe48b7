/* SPDX-License-Identifier: GPL-2.0 */
/* cachestat: page cache accesses, additions (misses), dirtied pages and dirtied buffers.
 * 5.16 moved the page cache to folios and renamed the functions and the tracepoint; newer
 * kernels keep the old names as wrappers. Both variants are built, newest first: the loader
 * attaches the first one the running kernel has (see kc_bpf.h), so an object built for one
 * bucket also works on the later kernels that select that bucket. */

KC_COUNTERS(cachestat_counters, KC_CACHESTAT_END);

SEC("kprobe/folio_mark_accessed")
int BPF_KPROBE(kc_cachestat_access__folio)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_ACCESS, 1);
	return 0;
}

SEC("kprobe/filemap_add_folio")
int BPF_KPROBE(kc_cachestat_add__folio)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_ADD, 1);
	return 0;
}

SEC("kprobe/mark_page_accessed")
int BPF_KPROBE(kc_cachestat_access__page)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_ACCESS, 1);
	return 0;
}

SEC("kprobe/add_to_page_cache_lru")
int BPF_KPROBE(kc_cachestat_add__page)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_ADD, 1);
	return 0;
}

SEC("tracepoint/writeback/writeback_dirty_folio")
int kc_cachestat_dirty__folio(void *ctx)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_DIRTY, 1);
	return 0;
}

SEC("tracepoint/writeback/writeback_dirty_page")
int kc_cachestat_dirty__page(void *ctx)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_DIRTY, 1);
	return 0;
}

SEC("kprobe/mark_buffer_dirty")
int BPF_KPROBE(kc_cachestat_buffer_dirty)
{
	kc_add(&cachestat_counters, KC_CACHESTAT_BUFFER_DIRTY, 1);
	return 0;
}
