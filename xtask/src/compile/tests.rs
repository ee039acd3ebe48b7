//! The build against the real toolchain (and, for legacy cells, the mirror's headers).

use std::fs;
use std::path::{Path, PathBuf};

use super::job::with_skipped_dir_hint;
use super::plan::{pch_layer, PCH_BASE, PCH_NET};
use super::*;
use crate::paths;
use kc_common::names;

/// A scratch copy of the checkout's sources with only some collectors.
pub(crate) fn scratch_project(collectors: &[&str]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let real = paths::project_root();
    for sub in ["includes", "co-re", "kernel"] {
        copy_dir(&real.join(sub), &root.join(sub));
    }
    let all = fs::read_to_string(real.join("collectors.toml")).unwrap();
    let kept: Vec<&str> = all
        .split("[[collector]]")
        .filter(|s| {
            collectors
                .iter()
                .any(|c| s.contains(&format!("name = \"{c}\"")))
        })
        .collect();
    fs::write(
        root.join("collectors.toml"),
        format!("[[collector]]{}", kept.join("[[collector]]")),
    )
    .unwrap();
    let project = Project {
        artifacts: dir.path().join("artifacts"),
        work: dir.path().join("work"),
        kernel_cache: paths::cache_dir(),
        root,
    };
    (dir, project)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// After a failed build, the CO-RE cell's previous tarball and files are still there.
pub(crate) fn assert_core_cell_kept(p: &Project, tarball_before: &[u8]) {
    let tar = p.artifacts.join("kc-ebpf-co-re-glibc.tar");
    assert_eq!(
        fs::read(&tar).unwrap(),
        tarball_before,
        "the previous tarball is intact"
    );
    assert!(p
        .artifacts
        .join("cells/kc-ebpf-co-re-glibc/process.bpf.o")
        .is_file());
}

/// Makes the mount collector fail to compile (`undeclared_thing`).
pub(crate) fn break_mount_collector(root: &Path) {
    let body = root.join("includes/collectors/mount.bpf.h");
    let text = fs::read_to_string(&body).unwrap();
    let broken = text.replace(
        "kc_mount_count(KC_MOUNT_MOUNT, 1)",
        "kc_mount_count(KC_MOUNT_MOUNT, undeclared_thing)",
    );
    assert_ne!(
        broken, text,
        "the mount collector changed: update this test helper"
    );
    fs::write(&body, broken).unwrap();
}

pub(crate) fn core_only() -> BuildOptions {
    BuildOptions {
        backend: Some(Backend::Host),
        libc: None,
        buckets: vec![],
        all: false,
        core: true,
        debug: false,
        arch: kc_common::Arch::Amd64,
        jobs: Some(2),
        json: false,
    }
}

#[test]
fn a_header_of_a_skipped_dir_gets_a_hint() {
    let e =
        "clang failed (exit status: 1):\nx.c:3:10: fatal error: 'scsi/scsi_cmnd.h' file not found";
    assert!(with_skipped_dir_hint(e).contains("SKIPPED_INCLUDE_DIRS"));
    let other = "x.c:3:10: fatal error: 'linux/nope.h' file not found";
    assert_eq!(with_skipped_dir_hint(other), other);
}

#[test]
fn the_pch_layer_follows_the_sources_includes() {
    assert_eq!(pch_layer(b"#include \"kc_legacy.h\"\n"), PCH_BASE);
    assert_eq!(
        pch_layer(b"#include \"kc_legacy_net.h\"\n#include \"kc_legacy.h\"\n"),
        PCH_NET
    );
    assert_eq!(pch_layer(b"// #include \"kc_legacy_net.h\"\n"), PCH_BASE);
    // The real socket collector asks for the net layer, the others do not.
    let root = paths::project_root();
    for c in collectors::load_from(&root).unwrap() {
        let src = fs::read(root.join(format!("kernel/{}_kern.c", c.name))).unwrap();
        let want = if c.name == "socket" {
            PCH_NET
        } else {
            PCH_BASE
        };
        assert_eq!(pch_layer(&src), want, "{}", c.name);
    }
}

/// A scratch project of `collectors`, built once for the lock's first bucket (legacy objects
/// only): what a test then breaks and rebuilds, and the tarball a failed rebuild must keep.
struct BuiltBucket {
    _dir: tempfile::TempDir,
    p: Project,
    bucket: kc_common::Bucket,
    opts: BuildOptions,
    tar: PathBuf,
    before: Vec<u8>,
}

fn built_first_bucket(collectors: &[&str]) -> BuiltBucket {
    let (_dir, p) = scratch_project(collectors);
    let (_, lock) = kernels::load_checked_lock().unwrap();
    let bucket = lock.buckets()[0];
    let opts = BuildOptions {
        buckets: vec![bucket],
        core: false,
        ..core_only()
    };
    build(&p, &opts).unwrap();
    let tar = p.artifacts.join(format!("kc-ebpf-{bucket}-glibc.tar"));
    let before = fs::read(&tar).unwrap();
    BuiltBucket {
        _dir,
        p,
        bucket,
        opts,
        tar,
        before,
    }
}

/// A header layer that fails to precompile fails exactly the collectors that use it, by
/// name and with clang's message; the cell keeps its previous artifacts.
#[test]
fn a_broken_header_layer_fails_only_its_collectors_needs_toolchain_and_mirror() {
    if !toolchain_or_skip(
        "a_broken_header_layer_fails_only_its_collectors_needs_toolchain_and_mirror",
    ) {
        return;
    }
    let BuiltBucket {
        _dir,
        p,
        opts,
        tar,
        before,
        ..
    } = built_first_bucket(&["process", "socket"]);
    let net = p.root.join("includes/kc_legacy_net.h");
    let text = fs::read_to_string(&net).unwrap();
    fs::write(
        &net,
        text.replace("#include <net/sock.h>", "#include <net/no_such_header.h>"),
    )
    .unwrap();
    let r = build(&p, &opts).unwrap();
    assert_eq!(r.failures.len(), 2, "socket p and r fail: {:?}", r.failures);
    assert!(
        r.failures.iter().all(|f| f.contains(": socket: ")
            && f.contains("kc_legacy_net.pch")
            && f.contains("no_such_header.h")),
        "{:?}",
        r.failures
    );
    assert_eq!(
        fs::read(&tar).unwrap(),
        before,
        "the previous tarball is intact"
    );
}

fn toolchain_or_skip(test: &str) -> bool {
    Toolchain::detect_or_skip(test).is_some()
}

#[test]
fn core_build_is_cached_and_reproducible_needs_toolchain() {
    if !toolchain_or_skip("core_build_is_cached_and_reproducible_needs_toolchain") {
        return;
    }
    let (_a, p1) = scratch_project(&["process", "mount"]);
    let r = build(&p1, &core_only()).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.compiled, 3, "two collectors and the loader");
    let cell = &r.cells[0];
    assert_eq!(
        cell.files,
        [
            "build-info.json",
            "kc-loader",
            "kc_collectors.h",
            "kc_common.h",
            "mount.bpf.o",
            "mount.skel.h",
            "process.bpf.o",
            "process.skel.h"
        ]
    );
    let again = build(&p1, &core_only()).unwrap();
    assert_eq!(
        (again.compiled, again.cached),
        (0, 3),
        "unchanged inputs compile nothing"
    );
    // Another checkout in another place gives the same objects, byte for byte.
    let (_b, p2) = scratch_project(&["process", "mount"]);
    build(&p2, &core_only()).unwrap();
    for f in ["process.bpf.o", "mount.skel.h"] {
        let a = fs::read(p1.artifacts.join("cells/kc-ebpf-co-re-glibc").join(f)).unwrap();
        let b = fs::read(p2.artifacts.join("cells/kc-ebpf-co-re-glibc").join(f)).unwrap();
        assert!(a == b, "{f} differs between two checkouts");
    }
}

#[test]
fn a_broken_collector_fails_by_name_and_keeps_previous_artifacts_needs_toolchain() {
    if !toolchain_or_skip(
        "a_broken_collector_fails_by_name_and_keeps_previous_artifacts_needs_toolchain",
    ) {
        return;
    }
    let (_d, p) = scratch_project(&["process", "mount"]);
    build(&p, &core_only()).unwrap();
    let tar = p.artifacts.join("kc-ebpf-co-re-glibc.tar");
    let before = fs::read(&tar).unwrap();
    break_mount_collector(&p.root);
    let r = build(&p, &core_only()).unwrap();
    assert_eq!(r.failures.len(), 1, "only mount fails: {:?}", r.failures);
    let msg = r
        .failures
        .iter()
        .find(|f| f.contains(": mount: "))
        .expect("the failure names the collector");
    assert!(
        msg.contains("undeclared_thing") && msg.contains("clang failed"),
        "{msg}"
    );
    assert!(!r.cells[0].ok);
    assert_core_cell_kept(&p, &before);
}

/// A header tree unpacked again (same bytes, new mtimes) keeps the cached precompiled headers
/// usable: a later compile that loads them succeeds instead of clang's "has been modified
/// since the precompiled header was built".
#[test]
fn a_header_tree_with_new_mtimes_keeps_its_cached_pch_needs_toolchain_and_mirror() {
    if !toolchain_or_skip(
        "a_header_tree_with_new_mtimes_keeps_its_cached_pch_needs_toolchain_and_mirror",
    ) {
        return;
    }
    let (d, mut p) = scratch_project(&["process"]);
    // Its own header trees (their mtimes are changed below), from the shared cache's debs.
    let shared_debs = p.kernel_cache.join("debs");
    p.kernel_cache = d.path().join("cache");
    let (_, lock) = kernels::load_checked_lock().unwrap();
    let bucket = lock.buckets()[0];
    let k = lock.kernel(bucket).unwrap();
    fs::create_dir_all(p.kernel_cache.join("debs")).unwrap();
    for pkg in &k.package {
        let name = format!("{}.deb", pkg.sha256);
        let _ = fs::copy(
            shared_debs.join(&name),
            p.kernel_cache.join("debs").join(&name),
        );
    }
    let opts = BuildOptions {
        buckets: vec![bucket],
        core: false,
        ..core_only()
    };
    let r = build(&p, &opts).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    // What a second unpack of the same packages changes: every header's mtime.
    let tree = kernels::fetch::Fetcher::new(p.kernel_cache.clone())
        .headers(k)
        .unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for dir in [&tree.common_dir, &tree.flavour_dir] {
        touch_tree(dir, later);
    }
    let src = p.root.join("kernel/process_kern.c");
    let text = fs::read_to_string(&src).unwrap();
    fs::write(&src, format!("{text}\n/* changed: compile again */\n")).unwrap();
    let r = build(&p, &opts).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.compiled, 2, "p and r compiled again, the PCH reused");
}

fn touch_tree(dir: &Path, when: std::time::SystemTime) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            touch_tree(&e.path(), when);
        } else if ty.is_file() {
            fs::File::options()
                .write(true)
                .open(e.path())
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }
}

/// An arm64 bucket's objects are compiled against arm64's headers: their `struct pt_regs`
/// (what every probe program reads its arguments from) is arm64's, in a cell named for arm64;
/// the amd64 cell of the same bucket keeps x86's.
#[test]
fn arm64_cells_read_arm64_registers_needs_toolchain_and_mirror() {
    if !toolchain_or_skip("arm64_cells_read_arm64_registers_needs_toolchain_and_mirror") {
        return;
    }
    // mount: its p objects have kprobes (on the syscalls), whose programs read pt_regs.
    let (_d, p) = scratch_project(&["mount"]);
    let (_, lock) = kernels::load_checked_lock().unwrap();
    let bucket = lock.kernels(Arch::Arm64)[0].series;
    let bpftool = Toolchain::detect().unwrap().bpftool;
    for (arch, cell, register) in [
        (Arch::Amd64, format!("kc-ebpf-{bucket}-glibc"), "'r15'"),
        (
            Arch::Arm64,
            format!("kc-ebpf-{bucket}-arm64-glibc"),
            "'orig_x0'",
        ),
    ] {
        let opts = BuildOptions {
            buckets: vec![bucket],
            core: false,
            arch,
            ..core_only()
        };
        let r = build(&p, &opts).unwrap();
        assert!(r.failures.is_empty(), "{arch}: {:?}", r.failures);
        let object = p
            .artifacts
            .join("cells")
            .join(&cell)
            .join(names::legacy_object("mount", bucket, false));
        let sh = crate::process::shell();
        let btf =
            crate::process::read(xshell::cmd!(sh, "{bpftool} btf dump file {object}")).unwrap();
        let pt_regs = btf
            .split("\n[")
            .find(|t| t.contains("STRUCT 'pt_regs'"))
            .unwrap_or_else(|| panic!("{arch}: no struct pt_regs in {}", object.display()));
        assert!(pt_regs.contains(register), "{arch}: {pt_regs}");
    }
}

/// arm64's CO-RE cell: every collector against arm64's vmlinux.h (its `struct pt_regs` in the
/// objects' BTF), objects, skeletons, and a loader cross-compiled for arm64.
#[test]
fn arm64_core_cell_is_built_against_arm64_types_needs_toolchain() {
    if !toolchain_or_skip("arm64_core_cell_is_built_against_arm64_types_needs_toolchain") {
        return;
    }
    let (_d, p) = scratch_project(&["process"]);
    let opts = BuildOptions {
        arch: Arch::Arm64,
        ..core_only()
    };
    let r = build(&p, &opts).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let cell = p.artifacts.join("cells/kc-ebpf-co-re-arm64-glibc");
    assert!(cell.join("process.skel.h").is_file());
    let loader = std::fs::read(cell.join("kc-loader")).unwrap();
    assert_eq!(
        crate::host::executable_arch(&loader),
        Ok(Arch::Arm64),
        "an arm64 loader"
    );
    let bpftool = Toolchain::detect().unwrap().bpftool;
    let object = cell.join(names::core_object("process"));
    let sh = crate::process::shell();
    let btf = crate::process::read(xshell::cmd!(sh, "{bpftool} btf dump file {object}")).unwrap();
    assert!(btf.contains("STRUCT 'user_pt_regs'"), "arm64's registers");
    assert!(!btf.contains("'r15'"), "no x86 register");
}

/// A collector whose bitcode the BPF backend refuses (a call with six arguments) fails by
/// name with the backend's reason, when its bitcode is lowered with the others'; the other
/// collectors of the bucket are built, and the cell keeps its previous artifacts.
#[test]
fn a_collector_the_bpf_backend_refuses_fails_by_name_needs_toolchain_and_mirror() {
    if !toolchain_or_skip(
        "a_collector_the_bpf_backend_refuses_fails_by_name_needs_toolchain_and_mirror",
    ) {
        return;
    }
    let BuiltBucket {
        _dir,
        p,
        bucket,
        opts,
        tar,
        before,
    } = built_first_bucket(&["process", "mount"]);
    let src = p.root.join("kernel/mount_kern.c");
    let mut text = fs::read_to_string(&src).unwrap();
    // Not static, and fed from the context, so that no pass removes or folds the arguments.
    text.push_str(
        "noinline int kc_six(long a, long b, long c, long d, long e, long f)\n\
         { return a + b + c + d + e + f; }\n\
         SEC(\"kprobe/kc_refused\") int kc_refused(struct pt_regs *ctx)\n\
         { long x = (long)ctx; return kc_six(x, x + 1, x + 2, x + 3, x + 4, x + 5); }\n",
    );
    fs::write(&src, text).unwrap();
    // Every object rebuilt (a shared header changed), on one worker: all four modules are
    // lowered by one helper, which goes on past the refused ones.
    let shared = p.root.join("includes/kc_legacy.h");
    let mut header = fs::read_to_string(&shared).unwrap();
    header.push_str("/* changed */\n");
    fs::write(&shared, header).unwrap();
    let one_worker = BuildOptions {
        jobs: Some(1),
        ..opts
    };
    let r = build(&p, &one_worker).unwrap();
    assert_eq!(r.failures.len(), 2, "mount p and r fail: {:?}", r.failures);
    assert!(
        r.failures.iter().all(|f| f.starts_with(&format!(
            "kc-ebpf-{bucket}-glibc: mount: lowering to BPF failed: "
        )) && f.contains("too many args")
            && f.lines().count() == 1),
        "{:?}",
        r.failures
    );
    assert_eq!(r.compiled, 2, "process p and r were built: {r:?}");
    assert_eq!(
        fs::read(&tar).unwrap(),
        before,
        "the previous tarball is intact"
    );
}
