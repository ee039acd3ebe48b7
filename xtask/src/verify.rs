//! `cargo xtask verify`: every object's ELF, BTF and BTF.ext checked (kc-verify), plus what
//! holds across a cell: `p`/`r` pairs of legacy objects, a skeleton beside each CO-RE object.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::plan::{AttachPlan, PLAN_FILE};
use kc_common::report::GroupBy;
use kc_common::AttachFamily;
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

/// The attach plan of the objects among `files` (name, bytes), as a release ships it.
pub fn attach_plan<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<AttachPlan> {
    let objects = files
        .into_iter()
        .filter(|(n, _)| n.ends_with(".o"))
        .map(|(n, b)| {
            kc_verify::plan::plan_of(n, &kc_verify::verify(n, b)).map_err(anyhow::Error::msg)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AttachPlan {
        order: AttachFamily::ALL.to_vec(),
        group_by: GroupBy::ALL.iter().map(|g| (*g, g.value())).collect(),
        objects,
    })
}

/// A group's attach plan, if it ships one: None without; `Err` says why it cannot be read.
fn group_plan(g: &Group) -> Option<std::result::Result<AttachPlan, String>> {
    let (_, bytes) = g.files.iter().find(|(n, _)| n == PLAN_FILE)?;
    Some(
        serde_json::from_slice(bytes)
            .map_err(|e| format!("{PLAN_FILE} is not an attach plan: {e}")),
    )
}

/// Where a group's plan and its objects disagree, beyond each object's own check: objects
/// the plan names that the group lacks, the families' order, the ctrl values.
fn plan_problems(plan: &AttachPlan, names: &BTreeSet<&str>) -> Vec<String> {
    let mut wrong: Vec<String> = plan
        .objects
        .iter()
        .filter(|o| !names.contains(o.object.as_str()))
        .map(|o| format!("the plan names object {}, which is not here", o.object))
        .collect();
    if plan.order != AttachFamily::ALL {
        wrong.push(format!(
            "the plan's family order {:?} is not auto's {:?}",
            plan.order,
            AttachFamily::ALL
        ));
    }
    if GroupBy::ALL
        .iter()
        .any(|g| plan.group_by.get(g) != Some(&g.value()))
        || plan.group_by.len() != GroupBy::ALL.len()
    {
        wrong.push(format!(
            "the plan's group_by values {:?} are not enum kc_group_by's",
            plan.group_by
        ));
    }
    wrong
}

/// Verifies the objects of a group and the rules that span it.
pub fn verify_group(g: &Group) -> Vec<ObjectResult> {
    let names: BTreeSet<&str> = g.files.iter().map(|(n, _)| n.as_str()).collect();
    let plan = group_plan(g);
    let mut out = Vec::new();
    let plan_errors = match &plan {
        Some(Ok(p)) => plan_problems(p, &names),
        Some(Err(e)) => vec![e.clone()],
        None => Vec::new(),
    };
    if !plan_errors.is_empty() {
        out.push(ObjectResult {
            file: format!("{}/{PLAN_FILE}", g.origin),
            kind: ObjectKind::Other,
            ok: false,
            report: Report::default(),
            errors: plan_errors,
        });
    }
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
        if let Some(Ok(plan)) = &plan {
            match plan.object(name) {
                Some(p) => errors.extend(
                    kc_verify::plan::check(p, name, &report)
                        .into_iter()
                        .map(|w| format!("{PLAN_FILE}: {w}")),
                ),
                None => errors.push(format!("{PLAN_FILE} has no plan for it")),
            }
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
        if !name.starts_with('.')
            && (name.ends_with(".o") || name.ends_with(".skel.h") || name == PLAN_FILE)
        {
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

    fn with_plan(plan: &[u8]) -> Group {
        Group {
            origin: "release".into(),
            files: vec![
                ("mount.bpf.o".into(), CORE.to_vec()),
                ("mount.skel.h".into(), b"/* skeleton */".to_vec()),
                (PLAN_FILE.into(), plan.to_vec()),
            ],
            only: None,
        }
    }

    fn errors(g: &Group) -> Vec<String> {
        verify_group(g).into_iter().flat_map(|r| r.errors).collect()
    }

    #[test]
    fn a_shipped_plan_is_held_to_its_objects() {
        let plan = attach_plan([("mount.bpf.o", CORE)]).unwrap();
        let good = serde_json::to_vec(&plan).unwrap();
        assert!(
            errors(&with_plan(&good)).is_empty(),
            "{:?}",
            errors(&with_plan(&good))
        );

        let mut renamed = plan.clone();
        let program = &mut renamed.objects[0].events[0]
            .families
            .values_mut()
            .next()
            .unwrap()[0]
            .alternatives[0]
            .program;
        *program = format!("{program}_renamed");
        let wrong = errors(&with_plan(&serde_json::to_vec(&renamed).unwrap()));
        assert!(
            wrong.iter().any(
                |w| w.starts_with("attach-plan.json: the plan names program ")
                    && w.ends_with("_renamed, which the object lacks")
            ),
            "{wrong:?}"
        );

        let mut elsewhere = plan.clone();
        let mut other = elsewhere.objects[0].clone();
        other.object = "vfs.bpf.o".into();
        elsewhere.objects.push(other);
        elsewhere.order.reverse();
        let wrong = errors(&with_plan(&serde_json::to_vec(&elsewhere).unwrap()));
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert_eq!(
            wrong[0],
            "the plan names object vfs.bpf.o, which is not here"
        );
        assert!(wrong[1].starts_with("the plan's family order"), "{wrong:?}");

        let mut without = plan;
        without.objects.clear();
        assert_eq!(
            errors(&with_plan(&serde_json::to_vec(&without).unwrap())),
            ["attach-plan.json has no plan for it"]
        );
        let wrong = errors(&with_plan(b"{\"order\": 1}"));
        assert!(
            wrong[0].starts_with("attach-plan.json is not an attach plan"),
            "{wrong:?}"
        );
    }

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
