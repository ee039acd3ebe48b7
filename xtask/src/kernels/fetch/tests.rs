/// `kc-tree.json` holds paths relative to its tree, so a cache copied elsewhere works
/// there; an older cache's absolute paths are read as they are.
#[test]
fn a_stored_tree_follows_its_cache() {
    let old = Path::new("/old/cache/headers/x");
    let tree = HeaderTree {
        series: "6.1".into(),
        arch: kc_common::Arch::Amd64,
        release: "r".into(),
        kernel_version: "6.1.1".into(),
        flavour_dir: old.join("usr/src/linux-headers-r"),
        common_dir: old.join("usr/src/linux-headers-common"),
        patches: vec![],
    };
    let stored = tree.relative_to(old);
    assert_eq!(stored.flavour_dir, Path::new("usr/src/linux-headers-r"));
    let new = Path::new("/new/place/headers/x");
    let moved = stored.placed_in(new);
    assert_eq!(moved.common_dir, new.join("usr/src/linux-headers-common"));
    assert_eq!(tree.placed_in(new).flavour_dir, tree.flavour_dir);
}

use super::*;
use crate::debian::deb::build_deb;
use crate::download::sha256_bytes;
use kc_testsrv::{Route, TestServer};
use std::io::Write;

const RELEASE: &str = "1.0.0-1-cloud-amd64";

fn data_tar_xz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // As dpkg-deb writes them: the shared parents come as directory members of both
    // packages, which unpack at the same time.
    for dir in ["./", "./usr/", "./usr/src/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(dir).unwrap();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    for (name, data) in files {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&b.into_inner().unwrap()).unwrap();
    xz.finish().unwrap()
}

fn deb(files: &[(&str, &[u8])]) -> Vec<u8> {
    build_deb(&[
        ("debian-binary", b"2.0\n"),
        ("data.tar.xz", &data_tar_xz(files)),
    ])
}

fn headers_deb() -> Vec<u8> {
    deb(&[
        (
            "./usr/src/linux-headers-1.0.0-1-cloud-amd64/include/generated/autoconf.h",
            b"#define CONFIG_BPF 1\n",
        ),
        ("./lib/modules/1.0.0-1-cloud-amd64/ignored", b"x"),
    ])
}

fn common_deb() -> Vec<u8> {
    deb(&[(
        "./usr/src/linux-headers-1.0.0-1-common/include/linux/sched.h",
        b"struct task_struct;\nint a;\nint b;\n",
    )])
}

fn pkg(role: Role, name: &str, bytes: &[u8]) -> LockedPackage {
    LockedPackage {
        role,
        name: name.into(),
        version: "1.0.0-1".into(),
        filename: format!("pool/{name}.deb"),
        size: bytes.len() as u64,
        sha256: sha256_bytes(bytes),
    }
}

fn kernel(h: &[u8], c: &[u8]) -> LockedKernel {
    LockedKernel {
        series: "1.0".parse().unwrap(),
        arch: kc_common::Arch::Amd64,
        bucket: true,
        suite: "test".into(),
        abi: "1.0.0-1".into(),
        release: RELEASE.into(),
        kernel_version: "1.0.0".into(),
        package: vec![pkg(Role::Headers, "h", h), pkg(Role::HeadersCommon, "c", c)],
    }
}

struct Setup {
    srv: TestServer,
    cache: tempfile::TempDir,
    patches: tempfile::TempDir,
}

impl Setup {
    fn new(h_route: Route, c_route: Route) -> Self {
        Self {
            srv: TestServer::start(vec![
                ("/debian/pool/h.deb", h_route),
                ("/debian/pool/c.deb", c_route),
            ]),
            cache: tempfile::tempdir().unwrap(),
            patches: tempfile::tempdir().unwrap(),
        }
    }
    fn fetcher(&self) -> Fetcher {
        let base = self.srv.url("/debian");
        let mut f = Fetcher::with_mirror(
            self.cache.path().to_path_buf(),
            Mirror {
                main: base.clone(),
                security: base,
            },
        );
        f.patches_root = self.patches.path().to_path_buf();
        f
    }
    fn add_patch(&self, name: &str, text: &str) {
        let dir = self.patches.path().join("1.0");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }
    /// Every file left in the cache, relative to it.
    fn cache_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.cache.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(
                        e.path()
                            .strip_prefix(self.cache.path())
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }
    fn no_tree_left(&self) {
        let trees: Vec<_> = fs::read_dir(self.cache.path().join("headers"))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(trees.is_empty(), "left behind: {trees:?}");
    }
}

/// Two links that are each harmless, chained across the two packages, leave the tree.
#[test]
fn a_link_chain_across_packages_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::create_dir_all(root.join("usr/src/common/include")).unwrap();
    fs::create_dir_all(root.join("usr/src/flavour")).unwrap();
    std::os::unix::fs::symlink("../common/include", root.join("usr/src/flavour/inc")).unwrap();
    links_stay_inside(root).unwrap();
    // common/up -> ../../.. is the tree's root; flavour/out -> ../common/up/.. leaves it.
    std::os::unix::fs::symlink("../../..", root.join("usr/src/common/up")).unwrap();
    links_stay_inside(root).unwrap();
    std::os::unix::fs::symlink("../common/up/..", root.join("usr/src/flavour/out")).unwrap();
    let e = links_stay_inside(root).unwrap_err().to_string();
    assert!(
        e.contains("usr/src/flavour/out") && e.contains("leaves the tree"),
        "{e}"
    );
}

#[test]
fn header_members_kept() {
    let keep = |p: &str| keep_header_member(Arch::Amd64, Path::new(p));
    assert!(keep(
        "usr/src/linux-headers-6.1.0-50-common/include/linux/sched.h"
    ));
    assert!(keep(
        "usr/src/linux-headers-6.1.0-50-common/arch/x86/include/asm/ptrace.h"
    ));
    assert!(keep("usr/src/linux-headers-6.1.0-50-common/arch/Kconfig"));
    assert!(keep(
        "usr/src/linux-headers-6.1.0-50-cloud-amd64/include/generated/autoconf.h"
    ));
    assert!(keep(
        "usr/src/linux-headers-6.1.0-50-cloud-amd64/include/config/auto.conf"
    ));
    assert!(!keep(
        "usr/src/linux-headers-6.1.0-50-cloud-amd64/include/config/BPF_SYSCALL"
    ));
    assert!(!keep(
        "usr/src/linux-headers-6.1.0-50-common/include/dt-bindings/clock/imx8mq-clock.h"
    ));
    assert!(!keep(
        "usr/src/linux-headers-6.1.0-50-common/arch/arm64/include/asm/ptrace.h"
    ));
    assert!(!keep("lib/modules/6.1.0-50-cloud-amd64/build"));
    assert!(!keep("usr/share/doc/x"));
    // An arm64 tree keeps arm64's directory and no other.
    let arm64 = |p: &str| keep_header_member(Arch::Arm64, Path::new(p));
    assert!(arm64(
        "usr/src/linux-headers-6.1.0-50-common/arch/arm64/include/asm/ptrace.h"
    ));
    assert!(!arm64(
        "usr/src/linux-headers-6.1.0-50-common/arch/x86/include/asm/ptrace.h"
    ));
}

#[test]
fn cold_then_warm_fetch() {
    let (h, c) = (headers_deb(), common_deb());
    let s = Setup::new(Route::ok(h.clone()), Route::ok(c.clone()));
    let k = kernel(&h, &c);
    let mut f = s.fetcher();
    let tree = f.headers(&k).unwrap();
    assert_eq!(
        fs::read_to_string(tree.flavour_dir.join("include/generated/autoconf.h")).unwrap(),
        "#define CONFIG_BPF 1\n"
    );
    assert!(tree.common_dir.join("include/linux/sched.h").is_file());
    assert!(
        !tree
            .flavour_dir
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("lib")
            .exists(),
        "only usr/src is unpacked"
    );
    assert_eq!(f.downloaded_bytes, (h.len() + c.len()) as u64);
    assert!(f.cached(&k, Role::Headers));
    let before = s.srv.requests().len();
    // Warm: a fetcher whose mirror cannot be reached finds everything in the cache.
    let mut warm = Fetcher::with_mirror(
        s.cache.path().to_path_buf(),
        Mirror {
            main: "http://127.0.0.1:9".into(),
            security: "http://127.0.0.1:9".into(),
        },
    );
    warm.patches_root = s.patches.path().to_path_buf();
    let again = warm.headers(&k).unwrap();
    assert_eq!(again.flavour_dir, tree.flavour_dir);
    assert_eq!(
        s.srv.requests().len(),
        before,
        "a warm fetch does no network I/O"
    );
    assert_eq!(warm.downloaded_bytes, 0);
}

#[test]
fn sha256_mismatch_leaves_nothing_in_the_cache() {
    let (h, c) = (headers_deb(), common_deb());
    let s = Setup::new(Route::ok(h.clone()), Route::ok(c.clone()));
    let mut k = kernel(&h, &c);
    let wrong = "0".repeat(64);
    k.package[1].sha256 = wrong.clone();
    let err = format!("{:#}", s.fetcher().headers(&k).unwrap_err());
    assert!(err.contains("c.deb") || err.contains(&wrong), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&sha256_bytes(&c)),
        "names expected and actual: {err}"
    );
    // The other package, downloaded beside it, may stay: whole, and named by its hash.
    let verified = format!("debs/{}.deb", sha256_bytes(&h));
    for f in s.cache_files() {
        assert_eq!(f, verified, "only verified packages stay in the cache");
        assert_eq!(std::fs::read(s.cache.path().join(&f)).unwrap(), h);
    }
}

#[test]
fn connection_cut_midway_is_resumed() {
    let (h, c) = (headers_deb(), common_deb());
    let s = Setup::new(
        Route::ok(h.clone()),
        Route::ok(c.clone()).cut_first_after(c.len() / 2),
    );
    let k = kernel(&h, &c);
    s.fetcher().headers(&k).unwrap();
    let ranges: Vec<_> = s
        .srv
        .requests()
        .into_iter()
        .filter_map(|r| r.range)
        .collect();
    assert_eq!(ranges, [format!("bytes={}-", c.len() / 2)]);
}

#[test]
fn vanished_pin_says_how_to_relock() {
    let (h, c) = (headers_deb(), common_deb());
    let s = Setup::new(Route::ok(h.clone()), Route::status(404));
    let err = format!("{:#}", s.fetcher().headers(&kernel(&h, &c)).unwrap_err());
    assert!(
        err.contains("no longer on the mirror") && err.contains("cargo xtask kernels lock"),
        "{err}"
    );
    s.no_tree_left();
}

#[test]
fn a_deb_that_is_not_ar_is_refused() {
    let h = headers_deb();
    let bogus = b"<html>mirror error page</html>".to_vec();
    let s = Setup::new(Route::ok(h.clone()), Route::ok(bogus.clone()));
    let err = format!(
        "{:#}",
        s.fetcher().headers(&kernel(&h, &bogus)).unwrap_err()
    );
    assert!(err.contains("not a .deb"), "{err}");
    s.no_tree_left();
}

#[test]
fn tar_slip_in_a_deb_writes_nothing_outside() {
    let evil = deb(&[("./usr/src/../../../../escaped", b"x")]);
    let c = common_deb();
    let s = Setup::new(Route::ok(evil.clone()), Route::ok(c.clone()));
    let err = format!("{:#}", s.fetcher().headers(&kernel(&evil, &c)).unwrap_err());
    assert!(err.contains("`..`"), "{err}");
    s.no_tree_left();
    assert!(!s.cache.path().parent().unwrap().join("escaped").exists());
}

#[test]
fn patches_apply_and_a_failing_hunk_is_named() {
    let (h, c) = (headers_deb(), common_deb());
    let s = Setup::new(Route::ok(h.clone()), Route::ok(c.clone()));
    let k = kernel(&h, &c);
    s.add_patch("0001-ok.diff", "--- a/include/linux/sched.h\n+++ b/include/linux/sched.h\n@@ -1,2 +1,2 @@\n struct task_struct;\n-int a;\n+int a_patched;\n");
    let tree = s.fetcher().headers(&k).unwrap();
    assert!(
        fs::read_to_string(tree.common_dir.join("include/linux/sched.h"))
            .unwrap()
            .contains("a_patched")
    );
    assert_eq!(tree.patches, ["0001-ok.diff"]);
    // A second patch that does not apply: a new key, an error, and no new tree.
    s.add_patch("0002-bad.diff", "--- a/include/linux/sched.h\n+++ b/include/linux/sched.h\n@@ -2,2 +2,2 @@\n int a;\n-int nope;\n+int c;\n");
    let err = format!("{:#}", s.fetcher().headers(&k).unwrap_err());
    assert!(
        err.contains("0002-bad.diff")
            && err.contains("hunk #1")
            && err.contains("include/linux/sched.h"),
        "{err}"
    );
    let trees: Vec<_> = fs::read_dir(s.cache.path().join("headers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(trees.len(), 1, "only the first, complete tree remains");
}
