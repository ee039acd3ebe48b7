//! The release the guests boot with, installed the way a host installs it: packaged from the
//! cells (signed with a throw-away key), installed by `kc-install` into a prefix, and that
//! prefix's tree (releases, the `current` link) put into every initramfs at
//! `/usr/libexec/kernel-collector`. In the guest, the release's own `kc-select` chooses the
//! objects; the host judges its choice with [`judge_selection`].

use std::path::Path;

use anyhow::{Context, Result};
use kc_common::select::{Kind, LegacyMode, Selection};
use kc_common::{select_bucket, Arch, Bucket, KernelVersion, Libc};

use crate::cpio::Member;
use crate::{package, paths, signing};

/// Where the guests' prefix is (`kc-install --prefix`), relative to the initramfs root.
pub const GUEST_PREFIX: &str = "usr/libexec/kernel-collector";
const TAG: &str = "v0.0.0-vmtest";

/// An installed prefix as initramfs members (owned).
pub enum Node {
    Dir(String),
    File(String, Vec<u8>, bool),
    Link(String, String),
}

impl Node {
    pub fn member(&self) -> Member<'_> {
        match self {
            Node::Dir(n) => Member::Dir(n),
            Node::File(name, data, executable) => Member::File {
                name,
                data,
                executable: *executable,
            },
            Node::Link(name, target) => Member::Symlink { name, target },
        }
    }
}

/// Packages `libc`'s cells of `arch`, installs them with kc-install (CO-RE and every bucket) and returns
/// the prefix's tree under [`GUEST_PREFIX`], parents first.
pub fn install(libc: Libc, arch: Arch) -> Result<Vec<Node>> {
    let (sk, pk) = signing::throwaway_keypair()?;
    let cells = paths::cells_dir();
    // The guests' architecture alone: its kc-select, loader and objects.
    let release = package::build_release(TAG, &cells, Some(&sk), &[arch])?;
    let scratch = tempfile::tempdir()?;
    let from = scratch.path().join("release");
    std::fs::create_dir(&from)?;
    for (name, bytes) in &release.files {
        std::fs::write(from.join(name), bytes)?;
    }
    let prefix = scratch.path().join("prefix");
    kc_install::install(&kc_install::Options {
        from: from.display().to_string(),
        tag: TAG.into(),
        pubkey: pk,
        prefix: prefix.clone(),
        libc,
        arch,
        // Only a lean install reads it.
        kernel: paths::running_kernel_release()?,
        only_bucket: false,
        keep: 1,
        limits: Default::default(),
    })
    .context("installing the guests' release with kc-install")?;
    let mut nodes = Vec::new();
    let mut at = String::new();
    for part in GUEST_PREFIX.split('/') {
        at = if at.is_empty() {
            part.into()
        } else {
            format!("{at}/{part}")
        };
        nodes.push(Node::Dir(at.clone()));
    }
    walk(&prefix, GUEST_PREFIX, &mut nodes)?;
    Ok(nodes)
}

/// Appends `dir`'s entries (sorted, parents before children) as `under/<name>`; the
/// installer's lock file stays behind.
fn walk(dir: &Path, under: &str, nodes: &mut Vec<Node>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == kc_install::prefix::LOCK_FILE {
            continue;
        }
        let path = e.path();
        let inner = format!("{under}/{name}");
        let kind = e.file_type()?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path)?;
            nodes.push(Node::Link(inner, target.display().to_string()));
        } else if kind.is_dir() {
            nodes.push(Node::Dir(inner.clone()));
            walk(&path, &inner, nodes)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let executable = e.metadata()?.permissions().mode() & 0o111 != 0;
            nodes.push(Node::File(inner, std::fs::read(&path)?, executable));
        }
    }
    Ok(())
}

/// The guest's selections, by label: `btf` (the kernel's own BTF), `no-btf-entry` and
/// `no-btf-return` (as for a kernel without BTF, each legacy mode).
pub const SELECTIONS: [(&str, Option<LegacyMode>); 3] = [
    ("btf", None),
    ("no-btf-entry", Some(LegacyMode::Entry)),
    ("no-btf-return", Some(LegacyMode::Return)),
];

const BEGIN: &str = "KC-VMTEST-SELECT-BEGIN";
const END: &str = "KC-VMTEST-SELECT-END";

/// The kc-select reports between the markers in the console, by label.
pub fn extract(console: &str) -> Vec<(String, String)> {
    super::judge::between(console, BEGIN, END)
        .into_iter()
        .map(|(label, body)| (label.trim().to_string(), body.to_string()))
        .collect()
}

/// What is wrong with the guest's choices (empty: the rule held): with BTF every collector is
/// CO-RE and was loaded by the kernel; without, every collector is the legacy object of the
/// kernel's bucket in the mode asked for.
pub fn judge_selection(
    console: &str,
    kernel: &KernelVersion,
    buckets: &[Bucket],
    collectors: usize,
) -> Vec<String> {
    let reports = extract(console);
    let bucket = select_bucket(kernel, buckets).ok().map(|b| b.to_string());
    let mut problems = Vec::new();
    for (label, mode) in SELECTIONS {
        let Some((_, body)) = reports.iter().find(|(l, _)| l == label) else {
            problems.push(format!("kc-select ({label}) did not report"));
            continue;
        };
        let parsed: Result<Vec<Selection>, String> =
            serde_json::from_str::<serde_json::Value>(body)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    serde_json::from_value(v["selections"].clone()).map_err(|e| e.to_string())
                });
        let selections = match parsed {
            Ok(s) => s,
            Err(e) => {
                let tail: String = body.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                problems.push(format!("kc-select ({label}): no report ({e}): {tail}"));
                continue;
            }
        };
        if selections.len() != collectors {
            problems.push(format!(
                "kc-select ({label}) chose for {} collectors, not {collectors}",
                selections.len()
            ));
        }
        for s in selections {
            let ok = match mode {
                None => s.kind == Kind::CoRe && s.tried,
                Some(m) => {
                    let prefix = if m == LegacyMode::Return { 'r' } else { 'p' };
                    s.kind == Kind::Legacy
                        && s.bucket == bucket
                        && s.object.as_deref().is_some_and(|o| {
                            o.strip_prefix("legacy/")
                                .is_some_and(|f| f.starts_with(prefix))
                        })
                }
            };
            if !ok {
                problems.push(format!(
                    "kc-select ({label}) chose {} {:?} for {} (expected {}): {}",
                    s.kind,
                    s.object,
                    s.collector,
                    match mode {
                        None => "a CO-RE object the kernel loads".to_string(),
                        Some(m) => format!(
                            "the {m} object of bucket {}",
                            bucket.as_deref().unwrap_or("?")
                        ),
                    },
                    s.passed_over.join("; ")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: &str, object: &str, bucket: Option<&str>, tried: bool) -> String {
        serde_json::json!({"selections": [{"collector": "vfs", "kind": kind, "object": object,
            "bucket": bucket, "tried": tried, "passed_over": []}]})
        .to_string()
    }

    #[test]
    fn the_guests_choices_are_judged_by_the_rule() {
        let kernel = KernelVersion::parse("6.12.57+deb13-cloud-amd64").unwrap();
        let buckets: Vec<Bucket> = ["5.10", "6.1", "6.12"]
            .iter()
            .map(|b| b.parse().unwrap())
            .collect();
        let console = |btf: &str, entry: &str, ret: &str| {
            format!(
                "noise\n{BEGIN} btf\n{btf}\n{END} btf status=0\n{BEGIN} no-btf-entry\n{entry}\n{END} no-btf-entry status=0\n\
                 {BEGIN} no-btf-return\n{ret}\n{END} no-btf-return status=0\n"
            )
        };
        let good = console(
            &report("co-re", "co-re/vfs.bpf.o", None, true),
            &report("legacy", "legacy/pkc_vfs.6.12.o", Some("6.12"), false),
            &report("legacy", "legacy/rkc_vfs.6.12.o", Some("6.12"), false),
        );
        assert_eq!(
            judge_selection(&good, &kernel, &buckets, 1),
            Vec::<String>::new()
        );
        let wrong_bucket = console(
            &report("co-re", "co-re/vfs.bpf.o", None, false),
            &report("legacy", "legacy/pkc_vfs.6.1.o", Some("6.1"), false),
            &report("legacy", "legacy/pkc_vfs.6.12.o", Some("6.12"), false),
        );
        let p = judge_selection(&wrong_bucket, &kernel, &buckets, 1);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("(btf) chose co-re") && p[0].contains("the kernel loads"));
        assert!(p[1].contains("the entry object of bucket 6.12"));
        assert!(p[2].contains("the return object"));
        let p = judge_selection(
            "KC-VMTEST-SELECT-BEGIN btf\nkc-select: error: x\nKC-VMTEST-SELECT-END btf status=1",
            &kernel,
            &buckets,
            1,
        );
        assert!(
            p[0].contains("kc-select (btf): no report") && p[0].contains("kc-select: error: x"),
            "{p:?}"
        );
        assert!(p[1].contains("(no-btf-entry) did not report"));
    }
}
