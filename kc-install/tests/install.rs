//! The installer against a release served by a loopback HTTP server: good installs, a re-run,
//! and every way a download can be bad. The previous install must survive each refusal.

use std::io::Write;
use std::path::Path;

use kc_common::release::{self, Manifest, ManifestFile};
use kc_install::{install, Options, Outcome};
use kc_testsrv::{Route, TestServer};

struct Release {
    files: Vec<(String, Vec<u8>)>,
    pubkey: String,
}

fn tar_xz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&b.into_inner().unwrap()).unwrap();
    xz.finish().unwrap()
}

fn sign(kp: &minisign::KeyPair, tag: &str, name: &str, data: &[u8]) -> Vec<u8> {
    minisign::sign(
        Some(&kp.pk),
        &kp.sk,
        std::io::Cursor::new(data),
        Some(&release::trusted_comment(tag, name)),
        None,
    )
    .unwrap()
    .to_string()
    .into_bytes()
}

/// The amd64 glibc manifest of `tag` of `kind` (legacy: buckets 5.10 and 6.1), listing
/// `members`.
fn manifest_of(tag: &str, kind: &str, members: &[(&str, Vec<u8>)]) -> Manifest {
    Manifest {
        tag: tag.into(),
        arch: kc_common::Arch::Amd64,
        libc: kc_common::Libc::Glibc,
        kind: kind.into(),
        source_commit: "0".repeat(40),
        source_date_epoch: 0,
        toolchain: Default::default(),
        collectors: vec![release::ManifestCollector {
            name: "mount".into(),
            description: "mounts".into(),
            min_kernel: "5.10".into(),
        }],
        buckets: if kind == "legacy" {
            vec!["5.10".into(), "6.1".into()]
        } else {
            vec![]
        },
        files: members
            .iter()
            .map(|(n, b)| ManifestFile {
                name: n.to_string(),
                size: b.len() as u64,
                sha256: release::sha256_hex(b),
            })
            .collect(),
    }
}

/// A tarball of `kind` holding `members` and its manifest (first, as `package` writes it).
fn tarball_of(tag: &str, kind: &str, members: Vec<(&str, Vec<u8>)>) -> Vec<u8> {
    tarball_for(kc_common::Arch::Amd64, tag, kind, members)
}

/// [`tarball_of`] whose manifest names `arch`.
fn tarball_for(
    arch: kc_common::Arch,
    tag: &str,
    kind: &str,
    members: Vec<(&str, Vec<u8>)>,
) -> Vec<u8> {
    let m = Manifest {
        arch,
        ..manifest_of(tag, kind, &members)
    };
    let mut all = vec![("manifest.json", serde_json::to_vec(&m).unwrap())];
    all.extend(members);
    tar_xz(&all)
}

/// The release's kc-select (a file of its own).
fn select_tool(tag: &str) -> (String, Vec<u8>) {
    (
        release::select_tool_file(kc_common::Arch::Amd64, tag),
        b"\x7fELF kc-select".to_vec(),
    )
}

/// A release of `tag` whose legacy tarball holds `members` (plus its manifest), whose CO-RE
/// tarball holds [`core_members`], with its kc-select, signed by `kp`.
fn make_release(kp: &minisign::KeyPair, tag: &str, members: Vec<(&str, Vec<u8>)>) -> Release {
    signed_release(
        kp,
        tag,
        &[
            select_tool(tag),
            (
                release::legacy_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, tag),
                tarball_of(tag, "legacy", members),
            ),
            (
                release::core_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, tag),
                tarball_of(tag, "co-re", core_members()),
            ),
        ],
    )
}

/// A release of `tag` made of `tarballs` (name, bytes: any release file), signed by `kp`.
fn signed_release(kp: &minisign::KeyPair, tag: &str, tarballs: &[(String, Vec<u8>)]) -> Release {
    let sums = release::format_sums(
        &tarballs
            .iter()
            .map(|(n, b)| (n.clone(), release::sha256_hex(b)))
            .collect::<Vec<_>>(),
    )
    .into_bytes();
    let mut files = vec![
        (
            "sha256sums.txt.minisig".into(),
            sign(kp, tag, "sha256sums.txt", &sums),
        ),
        ("sha256sums.txt".into(), sums),
    ];
    for (name, tarball) in tarballs {
        files.push((format!("{name}.minisig"), sign(kp, tag, name, tarball)));
        files.push((name.clone(), tarball.clone()));
    }
    Release {
        files,
        pubkey: kp.pk.to_box().unwrap().to_string(),
    }
}

fn good_members() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("pkc_mount.6.1.o", b"p61".to_vec()),
        ("rkc_mount.6.1.o", b"r61".to_vec()),
        ("pkc_mount.5.10.o", b"p510".to_vec()),
        ("rkc_mount.5.10.o", b"r510".to_vec()),
        ("kc-loader", b"loader".to_vec()),
        ("kc-check-kernel.sh", b"#!/bin/sh\n".to_vec()),
    ]
}

fn core_members() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("mount.bpf.o", b"core".to_vec()),
        ("mount.skel.h", b"/* skeleton */".to_vec()),
        ("kc-loader", b"loader".to_vec()),
    ]
}

fn serve(r: &Release, tweak: impl Fn(&str, Vec<u8>) -> Route) -> TestServer {
    TestServer::start(
        r.files
            .iter()
            .map(|(n, b)| {
                (
                    Box::leak(format!("/rel/{n}").into_boxed_str()) as &str,
                    tweak(n, b.clone()),
                )
            })
            .collect(),
    )
}

fn options(srv: &TestServer, r: &Release, prefix: &Path, tag: &str) -> Options {
    Options {
        from: srv.url("/rel"),
        tag: tag.into(),
        pubkey: r.pubkey.clone(),
        prefix: prefix.to_path_buf(),
        libc: kc_common::Libc::Glibc,
        arch: kc_common::Arch::Amd64,
        kernel: "6.1.0-50-cloud-amd64".into(),
        only_bucket: false,
        keep: 2,
        limits: Default::default(),
    }
}

fn current(prefix: &Path) -> String {
    std::fs::read_link(prefix.join("current"))
        .unwrap()
        .display()
        .to_string()
}

/// A prefix with v0.9.0 installed, and the key that signs releases.
fn installed_prefix() -> (tempfile::TempDir, minisign::KeyPair) {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = make_release(&kp, "v0.9.0", good_members());
    let srv = serve(&old, |_, b| Route::ok(b));
    install(&options(&srv, &old, dir.path(), "v0.9.0")).unwrap();
    (dir, kp)
}

fn assert_untouched(prefix: &Path) {
    assert_eq!(current(prefix), "releases/v0.9.0-glibc");
    assert!(prefix
        .join("releases/v0.9.0-glibc/legacy/rkc_mount.6.1.o")
        .is_file());
    let names: Vec<String> = std::fs::read_dir(prefix.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["v0.9.0-glibc"],
        "no staging or partial release left behind"
    );
}

/// The objects the rule chooses on `kernel` from the installed release (BTF at `btf`).
fn chosen(prefix: &Path, kernel: &str, btf: &str) -> Vec<Option<String>> {
    kc_install::predict(&prefix.join("current"), kernel, Path::new(btf))
        .unwrap()
        .into_iter()
        .map(|s| s.object)
        .collect()
}

#[test]
fn installs_co_re_and_every_bucket_and_a_rerun_does_nothing() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, b| Route::ok(b));
    let out = install(&options(&srv, &r, dir.path(), "v1.0.0")).unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Installed {
                bucket: None,
                files: 12,
                ..
            }
        ),
        "{out:?}"
    );
    let d = dir.path().join("releases/v1.0.0-glibc");
    for (f, bytes) in [
        ("legacy/rkc_mount.6.1.o", &b"r61"[..]),
        ("legacy/pkc_mount.5.10.o", b"p510"),
        ("co-re/mount.bpf.o", b"core"),
        ("co-re/mount.skel.h", b"/* skeleton */"),
    ] {
        assert_eq!(std::fs::read(d.join(f)).unwrap(), bytes, "{f}");
    }
    for f in ["legacy/manifest.json", "co-re/manifest.json"] {
        assert!(d.join(f).is_file(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let tool = std::fs::metadata(d.join("kc-select")).unwrap();
    assert_eq!(
        tool.permissions().mode() & 0o777,
        0o755,
        "kc-select is installed executable"
    );
    assert_eq!(current(dir.path()), "releases/v1.0.0-glibc");
    let before = srv.requests().len();
    assert!(matches!(
        install(&options(&srv, &r, dir.path(), "v1.0.0")).unwrap(),
        Outcome::AlreadyInstalled(_)
    ));
    assert_eq!(srv.requests().len(), before, "a re-run downloads nothing");
}

/// Another kernel, of another bucket or without BTF, is served by what is installed: no
/// reinstall, no download; the rule picks its objects.
#[test]
fn a_kernel_upgrade_needs_no_reinstall() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, b| Route::ok(b));
    install(&options(&srv, &r, dir.path(), "v1.0.0")).unwrap();
    let before = srv.requests().len();
    let older_kernel = Options {
        kernel: "5.10.0-46-cloud-amd64".into(),
        ..options(&srv, &r, dir.path(), "v1.0.0")
    };
    assert!(matches!(
        install(&older_kernel).unwrap(),
        Outcome::AlreadyInstalled(_)
    ));
    assert_eq!(srv.requests().len(), before);
    let p = dir.path();
    assert_eq!(
        chosen(p, "5.10.0-46-cloud-amd64", "/nonexistent"),
        [Some("legacy/rkc_mount.5.10.o".into())]
    );
    assert_eq!(
        chosen(p, "6.12.1", "/nonexistent"),
        [Some("legacy/rkc_mount.6.1.o".into())]
    );
    assert_eq!(
        chosen(p, "6.12.1", kc_common::host::KERNEL_BTF),
        [Some("co-re/mount.bpf.o".into())]
    );
    assert_eq!(chosen(p, "5.4.0", "/nonexistent"), [None]);
}

/// `--only-bucket`: the kernel's bucket alone; a kernel upgrade to another bucket installs its
/// objects beside the current ones and `current` follows.
#[test]
fn only_bucket_keeps_the_kernels_bucket_and_an_upgrade_installs_beside_it() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, b| Route::ok(b));
    let lean = |kernel: &str| Options {
        kernel: kernel.into(),
        only_bucket: true,
        ..options(&srv, &r, dir.path(), "v1.0.0")
    };
    let out = install(&lean("6.1.0-50-cloud-amd64")).unwrap();
    assert!(
        matches!(&out, Outcome::Installed { bucket: Some(b), files: 6, .. } if b == "6.1"),
        "{out:?}"
    );
    let d = dir.path().join("releases/v1.0.0-glibc-6.1");
    assert_eq!(
        std::fs::read(d.join("legacy/rkc_mount.6.1.o")).unwrap(),
        b"r61"
    );
    assert!(!d.join("legacy/pkc_mount.5.10.o").exists() && !d.join("co-re").exists());
    assert!(
        requested(&srv).iter().all(|p| !p.contains("co-re")),
        "the CO-RE tarball is not downloaded"
    );
    // Even with BTF the lean install serves by the bucket: no CO-RE was installed.
    assert_eq!(
        chosen(dir.path(), "6.1.0", kc_common::host::KERNEL_BTF),
        [Some("legacy/rkc_mount.6.1.o".into())]
    );
    let out = install(&lean("5.10.0-46-cloud-amd64")).unwrap();
    assert!(
        matches!(&out, Outcome::Installed { bucket: Some(b), .. } if b == "5.10"),
        "{out:?}"
    );
    assert_eq!(current(dir.path()), "releases/v1.0.0-glibc-5.10");
    assert!(matches!(
        install(&lean("5.10.0-46-cloud-amd64")).unwrap(),
        Outcome::AlreadyInstalled(_)
    ));
    // And back: the 6.1 objects are still there, and current returns to them.
    install(&lean("6.1.0-50-cloud-amd64")).unwrap();
    assert_eq!(current(dir.path()), "releases/v1.0.0-glibc-6.1");
    // A lean install refuses a kernel older than every bucket.
    let e = format!("{:#}", install(&lean("4.19.0")).unwrap_err());
    assert!(e.contains("older than the oldest bucket"), "{e}");
}

fn requested(srv: &TestServer) -> Vec<String> {
    srv.requests().into_iter().map(|r| r.path).collect()
}

#[test]
fn a_local_directory_works_too() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = make_release(&kp, "v1.0.0", good_members());
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (n, b) in &r.files {
        std::fs::write(src.join(n), b).unwrap();
    }
    let o = Options {
        from: src.display().to_string(),
        tag: "v1.0.0".into(),
        pubkey: r.pubkey.clone(),
        prefix: dir.path().join("p"),
        libc: kc_common::Libc::Glibc,
        arch: kc_common::Arch::Amd64,
        kernel: "4.19.0".into(),
        only_bucket: false,
        keep: 2,
        limits: Default::default(),
    };
    // A kernel older than every bucket still gets the release: the next kernel may use it.
    assert!(matches!(
        install(&o).unwrap(),
        Outcome::Installed { bucket: None, .. }
    ));
    assert_eq!(
        chosen(&dir.path().join("p"), "4.19.0", "/nonexistent"),
        [None]
    );
}

/// A release without its CO-RE tarball, or with the two tarballs' manifests swapped, installs
/// nothing and says why.
#[test]
fn a_missing_or_mislabelled_co_re_tarball_is_refused() {
    let (prefix, kp) = installed_prefix();
    let legacy = (
        release::legacy_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, "v1.0.0"),
        tarball_of("v1.0.0", "legacy", good_members()),
    );
    let r = signed_release(&kp, "v1.0.0", &[legacy.clone(), select_tool("v1.0.0")]);
    let srv = serve(&r, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
    );
    assert!(
        e.contains("has no kernel-collector-co-re-glibc-v1.0.0.tar.xz")
            && e.contains("--only-bucket"),
        "{e}"
    );
    assert_untouched(prefix.path());
    let swapped = (
        release::core_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, "v1.0.0"),
        tarball_of("v1.0.0", "legacy", good_members()),
    );
    let r = signed_release(&kp, "v1.0.0", &[legacy, swapped, select_tool("v1.0.0")]);
    let srv = serve(&r, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
    );
    assert!(
        e.contains("its manifest is for v1.0.0 amd64 glibc legacy, not v1.0.0 amd64 glibc co-re"),
        "{e}"
    );
    assert_untouched(prefix.path());
}

/// An arm64 host is never handed a release's (amd64) objects: refused before anything is
/// fetched, the installed release left as it was.
#[test]
fn an_arm64_host_is_refused_amd64_objects() {
    let (prefix, kp) = installed_prefix();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, b| Route::ok(b));
    let o = Options {
        arch: kc_common::Arch::Arm64,
        kernel: "6.1.0-50-cloud-arm64".into(),
        ..options(&srv, &r, prefix.path(), "v1.0.0")
    };
    let e = format!("{:#}", install(&o).unwrap_err());
    assert!(
        e.contains("this host is arm64")
            && e.contains("carries objects for amd64 only")
            && e.contains("nothing was installed")
            && e.contains("kc-select-arm64-v1.0.0"),
        "{e}"
    );
    // The signed list of files tells: no object was fetched.
    assert_eq!(
        requested(&srv),
        ["/rel/sha256sums.txt", "/rel/sha256sums.txt.minisig"]
    );
    assert_untouched(prefix.path());
}

/// An arm64 release (its files named for arm64) whose tarballs' manifests are `manifest_arch`'s.
fn arm64_release(kp: &minisign::KeyPair, tag: &str, manifest_arch: kc_common::Arch) -> Release {
    let arm64 = kc_common::Arch::Arm64;
    signed_release(
        kp,
        tag,
        &[
            (
                release::select_tool_file(arm64, tag),
                b"\x7fELF kc-select".to_vec(),
            ),
            (
                release::legacy_tarball(arm64, kc_common::Libc::Glibc, tag),
                tarball_for(manifest_arch, tag, "legacy", good_members()),
            ),
            (
                release::core_tarball(arm64, kc_common::Libc::Glibc, tag),
                tarball_for(manifest_arch, tag, "co-re", core_members()),
            ),
        ],
    )
}

#[test]
fn an_arm64_host_installs_the_arm64_files_and_refuses_amd64_ones_under_arm64_names() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let arm64 = |srv: &TestServer, r: &Release, prefix: &Path| Options {
        arch: kc_common::Arch::Arm64,
        kernel: "6.1.0-50-cloud-arm64".into(),
        ..options(srv, r, prefix, "v1.0.0")
    };
    // amd64 objects signed under arm64's names: the manifests say what they are.
    let (prefix, _) = installed_prefix();
    let mislabelled = arm64_release(&kp, "v1.0.0", kc_common::Arch::Amd64);
    let srv = serve(&mislabelled, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&arm64(&srv, &mislabelled, prefix.path())).unwrap_err()
    );
    assert!(
        e.contains("manifest is for v1.0.0 amd64 glibc") && e.contains("not v1.0.0 arm64 glibc"),
        "{e}"
    );
    assert_untouched(prefix.path());
    // The real thing installs.
    let dir = tempfile::tempdir().unwrap();
    let good = arm64_release(&kp, "v1.0.0", kc_common::Arch::Arm64);
    let srv = serve(&good, |_, b| Route::ok(b));
    install(&arm64(&srv, &good, dir.path())).unwrap();
    assert!(dir
        .path()
        .join("releases/v1.0.0-glibc/legacy/rkc_mount.6.1.o")
        .is_file());
    assert!(requested(&srv)
        .iter()
        .any(|p| p.ends_with("kernel-collector-co-re-arm64-glibc-v1.0.0.tar.xz")));
}

#[test]
fn a_tampered_tarball_is_refused() {
    let (prefix, kp) = installed_prefix();
    let r = make_release(&kp, "v1.0.0", good_members());
    for which in [
        "kernel-collector-glibc-v1.0.0.tar.xz",
        "kernel-collector-co-re-glibc-v1.0.0.tar.xz",
    ] {
        let srv = serve(&r, |n, mut b| {
            if n == which {
                let mid = b.len() / 2;
                b[mid] ^= 0x55;
            }
            Route::ok(b)
        });
        let e = format!(
            "{:#}",
            install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
        );
        assert!(e.contains("SHA256 mismatch") && e.contains(which), "{e}");
        // The CO-RE tarball comes second: the legacy one was extracted, and is gone again.
        assert_untouched(prefix.path());
    }
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (prefix, kp) = installed_prefix();
    let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let mut r = make_release(&other, "v1.0.0", good_members());
    r.pubkey = kp.pk.to_box().unwrap().to_string(); // the pinned key is still ours
    let srv = serve(&r, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
    );
    assert!(e.contains("signature check failed"), "{e}");
    assert_untouched(prefix.path());
}

#[test]
fn a_tar_slip_member_is_refused() {
    let (prefix, kp) = installed_prefix();
    let mut members = good_members();
    members.push(("../../escaped", b"x".to_vec()));
    let r = make_release(&kp, "v1.0.0", members);
    let srv = serve(&r, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
    );
    // Refused by the manifest check, before extraction (whose own guard kc-common tests).
    assert!(
        e.contains("\"../../escaped\" is not a plain relative path"),
        "{e}"
    );
    assert_untouched(prefix.path());
    assert!(!prefix.path().parent().unwrap().join("escaped").exists());
}

#[test]
fn an_interrupted_download_is_refused() {
    let (prefix, kp) = installed_prefix();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |n, b| {
        if n.ends_with(".tar.xz") {
            Route::ok(b).cut_always_after(100)
        } else {
            Route::ok(b)
        }
    });
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, prefix.path(), "v1.0.0")).unwrap_err()
    );
    assert!(
        e.contains("cut") && e.contains("previous install is untouched"),
        "{e}"
    );
    assert_untouched(prefix.path());
}

/// Two installs of the same tag at once: one installs, the other waits for the prefix lock
/// and finds it done; `current` always points at a complete release.
#[test]
fn two_installs_at_once_leave_a_complete_current() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, b| Route::ok(b));
    let o = options(&srv, &r, dir.path(), "v1.0.0");
    for _ in 0..3 {
        let outcomes: Vec<Outcome> = std::thread::scope(|s| {
            let a = s.spawn(|| install(&o).unwrap());
            let b = s.spawn(|| install(&o).unwrap());
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        assert!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Installed { .. }))
                .count()
                <= 1,
            "{outcomes:?}"
        );
        let cur = dir.path().join(current(dir.path()));
        assert!(cur.join(".complete").is_file() && cur.join("legacy/rkc_mount.6.1.o").is_file());
    }
}

/// A killed run's staging directory is removed by the next run; old releases beyond
/// `keep` go, the current one never.
#[test]
fn leftovers_are_cleaned_and_old_releases_pruned() {
    let (dir, kp) = installed_prefix();
    let staging = dir.path().join("releases/.staging-killed");
    std::fs::create_dir_all(staging.join("half")).unwrap();
    for tag in ["v1.0.0", "v1.1.0"] {
        let r = make_release(&kp, tag, good_members());
        let srv = serve(&r, |_, b| Route::ok(b));
        let o = Options {
            keep: 2,
            limits: Default::default(),
            ..options(&srv, &r, dir.path(), tag)
        };
        install(&o).unwrap();
        assert!(!staging.exists(), "the leftover staging directory is gone");
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["v1.0.0-glibc", "v1.1.0-glibc"], "v0.9.0 was pruned");
    assert_eq!(current(dir.path()), "releases/v1.1.0-glibc");
}

/// Limits that make the hostile-server tests quick.
fn impatient() -> kc_install::download::Limits {
    kc_install::download::Limits {
        deadline: std::time::Duration::from_secs(20),
        low_speed: 100,
        low_speed_window: std::time::Duration::from_secs(2),
        connect: std::time::Duration::from_secs(5),
    }
}

/// Installs v1.0.0 over the v0.9.0 prefix from a server whose `file` answers with `route`
/// (the others are served as they are); returns the refusal, after checking that the previous
/// install is untouched.
fn refusal(file: &str, route: impl Fn(Vec<u8>) -> Route) -> String {
    let (dir, kp) = installed_prefix();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |n, b| if n == file { route(b) } else { Route::ok(b) });
    let o = Options {
        limits: impatient(),
        ..options(&srv, &r, dir.path(), "v1.0.0")
    };
    let e = format!("{:#}", install(&o).unwrap_err());
    assert_untouched(dir.path());
    e
}

/// A server that trickles the tarball is given up on by rate, not after its whole body.
#[test]
fn a_trickling_server_is_given_up_on() {
    let t = std::time::Instant::now();
    let tarball = release::legacy_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, "v1.0.0");
    let e = refusal(&tarball, |b| {
        Route::ok(b).trickle(std::time::Duration::from_millis(100))
    });
    assert!(e.contains("bytes/s") && e.contains("giving up"), "{e}");
    let took = t.elapsed();
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
}

/// A server that accepts and never answers costs the file's deadline once, not once per retry.
#[test]
fn a_silent_server_costs_one_deadline() {
    let t = std::time::Instant::now();
    let (dir, kp) = installed_prefix();
    let r = make_release(&kp, "v1.0.0", good_members());
    let srv = serve(&r, |_, _| Route::silent(std::time::Duration::from_secs(30)));
    let o = Options {
        limits: kc_install::download::Limits {
            deadline: std::time::Duration::from_secs(2),
            ..impatient()
        },
        ..options(&srv, &r, dir.path(), "v1.0.0")
    };
    let e = format!("{:#}", install(&o).unwrap_err());
    assert!(
        e.contains("no answer within 2 s: the server is silent"),
        "{e}"
    );
    assert_untouched(dir.path());
    let asked = srv.requests().len();
    assert_eq!(asked, 1, "a silent server is not asked again");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}

/// An HTML page where a file should be, and a redirect loop, are named as such.
#[test]
fn an_html_page_and_a_redirect_loop_say_so() {
    let page = b"<!DOCTYPE html><html><body>Sign in</body></html>".to_vec();
    let e = refusal("sha256sums.txt", |_| Route::ok(page.clone()));
    assert!(e.contains("HTML page instead of sha256sums.txt"), "{e}");
    let e = refusal("sha256sums.txt", |_| Route::redirect("/rel/sha256sums.txt"));
    assert!(e.contains("redirect loop"), "{e}");
}

/// A body larger than any release file is cut off at the cap and refused, not read whole.
#[test]
fn an_oversized_signature_is_refused() {
    let cap = kc_install::download::SMALL_FILE_CAP as usize;
    let e = refusal("sha256sums.txt.minisig", |_| Route::ok(vec![b'x'; cap + 1]));
    assert!(
        e.contains("refusing it") && e.contains("sha256sums.txt.minisig"),
        "{e}"
    );
}

/// A signed tarball (the signer's key, so every signature holds) whose manifest declares a
/// 3-byte member that inflates to 2 GiB is refused at that member's header, before a byte of it
/// is decompressed; the previous install is untouched.
#[test]
fn a_decompression_bomb_is_refused_at_its_header() {
    let (dir, kp) = installed_prefix();
    let manifest = Manifest {
        files: vec![ManifestFile {
            name: "rkc_mount.6.1.o".into(),
            size: 3,
            sha256: release::sha256_hex(b"r61"),
        }],
        ..manifest_of("v1.0.0", "legacy", &[])
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut tar = Vec::new();
    for (name, size) in [
        ("manifest.json", json.len() as u64),
        ("rkc_mount.6.1.o", 2 << 30),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        if name == "manifest.json" {
            tar.extend_from_slice(&json);
            tar.resize(tar.len().next_multiple_of(512), 0);
        }
    }
    // The bomb's first MiB of zeros: the refusal must come before it matters.
    tar.resize(tar.len() + (1 << 20), 0);
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tar).unwrap();
    let r = signed_release(
        &kp,
        "v1.0.0",
        &[
            (
                release::legacy_tarball(kc_common::Arch::Amd64, kc_common::Libc::Glibc, "v1.0.0"),
                xz.finish().unwrap(),
            ),
            select_tool("v1.0.0"),
        ],
    );
    let srv = serve(&r, |_, b| Route::ok(b));
    let e = format!(
        "{:#}",
        install(&options(&srv, &r, dir.path(), "v1.0.0")).unwrap_err()
    );
    assert!(
        e.contains("member rkc_mount.6.1.o is 2147483648 bytes but its manifest declares 3"),
        "{e}"
    );
    assert_untouched(dir.path());
}
