/* SPDX-License-Identifier: GPL-2.0 */
/* dc: directory cache lookups, per application: references (lookup_fast, the path walk's
 * lock-free dcache lookup), slow lookups (d_lookup, under the rename seqlock, when a name is
 * looked up to create or remove it) and misses (d_lookup found no dentry). The ratio of misses
 * to references is the dcache's miss rate (netdata's dcstat).
 * Families: the functions (trampoline, probe); no tracepoint fires on a dcache lookup, so a
 * kernel with neither trampolines nor kprobes cannot observe this collector. */

KC_COLLECTOR(dc, dc)

KC_FUNC_ENTRY(kc_dc_reference, lookup_fast, kc_dc_count(KC_DC_REFERENCE, 1))
KC_FUNC_ENTRY(kc_dc_slow, d_lookup, kc_dc_count(KC_DC_SLOW, 1))
KC_FUNC_RETURN(kc_dc_slow, d_lookup, void *, if (!ret) kc_dc_count(KC_DC_MISS, 1), 2)
