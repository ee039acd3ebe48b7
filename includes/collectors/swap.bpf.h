/* SPDX-License-Identifier: GPL-2.0 */
/* swap: pages read from and written to swap. 6.10 renamed swap_readpage to
 * swap_read_folio; 6.16 replaced swap_writepage with swap_writeout. Both variants are built,
 * newest first; the loader attaches the one the running kernel has. */

KC_COUNTERS(swap_counters, KC_SWAP_END);

SEC("kprobe/swap_read_folio")
int BPF_KPROBE(kc_swap_read__folio)
{
	kc_add(&swap_counters, KC_SWAP_READ, 1);
	return 0;
}

SEC("kprobe/swap_readpage")
int BPF_KPROBE(kc_swap_read__page)
{
	kc_add(&swap_counters, KC_SWAP_READ, 1);
	return 0;
}

SEC("kprobe/swap_writeout")
int BPF_KPROBE(kc_swap_write__writeout)
{
	kc_add(&swap_counters, KC_SWAP_WRITE, 1);
	return 0;
}

SEC("kprobe/swap_writepage")
int BPF_KPROBE(kc_swap_write__page)
{
	kc_add(&swap_counters, KC_SWAP_WRITE, 1);
	return 0;
}
