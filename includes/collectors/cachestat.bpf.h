/* SPDX-License-Identifier: GPL-2.0 */
/* cachestat: page cache accesses, additions (misses), dirtied pages and dirtied buffers.
 * 5.16 moved the page cache to folios and renamed the functions and the tracepoint; newer
 * kernels keep the old names as wrappers. Both variants are built, newest first: the loader
 * attaches the first one the running kernel has (see kc_bpf.h), so an object built for one
 * bucket also works on the later kernels that select that bucket.
 * Families: the functions (trampoline, probe); tracepoints where the kernel has one:
 *   access        none: no tracepoint fires on a page cache access
 *   add           filemap/mm_filemap_add_to_page_cache
 *   dirty         writeback/writeback_dirty_{folio,page} (tp_btf as the trampoline)
 *   buffer_dirty  block/block_dirty_buffer, which mark_buffer_dirty fires */

KC_COLLECTOR(cachestat, cachestat)

#define KC_CACHESTAT(counter) kc_cachestat_count(counter, 1)

KC_FUNC_ENTRY_V(kc_cachestat_access, folio, folio_mark_accessed, KC_CACHESTAT(KC_CACHESTAT_ACCESS))
KC_FUNC_ENTRY_V(kc_cachestat_access, page, mark_page_accessed, KC_CACHESTAT(KC_CACHESTAT_ACCESS))

KC_FUNC_ENTRY_V(kc_cachestat_add, folio, filemap_add_folio, KC_CACHESTAT(KC_CACHESTAT_ADD))
KC_FUNC_ENTRY_V(kc_cachestat_add, page, add_to_page_cache_lru, KC_CACHESTAT(KC_CACHESTAT_ADD))
SEC("tracepoint/filemap/mm_filemap_add_to_page_cache")
int kc_cachestat_add__tracepoint(void *ctx)
{
	KC_CACHESTAT(KC_CACHESTAT_ADD);
	return 0;
}

KC_TP_COUNT_V(kc_cachestat_dirty, folio, writeback, writeback_dirty_folio, KC_CACHESTAT(KC_CACHESTAT_DIRTY))
KC_TP_COUNT_V(kc_cachestat_dirty, page, writeback, writeback_dirty_page, KC_CACHESTAT(KC_CACHESTAT_DIRTY))

KC_FUNC_ENTRY(kc_cachestat_buffer_dirty, mark_buffer_dirty, KC_CACHESTAT(KC_CACHESTAT_BUFFER_DIRTY))
SEC("tracepoint/block/block_dirty_buffer")
int kc_cachestat_buffer_dirty__tracepoint(void *ctx)
{
	KC_CACHESTAT(KC_CACHESTAT_BUFFER_DIRTY);
	return 0;
}
