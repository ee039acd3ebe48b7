//! `cargo xtask kernels fetch`: download the locked packages and unpack them into the cache.
//!
//! Cache layout (under [`paths::cache_dir`]):
//! - `debs/<sha256>.deb`: verified downloads, named by content;
//! - `headers/<release>-<key>/`: unpacked, patched header trees, `key` hashing the debs and
//!   the patches, so a changed patch gives a new tree and an unchanged one is reused;
//! - `images/<release>-<sha>/`: `vmlinuz` and `config` of a bootable kernel.
//!
//! Trees are built in a temporary directory beside their final place and renamed into it
//! when complete: an interrupted fetch leaves no tree that looks complete.

use std::cell::OnceCell;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use kc_common::Arch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spec::{LockedKernel, LockedPackage, Role};
use crate::atomic::StagedDir;
use crate::debian::{deb, mirror::Mirror};
use crate::download::{DownloadError, Downloader, Expected};
use crate::patch;
use crate::paths;

/// Bump when the unpacked layout changes, so old cache entries are not reused.
const TREE_FORMAT: &str = "kc-headers-v3";
const TREE_MANIFEST: &str = "kc-tree.json";

/// Network access, set up only when something is missing from the cache.
pub struct Fetcher {
    cache: PathBuf,
    /// `kernel-patches/`: `<series>/*.diff[.gz]` are applied to that bucket's tree.
    pub patches_root: PathBuf,
    mirror: OnceCell<Mirror>,
    downloader: OnceCell<Downloader>,
    pub downloaded_bytes: u64,
}

/// A prepared header tree of one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeaderTree {
    pub series: String,
    /// Whose `arch/` the tree holds (trees cached before arm64 came are amd64's).
    #[serde(default)]
    pub arch: Arch,
    pub release: String,
    pub kernel_version: String,
    /// `usr/src/linux-headers-<release>`: generated headers and `.config`.
    pub flavour_dir: PathBuf,
    /// `usr/src/linux-headers-<abi>-common`: the kernel's own headers.
    pub common_dir: PathBuf,
    pub patches: Vec<String>,
}

impl HeaderTree {
    /// The tree with its directories relative to `root` (how `kc-tree.json` stores them).
    fn relative_to(&self, root: &Path) -> Self {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
        Self {
            flavour_dir: rel(&self.flavour_dir),
            common_dir: rel(&self.common_dir),
            ..self.clone()
        }
    }

    /// A stored tree placed where it is now (older caches stored absolute paths: kept).
    fn placed_in(&self, root: &Path) -> Self {
        Self {
            flavour_dir: root.join(&self.flavour_dir),
            common_dir: root.join(&self.common_dir),
            ..self.clone()
        }
    }
}

impl Fetcher {
    pub fn new(cache: PathBuf) -> Self {
        Self {
            cache,
            patches_root: paths::project_root().join("kernel-patches"),
            mirror: OnceCell::new(),
            downloader: OnceCell::new(),
            downloaded_bytes: 0,
        }
    }

    /// With a known mirror (tests, benchmarks).
    pub fn with_mirror(cache: PathBuf, mirror: Mirror) -> Self {
        let f = Self::new(cache);
        let _ = f.mirror.set(mirror);
        f
    }

    pub fn cache(&self) -> &Path {
        &self.cache
    }

    fn mirror(&self) -> Result<&Mirror> {
        if let Some(m) = self.mirror.get() {
            return Ok(m);
        }
        let m = Mirror::discover()?;
        Ok(self.mirror.get_or_init(|| m))
    }

    pub fn deb_path(&self, pkg: &LockedPackage) -> PathBuf {
        self.cache.join("debs").join(format!("{}.deb", pkg.sha256))
    }

    /// The verified `.deb` of `pkg`, downloading it unless the cache has it.
    pub fn deb(&mut self, suite: &str, pkg: &LockedPackage) -> Result<PathBuf> {
        Ok(self.debs(suite, &[pkg])?.remove(0))
    }

    /// The verified `.deb`s of `pkgs`, in order; those the cache lacks are downloaded at
    /// once (a bucket's two headers packages: the small one's round trips hide under the
    /// large one's transfer).
    pub fn debs(&mut self, suite: &str, pkgs: &[&LockedPackage]) -> Result<Vec<PathBuf>> {
        let missing: Vec<&LockedPackage> = pkgs
            .iter()
            .copied()
            .filter(|p| !fs::metadata(self.deb_path(p)).is_ok_and(|m| m.len() == p.size))
            .collect();
        if !missing.is_empty() {
            let mirror = self.mirror()?.clone();
            let dl = self.downloader.get_or_init(Downloader::new);
            let cache = &self.cache;
            std::thread::scope(|s| -> Result<()> {
                let jobs: Vec<_> = missing
                    .iter()
                    .map(|p| s.spawn(|| download_deb(dl, &mirror, cache, suite, p)))
                    .collect();
                for j in jobs {
                    j.join().expect("download thread panicked")?;
                }
                Ok(())
            })?;
            self.downloaded_bytes += missing.iter().map(|p| p.size).sum::<u64>();
        }
        Ok(pkgs.iter().map(|p| self.deb_path(p)).collect())
    }

    /// The header tree of a bucket: from the cache, else downloaded, unpacked and patched.
    pub fn headers(&mut self, k: &LockedKernel) -> Result<HeaderTree> {
        let headers = k
            .package(Role::Headers)
            .ok_or_else(|| anyhow!("series {} is not a bucket: it has no headers", k.series))?;
        let common = k
            .package(Role::HeadersCommon)
            .ok_or_else(|| anyhow!("series {}: no -common headers locked", k.series))?;
        let patches = patch_files(&self.patches_root.join(k.series.to_string()))?;
        let dir = self.headers_dir(k)?;
        if let Ok(text) = fs::read_to_string(dir.join(TREE_MANIFEST)) {
            let stored: HeaderTree = serde_json::from_str(&text).with_context(|| {
                format!("{} is corrupt; delete {}", TREE_MANIFEST, dir.display())
            })?;
            // The packages (part of the directory's key) are the lock entry's architecture's.
            return Ok(HeaderTree {
                arch: k.arch,
                ..stored.placed_in(&dir)
            });
        }
        let debs = self.debs(&k.suite, &[common, headers])?;
        let tmp = StagedDir::beside(&dir)?;
        // Both packages at once: the -common one is most of the work, on its own cores.
        let keep = |p: &Path| keep_header_member(k.arch, p);
        std::thread::scope(|s| -> Result<()> {
            let jobs: Vec<_> = debs
                .iter()
                .map(|d| s.spawn(|| deb::extract_data(d, tmp.path(), &keep)))
                .collect();
            for j in jobs {
                j.join().expect("unpack thread panicked")?;
            }
            Ok(())
        })?;
        // Each unpack checked its own links; a chain across the two packages is checked now
        // that both are there.
        links_stay_inside(tmp.path())?;
        let common_name = format!("linux-headers-{}-common", k.abi);
        let mut tree = HeaderTree {
            series: k.series.to_string(),
            arch: k.arch,
            release: k.release.clone(),
            kernel_version: k.kernel_version.clone(),
            flavour_dir: dir
                .join("usr/src")
                .join(format!("linux-headers-{}", k.release)),
            common_dir: dir.join("usr/src").join(&common_name),
            patches: Vec::new(),
        };
        let tmp_flavour = tmp
            .path()
            .join("usr/src")
            .join(format!("linux-headers-{}", k.release));
        let tmp_common = tmp.path().join("usr/src").join(&common_name);
        for d in [&tmp_flavour, &tmp_common] {
            if !d.is_dir() {
                bail!(
                    "the locked packages of {} do not hold {}: is the lock from another flavour?",
                    k.series,
                    d.strip_prefix(tmp.path()).unwrap_or(d).display()
                );
            }
        }
        for p in &patches {
            apply_patch_file(p, tmp.path(), &tmp_flavour, &tmp_common)?;
            tree.patches.push(
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        // Paths relative to the tree: a cache copied elsewhere still works.
        fs::write(
            tmp.path().join(TREE_MANIFEST),
            serde_json::to_string_pretty(&tree.relative_to(&dir))?,
        )?;
        // Another process that unpacked the same tree first made an identical one.
        tmp.publish()?;
        Ok(tree)
    }

    /// Where the header tree of `k` lives: keyed by both debs and the bucket's patches, so a
    /// changed patch gives a new tree.
    fn headers_dir(&self, k: &LockedKernel) -> Result<PathBuf> {
        let mut key = Sha256::new();
        key.update(TREE_FORMAT);
        for role in [Role::Headers, Role::HeadersCommon] {
            let p = k
                .package(role)
                .ok_or_else(|| anyhow!("series {} has no {role:?} package locked", k.series))?;
            key.update(&p.sha256);
        }
        for p in patch_files(&self.patches_root.join(k.series.to_string()))? {
            key.update(p.file_name().unwrap_or_default().as_encoded_bytes());
            key.update(fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
        }
        let key = hex::encode(key.finalize());
        Ok(self
            .cache
            .join("headers")
            .join(format!("{}-{}", k.release, &key[..16])))
    }

    /// Where the unpacked image of `k` lives.
    fn image_dir(&self, k: &LockedKernel) -> Option<PathBuf> {
        let image = k.package(Role::Image)?;
        Some(
            self.cache
                .join("images")
                .join(format!("{}-{}", k.release, &image.sha256[..16])),
        )
    }

    /// The unpacked `vmlinuz` of a kernel (for load tests). Beside it, `modules/` holds the
    /// modules vmtest may load ([`MODULE_TREES`], paths as under `lib/modules/<release>/`),
    /// from the image package or, since the 7.x split, its `linux-modules-*` package; empty
    /// when the archive carries none for this kernel.
    pub fn image(&mut self, k: &LockedKernel) -> Result<PathBuf> {
        let image = k
            .package(Role::Image)
            .ok_or_else(|| anyhow!("series {}: no image locked", k.series))?;
        let dir = self.image_dir(k).expect("the image package is locked");
        let vmlinuz = dir.join("vmlinuz");
        if vmlinuz.is_file() && dir.join("modules").is_dir() {
            return Ok(vmlinuz);
        }
        let pkgs: Vec<&LockedPackage> = std::iter::once(image)
            .chain(k.package(Role::Modules))
            .collect();
        let debs = self.debs(&k.suite, &pkgs)?;
        let tmp = StagedDir::beside(&dir)?;
        // Up to 6.x the kernel is /boot/vmlinuz-<release>; the 7.x packaging split moved it
        // to /usr/lib/modules/<release>/vmlinuz. Modules are under /lib/modules/<release>
        // before the /usr merge, /usr/lib/modules/<release> after it.
        let release = Path::new(&k.release);
        let keep = |p: &Path| {
            p.starts_with("boot")
                || module_path(p, release).is_some_and(|m| {
                    m == Path::new("vmlinuz") || m == Path::new(MODULES_BUILTIN) || wanted_module(m)
                })
        };
        for deb_path in &debs {
            deb::extract_data(deb_path, tmp.path(), &keep)?;
        }
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| tmp.path().join(d).join(release))
            .find(|d| d.is_dir());
        let boot = tmp.path().join("boot");
        let kernel = [
            boot.join(format!("vmlinuz-{}", k.release)),
            modules
                .as_ref()
                .map_or_else(PathBuf::new, |m| m.join("vmlinuz")),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} holds neither boot/vmlinuz-{r} nor usr/lib/modules/{r}/vmlinuz",
                image.name,
                r = k.release
            )
        })?;
        fs::rename(&kernel, tmp.path().join("vmlinuz"))?;
        let config = boot.join(format!("config-{}", k.release));
        if config.is_file() {
            fs::rename(&config, tmp.path().join("config"))?;
        }
        match modules {
            Some(m) => fs::rename(&m, tmp.path().join("modules"))?,
            None => fs::create_dir(tmp.path().join("modules"))?,
        }
        for d in ["boot", "lib", "usr"] {
            let _ = fs::remove_dir_all(tmp.path().join(d));
        }
        // An image unpacked before modules were kept is replaced.
        tmp.replace()?;
        if !vmlinuz.is_file() {
            bail!("could not place {}", vmlinuz.display());
        }
        Ok(vmlinuz)
    }

    /// Is this kernel's header tree / image already in the cache? (For `kernels list`.)
    pub fn cached(&self, k: &LockedKernel, role: Role) -> bool {
        match role {
            Role::Image | Role::Modules => self
                .image_dir(k)
                .is_some_and(|d| d.join("vmlinuz").is_file() && d.join("modules").is_dir()),
            _ => self
                .headers_dir(k)
                .is_ok_and(|d| d.join(TREE_MANIFEST).is_file()),
        }
    }
}

/// The list of built-in modules beside a kernel's modules.
pub const MODULES_BUILTIN: &str = "modules.builtin";

/// The module trees vmtest may need: MD, the file systems, and what those depend on (the
/// library, crypto and checksum modules, the RPC layer behind NFS).
pub const MODULE_TREES: [&str; 7] = [
    "kernel/drivers/md",
    "kernel/fs",
    "kernel/lib",
    "kernel/crypto",
    "kernel/arch",
    "kernel/net/sunrpc",
    "kernel/net/dns_resolver",
];

/// Downloads and verifies one package into the cache's `debs/`.
fn download_deb(
    dl: &Downloader,
    mirror: &Mirror,
    cache: &Path,
    suite: &str,
    pkg: &LockedPackage,
) -> Result<()> {
    let url = mirror.url(suite, &pkg.filename);
    let expected = Expected {
        size: pkg.size,
        sha256: pkg.sha256.clone(),
    };
    let path = cache.join("debs").join(format!("{}.deb", pkg.sha256));
    match dl.fetch_file(&url, &path, &expected, &pkg.name) {
        Ok(()) => Ok(()),
        Err(DownloadError::NotFound { url }) => bail!(
            "{} {} is no longer on the mirror ({url}): the archive has superseded the locked ABI. \
             Run `cargo xtask kernels lock` to pin what the suite offers now, then fetch again.",
            pkg.name,
            pkg.version
        ),
        Err(e) => Err(anyhow!(e).context(format!(
            "downloading {} {} (check the mirror: KC_DEBIAN_MIRROR, else the apt sources; a re-run resumes the download)",
            pkg.name, pkg.version
        ))),
    }
}

/// `p` (a path in an image or modules package) relative to `lib/modules/<release>/`.
fn module_path<'a>(p: &'a Path, release: &Path) -> Option<&'a Path> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .find_map(|d| p.strip_prefix(Path::new(d).join(release)).ok())
}

fn wanted_module(m: &Path) -> bool {
    MODULE_TREES.iter().any(|t| m.starts_with(t))
}

/// `include/<dir>/` trees no collector reads (device-tree constants, sound, graphics, media,
/// storage and other drivers' subsystems): not unpacked. A collector that comes to need one
/// gets clang's "file not found" with a pointer here.
pub const SKIPPED_INCLUDE_DIRS: &[&str] = &[
    "dt-bindings",
    "sound",
    "drm",
    "media",
    "rdma",
    "scsi",
    "target",
    "soc",
    "pcmcia",
    "ufs",
    "kunit",
    "math-emu",
    "rv",
];

/// Which members of the headers packages a tree needs: `usr/src/`, without what no C compile
/// of ours reads: the other architectures' `arch/<arch>/` (only `arch`'s own is kept),
/// kbuild's per-option dependency stamps `include/config/*` (but `auto.conf`), and
/// [`SKIPPED_INCLUDE_DIRS`]. Together that is over half of the files a cold fetch would
/// otherwise write (the compiles of a bucket read about 700 of them).
pub fn keep_header_member(arch: Arch, path: &Path) -> bool {
    let mut c = path.components().map(|c| c.as_os_str());
    if c.next() != Some("usr".as_ref()) || c.next() != Some("src".as_ref()) {
        return false;
    }
    let _package_dir = c.next();
    match (c.next(), c.next(), c.next()) {
        (Some(dir), Some(name), Some(_)) if dir == "arch" => name == arch.kernel_arch(),
        (Some(include), Some(sub), Some(file)) if include == "include" => {
            (sub != "config" || file == "auto.conf")
                && !SKIPPED_INCLUDE_DIRS.iter().any(|d| sub == *d)
        }
        _ => true,
    }
}

/// Every symlink under `root`, followed through the tree's other links, stays inside `root`.
fn links_stay_inside(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_symlink() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(&e.path())
                    .to_path_buf();
                kc_common::unpack::resolve_inside(root, &rel).map_err(|why| {
                    anyhow!(
                        "the header packages hold a symlink {} that leaves the tree ({why}); the packages are not what the lock pinned",
                        rel.display()
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// `*.diff` and `*.diff.gz` of a bucket's patch directory, sorted by name.
pub fn patch_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.ends_with(".diff") || n.ends_with(".diff.gz")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Applies one patch file to a header tree. A path `P` (after `-p1`) names the flavour
/// directory's `P` when that exists, else the common directory's (the include order).
pub fn apply_patch_file(
    patch_path: &Path,
    root: &Path,
    flavour: &Path,
    common: &Path,
) -> Result<()> {
    let name = patch_path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let raw = fs::read(patch_path).with_context(|| format!("reading {}", patch_path.display()))?;
    let text = if name.ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .with_context(|| format!("{name}: not a valid gzip text file"))?;
        s
    } else {
        String::from_utf8(raw).with_context(|| format!("{name}: not UTF-8 text"))?
    };
    for file in patch::parse(&name, &text)? {
        let rel = file.target();
        let target = [flavour, common]
            .into_iter()
            .map(|d| d.join(rel))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                if file.old_path.is_none() {
                    flavour.join(rel)
                } else {
                    common.join(rel)
                }
            });
        // Never write through a link that leaves the tree.
        let rel_to_root = target
            .strip_prefix(root)
            .expect("targets are under the root");
        kc_common::unpack::resolve_inside(root, rel_to_root)
            .map_err(|r| anyhow!("{name}: {rel}: {r}"))?;
        let original = if file.old_path.is_none() {
            String::new()
        } else {
            fs::read_to_string(&target)
                .with_context(|| format!("{name}: {rel} is not in the header tree"))?
        };
        let patched = patch::apply(&name, &file, &original)?;
        if file.new_path.is_none() {
            fs::remove_file(&target)?;
        } else {
            if let Some(d) = target.parent() {
                fs::create_dir_all(d)?;
            }
            fs::write(&target, patched)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

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
}
