/* SPDX-License-Identifier: GPL-2.0 */
/* mdflush: flush requests that reach an MD (software RAID) device, in total and per device
 * (`mdflush_devices`, keyed by the MD device's dev_t). A RAID set that flushes often is one
 * whose writers ask for durability (fsync, journal commits); each such flush stalls every
 * member disk. Counted where the MD layer takes the flush, md_flush_request (module md_mod:
 * attaching needs the module loaded, and a trampoline needs the module's BTF).
 * Families: trampoline and probe; no tracepoint observes an MD flush. Totals and devices, no
 * per-application table: the flushing task is as often the MD or journal thread as the
 * application that asked. */

KC_TOTALS(mdflush, mdflush)
KC_DEVICE_MAP(mdflush_devices);

#if KC_CORE
/* Before 5.12 a bio named its disk, not its block device. */
struct bio___old {
	struct gendisk *bi_disk;
} __attribute__((preserve_access_index));
#endif

/* The MD device a bio was submitted to, as the kernel encodes a dev_t (MKDEV). */
static __always_inline __u32 kc_mdflush_device(struct bio *bio)
{
#if KC_CORE
	if (bpf_core_field_exists(bio->bi_bdev))
		return BPF_CORE_READ(bio, bi_bdev, bd_dev);
	struct gendisk *disk = BPF_CORE_READ((struct bio___old *)bio, bi_disk);

	return (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
	return KC_READ(bio, bi_bdev, bd_dev);
#else
	struct gendisk *disk = KC_READ(bio, bi_disk);

	return (KC_READ(disk, major) << 20) | KC_READ(disk, first_minor);
#endif
}

static __always_inline void kc_mdflush_on_flush(struct bio *bio)
{
	kc_mdflush_count(KC_MDFLUSH_FLUSH, 1);
	kc_device_add(&mdflush_devices, kc_mdflush_device(bio), 1);
}

KC_FUNC_ENTRY(kc_mdflush_flush, md_flush_request, kc_mdflush_on_flush(bio), void *mddev,
	      struct bio *bio)
