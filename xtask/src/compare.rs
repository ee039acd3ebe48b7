//! `cargo xtask compare BEFORE AFTER`: proves two `artifacts/` trees hold the same bytes, as a
//! refactor must. Cell files and tarballs compare byte for byte; release tarballs compare
//! member by member, where a manifest may differ only in `source_commit` (the commit is an
//! input of the release, not of the build). Anything else that differs is listed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct CompareOptions {
    /// The artifacts directory before the change
    pub before: PathBuf,
    /// The artifacts directory after it
    pub after: PathBuf,
}

/// Every regular file under `dir`, by path relative to it.
fn files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(e.path())?);
            }
        }
    }
    Ok(out)
}

/// The members of an xz-compressed tarball, by name.
fn members(xz: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut tar = Vec::new();
    xz2::read::XzDecoder::new(xz).read_to_end(&mut tar)?;
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for m in archive.entries()? {
        let mut m = m?;
        let name = m.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        m.read_to_end(&mut bytes)?;
        out.insert(name, bytes);
    }
    Ok(out)
}

/// A manifest without its `source_commit`.
fn without_commit(manifest: &[u8]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    v.as_object_mut()?.remove("source_commit");
    Some(v)
}

/// The differences between two trees, one line each (pure, for tests).
pub fn differences(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    for name in before
        .keys()
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
    {
        let (Some(a), Some(b)) = (before.get(name), after.get(name)) else {
            let side = if before.contains_key(name) {
                "before"
            } else {
                "after"
            };
            diffs.push(format!("{name}: only {side}"));
            continue;
        };
        if a == b {
            continue;
        }
        // Release files that embed the tarballs' hashes follow the tarballs.
        let release_file = name.starts_with("release/");
        if !(release_file && name.ends_with(".tar.xz")) {
            if !release_file {
                diffs.push(format!("{name}: bytes differ"));
            }
            continue;
        }
        let (ma, mb) = (members(a)?, members(b)?);
        for (m, x) in &ma {
            match mb.get(m) {
                None => diffs.push(format!("{name}: {m}: only before")),
                Some(y) if x == y => {}
                Some(y) if m == "manifest.json" && without_commit(x) == without_commit(y) => {}
                Some(_) => diffs.push(format!("{name}: {m}: bytes differ")),
            }
        }
        for m in mb.keys().filter(|m| !ma.contains_key(*m)) {
            diffs.push(format!("{name}: {m}: only after"));
        }
    }
    Ok(diffs)
}

pub fn run(o: CompareOptions) -> Result<()> {
    let (before, after) = (files(&o.before)?, files(&o.after)?);
    let diffs = differences(&before, &after)?;
    if !diffs.is_empty() {
        bail!(
            "{} of {} files differ:\n{}",
            diffs.len(),
            before.len().max(after.len()),
            diffs.join("\n")
        );
    }
    println!(
        "{} files identical between {} and {} (release manifests up to source_commit)",
        before.len(),
        o.before.display(),
        o.after.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(manifest: &str, object: &[u8]) -> Vec<u8> {
        let entries = vec![
            crate::tarball::Entry {
                name: "manifest.json".into(),
                bytes: manifest.as_bytes().to_vec(),
                executable: false,
            },
            crate::tarball::Entry {
                name: "x.o".into(),
                bytes: object.to_vec(),
                executable: false,
            },
        ];
        let tar = crate::tarball::to_bytes(entries, 0).unwrap();
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut enc, &tar).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn only_the_commit_may_differ_and_everything_else_is_named() {
        let tree = |commit: &str, object: &[u8], cell: &[u8]| {
            BTreeMap::from([
                ("cells/c/x.o".to_string(), cell.to_vec()),
                (
                    "release/r.tar.xz".to_string(),
                    release(
                        &format!(r#"{{"source_commit":"{commit}","tag":"v1"}}"#),
                        object,
                    ),
                ),
            ])
        };
        let a = tree("aaa", b"o", b"c");
        assert!(differences(&a, &tree("bbb", b"o", b"c"))
            .unwrap()
            .is_empty());
        assert_eq!(
            differences(&a, &tree("bbb", b"O", b"C")).unwrap(),
            [
                "cells/c/x.o: bytes differ",
                "release/r.tar.xz: x.o: bytes differ"
            ]
        );
        let mut b = a.clone();
        b.insert("cells/c/new.o".into(), vec![]);
        assert_eq!(differences(&a, &b).unwrap(), ["cells/c/new.o: only after"]);
    }
}
