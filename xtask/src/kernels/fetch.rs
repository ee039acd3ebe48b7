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
use crate::download::{self, DownloadError, Downloader, Expected};
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
        deb_path_in(&self.cache, pkg)
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
            .filter(|p| !download::is_fetched(&self.deb_path(p), p.size))
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

/// Where `cache` keeps the verified `.deb` of `pkg`: named by its SHA256.
fn deb_path_in(cache: &Path, pkg: &LockedPackage) -> PathBuf {
    pinned_deb_path(cache, &pkg.sha256)
}

/// Where `cache` keeps a verified `.deb` whose SHA256 is `sha256` (kernels, the Go toolchain).
pub(crate) fn pinned_deb_path(cache: &Path, sha256: &str) -> PathBuf {
    cache.join("debs").join(format!("{sha256}.deb"))
}

/// A `.deb` a lock pins, as a download needs it, and the command that pins it anew.
pub(crate) struct PinnedDeb<'a> {
    pub suite: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub filename: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    /// `cargo xtask kernels lock`, `cargo xtask go lock`.
    pub relock: &'a str,
}

/// Downloads and verifies a pinned package into the cache's `debs/`, unless it is there;
/// returns its path.
pub(crate) fn download_pinned(
    dl: &Downloader,
    mirror: &Mirror,
    cache: &Path,
    pkg: &PinnedDeb,
) -> Result<PathBuf> {
    let dest = pinned_deb_path(cache, pkg.sha256);
    if download::is_fetched(&dest, pkg.size) {
        return Ok(dest);
    }
    let url = mirror.url(pkg.suite, pkg.filename);
    let expected = Expected {
        size: pkg.size,
        sha256: pkg.sha256.to_string(),
    };
    match dl.fetch_file(&url, &dest, &expected, pkg.name) {
        Ok(()) => Ok(dest),
        Err(DownloadError::NotFound { url }) => bail!(
            "{} {} is no longer on the mirror ({url}): the archive has superseded it. \
             Run `{}` to pin what {} offers now, then try again.",
            pkg.name,
            pkg.version,
            pkg.relock,
            pkg.suite
        ),
        Err(e) => Err(anyhow!(e).context(format!(
            "downloading {} {} (check the mirror: KC_DEBIAN_MIRROR, else the apt sources; a re-run resumes the download)",
            pkg.name, pkg.version
        ))),
    }
}

/// Downloads and verifies one kernel package into the cache's `debs/`.
fn download_deb(
    dl: &Downloader,
    mirror: &Mirror,
    cache: &Path,
    suite: &str,
    pkg: &LockedPackage,
) -> Result<()> {
    let pinned = PinnedDeb {
        suite,
        name: &pkg.name,
        version: &pkg.version,
        filename: &pkg.filename,
        size: pkg.size,
        sha256: &pkg.sha256,
        relock: "cargo xtask kernels lock",
    };
    download_pinned(dl, mirror, cache, &pinned).map(|_| ())
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
mod tests;
