//! Cells: one (bucket or CO-RE, libc) build's files, as a directory under `artifacts/cells/`
//! and a tarball `artifacts/<cell>.tar`. Written only whole and verified; read back by
//! packaging, the docker backend and the tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kc_common::CellId;

use crate::atomic::{self, StagedDir};
use crate::tarball;

/// Written into each cell: the libc and the tools that built it (the release manifest reads it).
pub const BUILD_INFO: &str = "build-info.json";

/// The headers a CO-RE cell ships with its skeletons: the layouts of what the maps hold.
pub const SHARED_HEADERS: [&str; 2] = ["kc_common.h", "kc_collectors.h"];

/// The one executable a cell may hold.
pub const LOADER: &str = "kc-loader";

/// A cell's file, as it goes into the directory and the tarball.
pub fn entry(name: String, bytes: Vec<u8>) -> tarball::Entry {
    tarball::Entry {
        executable: name == LOADER,
        name,
        bytes,
    }
}

/// The files of a cell directory, by name.
pub fn read_dir(dir: &Path) -> Result<CellFiles> {
    let mut files = BTreeMap::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        files.insert(
            e.file_name().to_string_lossy().into_owned(),
            fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?,
        );
    }
    Ok(files)
}

/// A cell's files: name -> bytes.
pub type CellFiles = BTreeMap<String, Vec<u8>>;

/// The cells under `artifacts/cells/` (directories whose names parse as cells), sorted by name.
pub fn read_all(cells_dir: &Path) -> Result<Vec<(CellId, CellFiles)>> {
    let mut found: Vec<(String, CellId)> = Vec::new();
    for e in fs::read_dir(cells_dir)
        .with_context(|| {
            format!(
                "reading {} (run `cargo xtask build` first)",
                cells_dir.display()
            )
        })?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() || name.starts_with('.') {
            continue;
        }
        let id = name
            .parse()
            .with_context(|| format!("{}: not a cell directory", e.path().display()))?;
        found.push((name, id));
    }
    found.sort();
    found
        .into_iter()
        .map(|(name, id)| Ok((id, read_dir(&cells_dir.join(name))?)))
        .collect()
}

/// The verification failures of a cell's files, one line each.
pub fn verify(id: CellId, files: &[tarball::Entry]) -> Vec<String> {
    let group = crate::verify::Group {
        origin: id.to_string(),
        files: files
            .iter()
            .map(|e| (e.name.clone(), e.bytes.clone()))
            .collect(),
        only: None,
    };
    crate::verify::verify_group(&group)
        .into_iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: verify: {}", r.file, r.errors.join("; ")))
        .collect()
}

/// A file the cell's libc has no part in: a BPF object or its skeleton (the loader is the
/// only file linked against a libc).
fn is_libc_independent(name: &str) -> bool {
    name.ends_with(".o") || name.ends_with(".skel.h")
}

/// Where cells of the same kind and architecture but different libcs disagree on a file
/// their libc has no part in, one line each. A release boots only one libc's loader on an
/// emulated architecture, which proves the other's objects only when they are these bytes.
pub fn libc_disagreements(cells: &[(CellId, CellFiles)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (a_id, a)) in cells.iter().enumerate() {
        // Each cell against the first one of its kind and architecture.
        let Some((b_id, b)) = cells[..i]
            .iter()
            .find(|(b, _)| b.kind == a_id.kind && b.arch == a_id.arch)
        else {
            continue;
        };
        let names: std::collections::BTreeSet<&String> = a
            .keys()
            .chain(b.keys())
            .filter(|n| is_libc_independent(n))
            .collect();
        for name in names {
            match (b.get(name), a.get(name)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(_), Some(_)) => out.push(format!("{name} differs between {b_id} and {a_id}")),
                (Some(_), None) => out.push(format!("{name} is in {b_id} but not in {a_id}")),
                (None, _) => out.push(format!("{name} is in {a_id} but not in {b_id}")),
            }
        }
    }
    out
}

/// A cell's directory under an artifacts directory (`artifacts/` of the checkout, or a
/// container's output): `<artifacts>/cells/<id>`.
pub fn dir_in(artifacts: &Path, id: CellId) -> PathBuf {
    artifacts.join("cells").join(id.to_string())
}

/// Writes a cell's directory and tarball under `artifacts`, each replacing the previous one
/// whole. Returns the tarball's path.
pub fn write(
    artifacts: &Path,
    id: CellId,
    entries: Vec<tarball::Entry>,
    mtime: u64,
) -> Result<std::path::PathBuf> {
    write_dir(&dir_in(artifacts, id), &entries)?;
    let tar = artifacts.join(id.tarball());
    tarball::write(&tar, entries, mtime)?;
    Ok(tar)
}

/// Replaces `dir` with the cell's files.
pub fn write_dir(dir: &Path, entries: &[tarball::Entry]) -> Result<()> {
    let staged = StagedDir::beside(dir)?;
    for e in entries {
        atomic::write_file(&staged.path().join(&e.name), &e.bytes, e.executable)?;
    }
    staged.replace()
}

/// The `.o` files of a cell directory, sorted.
pub fn object_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_of_two_libcs_must_carry_the_same_bpf_files() {
        let cell = |id: &str, files: &[(&str, &[u8])]| {
            let files = files
                .iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect();
            (id.parse::<CellId>().unwrap(), files)
        };
        let glibc = cell(
            "kc-ebpf-6.1-glibc",
            &[("pkc_a.6.1.o", b"a"), ("kc-loader", b"glibc")],
        );
        let musl = cell(
            "kc-ebpf-6.1-musl",
            &[("pkc_a.6.1.o", b"a"), ("kc-loader", b"musl")],
        );
        // Another kind or architecture is not compared.
        let arm64 = cell("kc-ebpf-6.1-arm64-musl", &[("pkc_a.6.1.o", b"other")]);
        let core = cell("kc-ebpf-co-re-musl", &[("a.bpf.o", b"c")]);
        let agree = [glibc.clone(), musl, arm64, core];
        assert!(libc_disagreements(&agree).is_empty());
        let musl = cell(
            "kc-ebpf-6.1-musl",
            &[("pkc_a.6.1.o", b"b"), ("pkc_b.6.1.o", b"b")],
        );
        assert_eq!(
            libc_disagreements(&[glibc, musl]),
            [
                "pkc_a.6.1.o differs between kc-ebpf-6.1-glibc and kc-ebpf-6.1-musl",
                "pkc_b.6.1.o is in kc-ebpf-6.1-musl but not in kc-ebpf-6.1-glibc"
            ]
        );
    }

    #[test]
    fn cells_round_trip_and_stray_directories_are_named() {
        let d = tempfile::tempdir().unwrap();
        let id: CellId = "kc-ebpf-co-re-glibc".parse().unwrap();
        let entries = vec![
            entry("kc-loader".into(), b"\x7fELF".to_vec()),
            entry("x.bpf.o".into(), b"o".to_vec()),
        ];
        let tar = write(d.path(), id, entries, 0).unwrap();
        assert!(tar.ends_with("kc-ebpf-co-re-glibc.tar"));
        let all = read_all(&d.path().join("cells")).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, id);
        assert_eq!(all[0].1["x.bpf.o"], b"o");
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            fs::metadata(d.path().join("cells/kc-ebpf-co-re-glibc").join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("kc-loader"), mode("x.bpf.o")), (0o755, 0o644));
        fs::create_dir(d.path().join("cells/junk")).unwrap();
        let e = read_all(&d.path().join("cells")).unwrap_err();
        assert!(
            format!("{e:#}").contains("junk: not a cell directory"),
            "{e:#}"
        );
    }
}
