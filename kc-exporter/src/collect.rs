//! What the exporter serves: kc-select's choice for each collector on this kernel (the
//! release's own rule, the kernel asked), each chosen object loaded and attached through
//! `kc_agent` by the release's attach plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kc_common::release::{CORE_DIR, LEGACY_DIR};
use kc_common::select::Selection;

use crate::flags::Flags;

/// The objects' own table size (`KC_APPS_ENTRIES`, includes/kc_bpf.h): the least the
/// exporter sizes a table to.
pub const OBJECT_TABLE_ROWS: u32 = 2048;
/// The most rows the exporter sizes a table to by itself (`--table-size` sets any size).
pub const MAX_AUTO_TABLE_ROWS: u32 = 65536;

/// Rows of each per-application table: `--table-size`, else [`auto_table_rows`] of what runs
/// now; None without tables (`--group-by none`: the objects' own size).
pub fn table_rows(flags: &Flags) -> Option<u32> {
    flags.table_size.or_else(|| {
        (flags.group_by != kc_common::report::GroupBy::None)
            .then(|| auto_table_rows(live_apps(flags.group_by)))
    })
}

/// Rows of each per-application table where `--table-size` is not given: room for twice the
/// processes (or cgroups) `live` now, a power of two between the objects' own size and
/// [`MAX_AUTO_TABLE_ROWS`]. A table the host outgrows evicts its least recent rows, counted.
pub fn auto_table_rows(live: usize) -> u32 {
    let wanted = live
        .saturating_mul(2)
        .clamp(1, MAX_AUTO_TABLE_ROWS as usize);
    (wanted.next_power_of_two() as u32).clamp(OBJECT_TABLE_ROWS, MAX_AUTO_TABLE_ROWS)
}

/// The processes (`/proc`'s numeric entries) or cgroups (directories under
/// `/sys/fs/cgroup`, walked to a bound) there are now, for [`auto_table_rows`].
pub fn live_apps(group_by: kc_common::report::GroupBy) -> usize {
    use kc_common::report::GroupBy;
    match group_by {
        GroupBy::None => 0,
        GroupBy::Process => std::fs::read_dir("/proc").map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        }),
        GroupBy::Cgroup => {
            let mut dirs = vec![PathBuf::from("/sys/fs/cgroup")];
            let mut seen = 0;
            while let Some(dir) = dirs.pop() {
                seen += 1;
                if seen >= MAX_AUTO_TABLE_ROWS as usize {
                    break;
                }
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    dirs.extend(
                        entries
                            .filter_map(|e| e.ok())
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
            seen
        }
    }
}

/// The release directory the flags name, or the one this program is installed in.
pub fn release_dir(flags: &Flags) -> PathBuf {
    flags
        .release
        .clone()
        .unwrap_or_else(|| kc_select::default_release(std::env::current_exe().ok().as_deref()))
}

/// kc-select's choices on the running kernel, refused where nothing serves any collector.
pub fn select(flags: &Flags, release: &Path) -> Result<(String, Vec<Selection>)> {
    let report = kc_select::run(&kc_select::Options {
        release: release.to_path_buf(),
        kernel: None,
        btf: kc_common::host::KERNEL_BTF.into(),
        mode: flags.legacy_mode,
        loader: flags.loader.clone(),
        trial: true,
        collectors: flags.collectors.clone(),
    })
    .with_context(|| {
        format!(
            "choosing the objects of {} for this kernel (kc-select)",
            release.display()
        )
    })?;
    nothing_serves(&report.kernel, release, &report.selections)?;
    Ok((report.kernel, report.selections))
}

/// Refuses a choice in which no collector has an object, with each one's reason.
fn nothing_serves(kernel: &str, release: &Path, selections: &[Selection]) -> Result<()> {
    if selections.iter().any(|s| s.object.is_some()) {
        return Ok(());
    }
    let why: Vec<String> = selections
        .iter()
        .map(|s| format!("{}: {}", s.collector, s.passed_over.join("; ")))
        .collect();
    bail!(
        "nothing in {} serves kernel {kernel}: {}",
        release.display(),
        why.join(" | ")
    )
}

/// The chosen objects by release subdirectory (`co-re`, `legacy`): their file names.
pub fn by_directory(selections: &[Selection]) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for object in selections.iter().filter_map(|s| s.object.as_deref()) {
        for dir in [CORE_DIR, LEGACY_DIR] {
            if let Some(file) = object.strip_prefix(dir).and_then(|f| f.strip_prefix('/')) {
                out.entry(dir).or_default().push(file.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_hold_twice_the_live_processes_within_bounds() {
        use super::auto_table_rows;
        assert_eq!(auto_table_rows(0), 2048);
        assert_eq!(auto_table_rows(150), 2048);
        assert_eq!(auto_table_rows(1024), 2048);
        assert_eq!(auto_table_rows(1025), 4096);
        assert_eq!(auto_table_rows(4100), 16384);
        assert_eq!(auto_table_rows(40_000), 65536);
        assert_eq!(auto_table_rows(usize::MAX), 65536);
    }

    use super::*;
    use kc_common::select::Kind;

    fn sel(collector: &str, kind: Kind, object: Option<&str>) -> Selection {
        Selection {
            collector: collector.into(),
            kind,
            object: object.map(str::to_string),
            bucket: None,
            tried: true,
            passed_over: Vec::new(),
        }
    }

    #[test]
    fn a_kernel_nothing_serves_is_refused_with_each_reason() {
        let mut none = sel("vfs", Kind::None, None);
        none.passed_over = vec!["no BTF".into(), "no bucket <= 4.19".into()];
        let e = nothing_serves("4.19.0", Path::new("/r"), &[none.clone()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nothing in /r serves kernel 4.19.0: vfs: no BTF; no bucket <= 4.19"
        );
        let some = sel("fd", Kind::CoRe, Some("co-re/fd.bpf.o"));
        assert!(nothing_serves("6.1.0", Path::new("/r"), &[none, some]).is_ok());
    }

    #[test]
    fn chosen_objects_are_grouped_by_their_directory() {
        let s = [
            sel("vfs", Kind::CoRe, Some("co-re/vfs.bpf.o")),
            sel("fd", Kind::Legacy, Some("legacy/rkc_fd.6.1.o")),
            sel("swap", Kind::None, None),
            sel("disk", Kind::CoRe, Some("co-re/disk.bpf.o")),
        ];
        let d = by_directory(&s);
        assert_eq!(d["co-re"], ["vfs.bpf.o", "disk.bpf.o"]);
        assert_eq!(d["legacy"], ["rkc_fd.6.1.o"]);
    }
}
