//! `cargo xtask verify`: every object's ELF, BTF and BTF.ext checked (kc-verify), plus what
//! holds across a cell: `p`/`r` pairs of legacy objects, a skeleton beside each CO-RE object.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_verify::{ObjectKind, Report};
use serde::Serialize;

use crate::paths;

#[derive(Debug, Args)]
pub struct VerifyOptions {
    /// Object files, directories or tarballs (.tar, .tar.xz, .tar.gz); default: artifacts/
    pub paths: Vec<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Files that belong together: one directory or one tarball.
pub struct Group {
    pub origin: String,
    pub files: Vec<(String, Vec<u8>)>,
    /// Report only these (loose files given on the command line).
    pub only: Option<BTreeSet<String>>,
}

#[derive(Debug, Serialize)]
pub struct ObjectResult {
    pub file: String,
    pub kind: ObjectKind,
    pub ok: bool,
    #[serde(flatten)]
    pub report: Report,
    /// Problems as `section S, byte N: message`, and cell-level ones.
    pub errors: Vec<String>,
}

/// Verifies the objects of a group and the rules that span it.
pub fn verify_group(g: &Group) -> Vec<ObjectResult> {
    let names: BTreeSet<&str> = g.files.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = Vec::new();
    for (name, bytes) in &g.files {
        if !name.ends_with(".o") || g.only.as_ref().is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let kind = ObjectKind::from_file_name(name);
        let report = kc_verify::verify(name, bytes);
        let mut errors: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        match &kind {
            ObjectKind::Legacy { mode, .. } => {
                let twin = format!("{}{}", if *mode == 'p' { 'r' } else { 'p' }, &name[1..]);
                if !names.contains(twin.as_str()) {
                    errors.push(format!(
                        "its {} twin {twin} is missing: legacy objects come in p/r pairs",
                        if *mode == 'p' {
                            "return-mode"
                        } else {
                            "entry-mode"
                        }
                    ));
                }
            }
            ObjectKind::CoRe { collector } => {
                let skel = format!("{collector}.skel.h");
                if !names.contains(skel.as_str()) {
                    errors.push(format!("no skeleton {skel} beside it"));
                }
            }
            ObjectKind::Other => errors.push(
                "the name is neither {p|r}kc_<collector>.<bucket>.o nor <collector>.bpf.o".into(),
            ),
        }
        out.push(ObjectResult {
            file: format!("{}/{name}", g.origin),
            kind,
            ok: errors.is_empty(),
            report,
            errors,
        });
    }
    out
}

/// The largest object (or skeleton) verify reads; ours are tens of KiB.
const OBJECT_CAP: u64 = 64 << 20;
/// The largest tarball, compressed or not, and the most its members may decompress to.
const TARBALL_CAP: u64 = 256 << 20;

/// Reads `path` if it is a regular file of at most `cap` bytes. A FIFO, a device or a socket
/// is refused from its metadata, before anything opens it; a file that grows while read is
/// cut at the cap and refused.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (a FIFO, a device or a socket?): refusing to read it",
            path.display()
        );
    }
    if meta.len() > cap {
        bail!(
            "{} is {} bytes, over the {cap} bytes verify reads: refusing it",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!(
            "{} grew past {cap} bytes while read: refusing it",
            path.display()
        );
    }
    Ok(bytes)
}

fn read_tarball(path: &Path) -> Result<Group> {
    let raw = read_regular(path, TARBALL_CAP)?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(&raw[..]))
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(&raw[..]))
    } else {
        Box::new(&raw[..])
    };
    let mut files = Vec::new();
    // Bounded however the members decompress (a bomb).
    let mut archive = tar::Archive::new(reader.take(TARBALL_CAP));
    for entry in archive
        .entries()
        .with_context(|| format!("{}: not a tar archive", path.display()))?
    {
        let mut e = entry.with_context(|| format!("{}: corrupt tar stream", path.display()))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let member = e.path()?.to_string_lossy().into_owned();
        if e.size() > OBJECT_CAP {
            bail!(
                "{}: member {member} is {} bytes, over the {OBJECT_CAP} bytes verify reads",
                path.display(),
                e.size()
            );
        }
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).with_context(|| {
            format!(
                "{}: member {member} is cut (or the tarball decompresses past {TARBALL_CAP} bytes)",
                path.display()
            )
        })?;
        let base = member.rsplit('/').next().unwrap_or(&member).to_string();
        files.push((base, bytes));
    }
    Ok(Group {
        origin: path.display().to_string(),
        files,
        only: None,
    })
}

/// The objects and skeletons directly in `dir`.
fn read_dir_group(dir: &Path) -> Result<Group> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with('.') && (name.ends_with(".o") || name.ends_with(".skel.h")) {
            files.push((name, read_regular(&p, OBJECT_CAP)?));
        }
    }
    Ok(Group {
        origin: dir.display().to_string(),
        files,
        only: None,
    })
}

fn is_tarball(p: &Path) -> bool {
    let n = p.to_string_lossy();
    n.ends_with(".tar") || n.ends_with(".tar.xz") || n.ends_with(".tar.gz")
}

/// Groups for the given paths: directories (recursively, a group per directory), tarballs, files.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Group>> {
    let mut groups = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut loose: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    for p in paths {
        let meta =
            std::fs::metadata(p).with_context(|| format!("{} does not exist", p.display()))?;
        if meta.is_dir() {
            dirs.push(p.clone());
        } else if is_tarball(p) {
            groups.push(read_tarball(p)?);
        } else {
            loose
                .entry(p.parent().unwrap_or(Path::new(".")).to_path_buf())
                .or_default()
                .push(p.clone());
        }
    }
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue; // temporaries of an interrupted build
            }
            // The walk never follows a link to a directory: two links to `.` would make it
            // endless.
            let own = std::fs::symlink_metadata(&p)?.file_type();
            if own.is_dir() {
                dirs.push(p);
            } else if is_tarball(&p) && !own.is_symlink() {
                groups.push(read_tarball(&p)?);
            }
        }
        let group = read_dir_group(&d)?;
        if !group.files.is_empty() {
            groups.push(group);
        }
    }
    for (dir, files) in loose {
        // Loose files are checked with their directory's other files in view (p/r twins,
        // skeletons), but only they are reported.
        let only: BTreeSet<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let mut group = read_dir_group(&dir)?;
        for f in &only {
            if !group.files.iter().any(|(n, _)| n == f) {
                group
                    .files
                    .push((f.clone(), read_regular(&dir.join(f), OBJECT_CAP)?));
            }
        }
        group.only = Some(only);
        groups.push(group);
    }
    Ok(groups)
}

pub fn run(o: VerifyOptions) -> Result<()> {
    let paths = if o.paths.is_empty() {
        vec![paths::project_root().join("artifacts")]
    } else {
        o.paths
    };
    let groups = collect(&paths)?;
    let results: Vec<ObjectResult> = groups.iter().flat_map(verify_group).collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": failed == 0, "objects": results })
            )?
        );
    } else {
        println!(
            "{:<58} {:<7} {:<6} {:>5} {:>4} {:>5} {:>5}  VERDICT",
            "OBJECT", "KIND", "BUCKET", "PROGS", "MAPS", "BTF", "CO-RE"
        );
        for r in &results {
            let (kind, bucket) = match &r.kind {
                ObjectKind::Legacy {
                    mode, major, minor, ..
                } => (format!("legacy-{mode}"), format!("{major}.{minor}")),
                ObjectKind::CoRe { .. } => ("co-re".to_string(), "-".to_string()),
                ObjectKind::Other => ("?".to_string(), "-".to_string()),
            };
            let file = if r.file.len() > 58 {
                format!("…{}", &r.file[r.file.len() - 57..])
            } else {
                r.file.clone()
            };
            println!(
                "{file:<58} {kind:<7} {bucket:<6} {:>5} {:>4} {:>5} {:>5}  {}",
                r.report.programs.len(),
                r.report.maps.len(),
                r.report.btf_types,
                r.report.core_relos,
                if r.ok { "ok" } else { "FAILED" }
            );
            for e in &r.errors {
                println!("    {}: {e}", r.file);
            }
        }
        println!("verify: {} objects, {} failed", results.len(), failed);
    }
    if results.is_empty() {
        bail!(
            "no object found under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if failed > 0 {
        bail!("{failed} objects failed verification");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &[u8] = include_bytes!("../../kc-verify/tests/data/mount.bpf.o");
    const LEGACY: &[u8] = include_bytes!("../../kc-verify/tests/data/rkc_mount.6.1.o");

    /// What a hostile path gives `collect`: the error, or "ok".
    fn collect_error(p: &Path) -> String {
        match collect(&[p.to_path_buf()]) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{e:#}"),
        }
    }

    /// FIFOs (given, or named like a tarball in a directory), devices, link loops and a
    /// sparse 2 GiB file: each is refused at once, none is read whole or waited on.
    #[test]
    fn hostile_paths_are_refused_without_reading_them() {
        let d = tempfile::tempdir().unwrap();
        let sh = crate::process::shell_in(d.path());
        crate::process::output(xshell::cmd!(sh, "mkfifo pipe.o")).unwrap();
        let e = collect_error(&d.path().join("pipe.o"));
        assert!(e.contains("not a regular file"), "{e}");
        let e = collect_error(Path::new("/dev/zero"));
        assert!(e.contains("not a regular file"), "{e}");

        let in_dir = d.path().join("cells");
        std::fs::create_dir(&in_dir).unwrap();
        std::fs::rename(d.path().join("pipe.o"), in_dir.join("x.tar")).unwrap();
        let e = collect_error(&in_dir);
        assert!(
            e.contains("x.tar") && e.contains("not a regular file"),
            "{e}"
        );
        std::fs::remove_file(in_dir.join("x.tar")).unwrap();

        std::os::unix::fs::symlink(".", in_dir.join("a")).unwrap();
        std::os::unix::fs::symlink(".", in_dir.join("b")).unwrap();
        std::fs::write(in_dir.join("mount.bpf.o"), CORE).unwrap();
        let groups = collect(std::slice::from_ref(&in_dir)).unwrap();
        assert_eq!(groups.len(), 1, "the links to . are not walked");

        let sparse = in_dir.join("big.o");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let t = std::time::Instant::now();
        let e = collect_error(&sparse);
        assert!(e.contains("over the") && e.contains("refusing"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    fn run_on(files: &[(&str, &[u8])]) -> Vec<ObjectResult> {
        let dir = tempfile::tempdir().unwrap();
        for (n, b) in files {
            std::fs::write(dir.path().join(n), b).unwrap();
        }
        collect(&[dir.path().to_path_buf()])
            .unwrap()
            .iter()
            .flat_map(verify_group)
            .collect()
    }

    #[test]
    fn a_directory_of_empty_files() {
        let results = run_on(&[
            ("pkc_a.6.1.o", b""),
            ("rkc_a.6.1.o", b""),
            ("b.bpf.o", b""),
            ("b.skel.h", b""),
        ]);
        assert_eq!(results.len(), 3);
        for r in &results {
            assert!(!r.ok);
            assert!(
                r.errors[0].contains("section ELF header, byte 0: the file is empty"),
                "{:?}",
                r.errors
            );
            assert!(r.file.ends_with(".o"));
        }
    }

    #[test]
    fn cell_rules_pairs_and_skeletons() {
        let results = run_on(&[("rkc_mount.6.1.o", LEGACY), ("mount.bpf.o", CORE)]);
        let legacy = results
            .iter()
            .find(|r| r.file.ends_with("rkc_mount.6.1.o"))
            .unwrap();
        assert!(
            legacy
                .errors
                .iter()
                .any(|e| e.contains("pkc_mount.6.1.o is missing")),
            "{:?}",
            legacy.errors
        );
        let core = results
            .iter()
            .find(|r| r.file.ends_with("mount.bpf.o"))
            .unwrap();
        assert!(
            core.errors
                .iter()
                .any(|e| e.contains("no skeleton mount.skel.h")),
            "{:?}",
            core.errors
        );
        let fine = run_on(&[
            ("rkc_mount.6.1.o", LEGACY),
            ("pkc_mount.6.1.o", LEGACY),
            ("mount.bpf.o", CORE),
            ("mount.skel.h", b"/* */"),
        ]);
        assert!(
            fine.iter().all(|r| r.ok),
            "{:?}",
            fine.iter().map(|r| &r.errors).collect::<Vec<_>>()
        );
    }

    #[test]
    fn tarballs_are_read_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("cell.tar");
        crate::tarball::write(
            &tar,
            vec![
                crate::tarball::Entry {
                    name: "mount.bpf.o".into(),
                    bytes: CORE.to_vec(),
                    executable: false,
                },
                crate::tarball::Entry {
                    name: "mount.skel.h".into(),
                    bytes: b"x".to_vec(),
                    executable: false,
                },
            ],
            0,
        )
        .unwrap();
        let results: Vec<_> = collect(std::slice::from_ref(&tar))
            .unwrap()
            .iter()
            .flat_map(verify_group)
            .collect();
        assert_eq!(results.len(), 1);
        assert!(results[0].ok, "{:?}", results[0].errors);
        assert!(results[0].file.starts_with(&tar.display().to_string()));
    }

    #[test]
    fn loose_files_see_their_twins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pkc_mount.6.1.o"), LEGACY).unwrap();
        std::fs::write(dir.path().join("rkc_mount.6.1.o"), LEGACY).unwrap();
        let results: Vec<_> = collect(&[dir.path().join("rkc_mount.6.1.o")])
            .unwrap()
            .iter()
            .flat_map(verify_group)
            .collect();
        assert_eq!(results.len(), 1, "only the named file is reported");
        assert!(results[0].ok, "{:?}", results[0].errors);
    }
}
