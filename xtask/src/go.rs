//! `cargo xtask go`: the Go consumer example (`examples/go/`, cilium/ebpf driven by the attach
//! plan) built with Debian's own Go packages, pinned in `examples/go/debian.lock` and fetched
//! as the kernels are: through the suites' signed indexes, each `.deb` checked by SHA-256,
//! unpacked under the cache. Built in GOPATH mode, as Debian builds Go packages: no module
//! proxy, no network once fetched.
//!
//! Why these packages: bookworm's cilium/ebpf (0.9.1) cannot read the BTF of current kernels
//! (their `vmlinux` carries DECL_TAG and ENUM64 kinds it does not know), so the library comes
//! from trixie (0.11.0, `Architecture: all`: sources only); it wants a Go newer than
//! bookworm's 1.19 and newer `golang.org/x/{sys,exp}`, which bookworm-backports carries for
//! bookworm itself (Go 1.23).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use clap::{Args, Subcommand};
use kc_common::Arch;
use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::debian::mirror::Mirror;
use crate::debian::signature::ArchiveKeyring;
use crate::download::{self, Downloader};
use crate::kernels::fetch::{download_pinned, PinnedDeb};
use crate::kernels::lock::{fetch_signed_release, fetch_suite_index, unix_now};
use crate::{atomic, paths, process};

/// The example's directory, and its lock, under the workspace root.
pub const EXAMPLE: &str = "examples/go";
const LOCK: &str = "examples/go/debian.lock";
const LOCK_VERSION: u32 = 1;

/// The Go version the toolchain packages are named for.
const GO: &str = "1.23";

/// (suite, package): what the example builds with. Sources first: the toolchain's `src`
/// link points into them.
const WANTED: &[(&str, &str)] = &[
    ("bookworm-backports", "golang-1.23-src"),
    ("bookworm-backports", "golang-1.23-go"),
    ("bookworm-backports", "golang-golang-x-sys-dev"),
    ("bookworm-backports", "golang-golang-x-exp-dev"),
    ("trixie", "golang-github-cilium-ebpf-dev"),
];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the Debian packages the example builds with (examples/go/debian.lock) from the
    /// suites' signed indexes
    Lock,
    /// Build the example (fetching and unpacking the pinned packages if need be)
    Build(BuildOptions),
}

#[derive(Debug, Args)]
pub struct BuildOptions {
    /// Where to write the binary
    #[arg(long, default_value = "target/kc-go-consumer")]
    pub out: PathBuf,
}

pub fn run(c: Command) -> Result<()> {
    match c {
        Command::Lock => lock(),
        Command::Build(o) => {
            let out = paths::in_root(&o.out);
            build(&out)?;
            eprintln!("go: built {}", out.display());
            Ok(())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoLock {
    lock_version: u32,
    package: Vec<LockedDeb>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockedDeb {
    suite: String,
    /// `all`, or the architecture the package was built for.
    arch: String,
    name: String,
    version: String,
    filename: String,
    size: u64,
    sha256: String,
}

const LOCK_HEADER: &str = "\
# The Debian packages examples/go builds with (see xtask/src/go.rs for why these).
# Written by `cargo xtask go lock`; do not edit by hand.
";

fn lock() -> Result<()> {
    let mirror = Mirror::discover()?;
    let keyring = ArchiveKeyring::discover()?;
    let dl = Downloader::new();
    let names: BTreeSet<&str> = WANTED.iter().map(|(_, n)| *n).collect();
    let suites: BTreeSet<&str> = WANTED.iter().map(|(s, _)| *s).collect();
    let mut package = Vec::new();
    for suite in suites {
        let (release, _) = fetch_signed_release(&dl, &mirror, suite, &keyring, unix_now())?;
        for arch in Arch::ALL {
            let index =
                fetch_suite_index(&dl, &mirror, suite, &release, arch, &|n| names.contains(n))?;
            for (_, name) in WANTED.iter().filter(|(s, _)| *s == suite) {
                let newest = index
                    .get(*name)
                    .and_then(|versions| {
                        versions
                            .iter()
                            .max_by(|a, b| crate::debian::version::compare(&a.version, &b.version))
                    })
                    .ok_or_else(|| anyhow!("{suite} ({arch}) has no package {name}"))?;
                let deb_arch = deb_arch(&newest.filename)?;
                if deb_arch == "all" && arch != Arch::ALL[0] {
                    continue; // the same file in every architecture's index
                }
                package.push(LockedDeb {
                    suite: suite.to_string(),
                    arch: deb_arch,
                    name: newest.name.clone(),
                    version: newest.version.clone(),
                    filename: newest.filename.clone(),
                    size: newest.size,
                    sha256: newest.sha256.clone(),
                });
            }
        }
    }
    package.sort_by_key(|p| {
        let at = WANTED.iter().position(|(_, n)| *n == p.name);
        (at, p.arch.clone())
    });
    let text = format!(
        "{LOCK_HEADER}\n{}",
        toml::to_string(&GoLock {
            lock_version: LOCK_VERSION,
            package
        })?
    );
    let path = paths::project_root().join(LOCK);
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        eprintln!("go lock: {} is up to date", path.display());
    } else {
        atomic::write(&path, text.as_bytes())?;
        eprintln!("go lock: wrote {}", path.display());
    }
    Ok(())
}

/// The architecture a pool file name ends with (`…_1.23.5-1~bpo12+1_amd64.deb`).
fn deb_arch(filename: &str) -> Result<String> {
    filename
        .strip_suffix(".deb")
        .and_then(|f| f.rsplit('_').next())
        .map(String::from)
        .with_context(|| format!("{filename}: not a .deb pool file name"))
}

/// The packages of the lock that `arch` needs, in unpacking order.
fn for_arch(lock: &GoLock, arch: Arch) -> Result<Vec<&LockedDeb>> {
    WANTED
        .iter()
        .map(|(_, name)| {
            lock.package
                .iter()
                .find(|p| p.name == *name && (p.arch == "all" || p.arch == arch.as_str()))
                .ok_or_else(|| {
                    anyhow!("{LOCK} pins no {name} for {arch}: run `cargo xtask go lock`")
                })
        })
        .collect()
}

fn read_lock() -> Result<(GoLock, String)> {
    let path = paths::project_root().join(LOCK);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lock: GoLock = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a Go lock: re-run `cargo xtask go lock`",
            path.display()
        )
    })?;
    ensure!(
        lock.lock_version == LOCK_VERSION,
        "{} is version {}; this xtask reads version {LOCK_VERSION}",
        path.display(),
        lock.lock_version
    );
    Ok((lock, text))
}

/// A Go toolchain and GOPATH unpacked from the lock's packages.
pub struct Toolchain {
    /// `…/usr/lib/go-1.23/bin/go` (it finds its GOROOT beside itself).
    pub go: PathBuf,
    /// `…/usr/share/gocode`: the libraries' sources, a GOPATH.
    pub gopath: PathBuf,
    /// GOCACHE, kept between builds.
    pub gocache: PathBuf,
}

/// The pinned toolchain for the host, fetched and unpacked into the cache unless it is there.
pub fn toolchain() -> Result<Toolchain> {
    let arch = kc_common::host::host_arch()?;
    let (lock, text) = read_lock()?;
    let debs = for_arch(&lock, arch)?;
    let cache = paths::cache_dir();
    // One tree per lock text and architecture: a new lock unpacks anew.
    let key = &download::sha256_bytes(format!("{text}{arch}").as_bytes())[..16];
    let root = cache.join("go").join(key);
    let toolchain = Toolchain {
        go: root.join(format!("usr/lib/go-{GO}/bin/go")),
        gopath: root.join("usr/share/gocode"),
        gocache: cache.join("go").join("build-cache"),
    };
    if toolchain.go.exists() {
        return Ok(toolchain);
    }
    let mirror = Mirror::discover()?;
    let dl = Downloader::new();
    let files = debs
        .iter()
        .map(|p| fetch(&dl, &mirror, &cache, p))
        .collect::<Result<Vec<_>>>()?;
    // Unpacked beside, then renamed: an interrupted unpack leaves nothing that looks done.
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    for (deb, p) in files.iter().zip(&debs) {
        crate::debian::deb::extract_data(deb, &partial, &|path| !is_documentation(path))
            .with_context(|| format!("unpacking {} {}", p.name, p.version))?;
    }
    std::fs::rename(&partial, &root)?;
    ensure!(
        toolchain.go.exists(),
        "{} is not in golang-{GO}-go",
        toolchain.go.display()
    );
    Ok(toolchain)
}

fn is_documentation(path: &Path) -> bool {
    path.starts_with("usr/share/doc") || path.starts_with("usr/share/man")
}

/// The verified `.deb` of `p` in the cache, downloaded unless it is there.
fn fetch(dl: &Downloader, mirror: &Mirror, cache: &Path, p: &LockedDeb) -> Result<PathBuf> {
    let pinned = PinnedDeb {
        suite: &p.suite,
        name: &p.name,
        version: &p.version,
        filename: &p.filename,
        size: p.size,
        sha256: &p.sha256,
        relock: "cargo xtask go lock",
    };
    download_pinned(dl, mirror, cache, &pinned)
}

/// Builds the example into `out` (vetted first), static (no cgo).
pub fn build(out: &Path) -> Result<()> {
    let tc = toolchain()?;
    let dir = paths::project_root().join(EXAMPLE);
    let sh = process::shell_in(&dir);
    let go = &tc.go;
    let _env = [
        sh.push_env("GO111MODULE", "off"),
        sh.push_env("GOPATH", &tc.gopath),
        sh.push_env("GOCACHE", &tc.gocache),
        sh.push_env("GOTOOLCHAIN", "local"),
        sh.push_env("GOFLAGS", ""),
        sh.push_env("GOENV", "off"),
        sh.push_env("GOTELEMETRY", "off"),
        sh.push_env("CGO_ENABLED", "0"),
    ];
    let _no_goroot = sh.push_env("GOROOT", "");
    let gofmt = go.with_file_name("gofmt");
    let unformatted = process::read(cmd!(sh, "{gofmt} -l ."))?;
    ensure!(
        unformatted.trim().is_empty(),
        "gofmt would change {}: run it on {EXAMPLE}",
        unformatted.trim()
    );
    process::output(cmd!(sh, "{go} vet ."))?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = out.with_extension("partial");
    process::output(cmd!(sh, "{go} build -trimpath -o {partial} ."))?;
    std::fs::rename(&partial, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, arch: &str) -> LockedDeb {
        LockedDeb {
            suite: "trixie".into(),
            arch: arch.into(),
            name: name.into(),
            version: "1".into(),
            filename: format!("pool/main/x/{name}_1_{arch}.deb"),
            size: 1,
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn a_pool_file_names_its_architecture() {
        assert_eq!(
            deb_arch("pool/main/g/golang-1.23/golang-1.23-go_1.23.5-1~bpo12+1_amd64.deb").unwrap(),
            "amd64"
        );
        assert_eq!(deb_arch("pool/x_0.11.0-2_all.deb").unwrap(), "all");
        assert!(deb_arch("pool/x.tar.gz").is_err());
    }

    #[test]
    fn each_architecture_takes_its_own_toolchain_and_the_shared_sources() {
        let mut package: Vec<LockedDeb> = WANTED.iter().map(|(_, n)| deb(n, "all")).collect();
        package[1] = deb("golang-1.23-go", "amd64");
        package.push(deb("golang-1.23-go", "arm64"));
        let lock = GoLock {
            lock_version: LOCK_VERSION,
            package,
        };
        let arm: Vec<&str> = for_arch(&lock, Arch::Arm64)
            .unwrap()
            .iter()
            .map(|p| p.arch.as_str())
            .collect();
        assert_eq!(arm, ["all", "arm64", "all", "all", "all"]);
        let mut short = lock.clone();
        short.package.retain(|p| p.arch != "arm64");
        let e = for_arch(&short, Arch::Arm64).unwrap_err().to_string();
        assert!(
            e.contains("no golang-1.23-go for arm64") && e.contains("go lock"),
            "{e}"
        );
    }

    #[test]
    fn the_lock_pins_every_package_for_every_architecture() {
        let (lock, _) = read_lock().unwrap();
        for arch in Arch::ALL {
            assert_eq!(for_arch(&lock, arch).unwrap().len(), WANTED.len());
        }
    }
}
