/* SPDX-License-Identifier: GPL-2.0 */
/* swap: pages read from and written to swap. 6.10 renamed swap_readpage to
 * swap_read_folio; 6.16 replaced swap_writepage with swap_writeout. Both variants are built,
 * newest first; the loader attaches the one the running kernel has.
 * Families: the functions (trampoline, probe). Writes also in the tracepoint family: reclaim
 * writing out an anonymous page (vmscan/mm_vmscan_write_folio, before 6.2 ..._writepage, with
 * RECLAIM_WB_ANON) is a page going to swap. No tracepoint fires on a swap-in. */

KC_COLLECTOR(swap, swap)

#define KC_RECLAIM_WB_ANON 0x0001

KC_FUNC_ENTRY_V(kc_swap_read, folio, swap_read_folio, kc_swap_count(KC_SWAP_READ, 1))
KC_FUNC_ENTRY_V(kc_swap_read, page, swap_readpage, kc_swap_count(KC_SWAP_READ, 1))

KC_FUNC_ENTRY_V(kc_swap_write, writeout, swap_writeout, kc_swap_count(KC_SWAP_WRITE, 1))
KC_FUNC_ENTRY_V(kc_swap_write, page, swap_writepage, kc_swap_count(KC_SWAP_WRITE, 1))

#if KC_CORE
struct trace_event_raw_mm_vmscan_writepage {
	int reclaim_flags;
} __attribute__((preserve_access_index));
#endif

SEC("tracepoint/vmscan/mm_vmscan_write_folio")
int kc_swap_write__tracepoint__folio(struct trace_event_raw_mm_vmscan_write_folio *ctx)
{
	if (KC_READ(ctx, reclaim_flags) & KC_RECLAIM_WB_ANON)
		kc_swap_count(KC_SWAP_WRITE, 1);
	return 0;
}

SEC("tracepoint/vmscan/mm_vmscan_writepage")
int kc_swap_write__tracepoint__page(struct trace_event_raw_mm_vmscan_writepage *ctx)
{
	if (KC_READ(ctx, reclaim_flags) & KC_RECLAIM_WB_ANON)
		kc_swap_count(KC_SWAP_WRITE, 1);
	return 0;
}
