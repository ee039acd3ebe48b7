//! The kernel matrix: `kernels lock`, `kernels fetch`, `kernels list`.

pub mod fetch;
pub mod lock;
pub mod resolve;
pub mod spec;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kc_common::{Arch, Bucket};
use serde::Serialize;

use crate::debian::mirror::Mirror;
use crate::debian::signature::ArchiveKeyring;
use crate::paths;
use fetch::Fetcher;
use spec::{Lock, LockedKernel, Matrix, Role};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve kernels.toml against the Debian mirror's indexes and write kernels.lock
    Lock(LockOptions),
    /// Download, check and unpack the locked kernel headers (and images) into the cache
    Fetch(FetchOptions),
    /// Show the matrix: buckets, locked versions, and what is cached
    List(ListOptions),
}

#[derive(Debug, Args)]
pub struct LockOptions {
    /// Only check that kernels.lock covers kernels.toml (no network); fail if it does not
    #[arg(long)]
    pub check: bool,
    /// Resolve only these architectures (repeatable), keeping the others' pins as they are;
    /// default: every architecture of kernels.toml
    #[arg(long = "arch", value_name = "ARCH")]
    pub arches: Vec<Arch>,
}

#[derive(Debug, Args)]
pub struct FetchOptions {
    /// Fetch these series only (repeatable); default: every bucket
    #[arg(long = "bucket", value_name = "SERIES", conflicts_with = "all")]
    pub buckets: Vec<Bucket>,
    /// Fetch every entry of the matrix (headers of buckets; with --images, every bootable kernel)
    #[arg(long)]
    pub all: bool,
    /// Also fetch the bootable kernel images (for `vmtest`)
    #[arg(long)]
    pub images: bool,
    /// The architecture whose kernels to fetch
    #[arg(long, default_value = "amd64")]
    pub arch: Arch,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListOptions {
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Lock(o) => run_lock(o),
        Command::Fetch(o) => run_fetch(o),
        Command::List(o) => run_list(o),
    }
}

/// The lock, checked against the matrix.
pub fn load_checked_lock() -> Result<(Matrix, Lock)> {
    let m = Matrix::load(&paths::kernels_toml())?;
    let l = Lock::load(&paths::kernels_lock())?;
    l.check_against(&m)?;
    Ok((m, l))
}

fn run_lock(o: LockOptions) -> Result<()> {
    if o.check {
        let (_, lock) = load_checked_lock()?;
        let counts: Vec<String> = lock
            .arches()
            .iter()
            .map(|a| format!("{a} {}", lock.kernels(*a).len()))
            .collect();
        eprintln!(
            "kernels.lock covers kernels.toml ({} kernels)",
            counts.join(", ")
        );
        return Ok(());
    }
    let mirror = Mirror::discover()?;
    let out = lock::run(
        &mirror,
        &ArchiveKeyring::discover()?,
        &paths::kernels_toml(),
        &paths::kernels_lock(),
        &o.arches,
    )?;
    for k in out
        .lock
        .arches()
        .into_iter()
        .flat_map(|a| out.lock.kernels(a))
    {
        eprintln!(
            "  {:<5} {:<5} {:<7} {:<18} {}",
            k.series,
            k.arch,
            if k.bucket { "bucket" } else { "boot" },
            k.suite,
            k.release
        );
    }
    let arches = out.lock.arches();
    eprintln!(
        "kernels.lock {} ({} kernels: {})",
        if out.changed { "written" } else { "unchanged" },
        arches
            .iter()
            .map(|a| out.lock.kernels(*a).len())
            .sum::<usize>(),
        arches
            .iter()
            .map(|a| format!("{a} {}", out.lock.kernels(*a).len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The amd64 entries a fetch selects.
pub fn select<'a>(lock: &'a Lock, buckets: &[Bucket], all: bool) -> Result<Vec<&'a LockedKernel>> {
    select_arch(lock, Arch::Amd64, buckets, all)
}

/// The amd64 kernel of `series`, else the newest of the lock: the one kernel a benchmark's
/// guest boots.
pub fn one_or_newest(lock: &Lock, series: Option<Bucket>) -> Result<&LockedKernel> {
    match series {
        Some(s) => Ok(select(lock, &[s], false)?[0]),
        None => lock
            .kernel
            .iter()
            .max_by_key(|k| kc_common::KernelVersion::parse(&k.kernel_version).ok())
            .ok_or_else(|| {
                anyhow::anyhow!("kernels.lock has no kernel: run `cargo xtask kernels lock`")
            }),
    }
}

/// The entries of one architecture a fetch selects: the named series, else every bucket (with
/// `all`, every entry).
pub fn select_arch<'a>(
    lock: &'a Lock,
    arch: Arch,
    buckets: &[Bucket],
    all: bool,
) -> Result<Vec<&'a LockedKernel>> {
    let kernels = lock.kernels(arch);
    if !buckets.is_empty() {
        return buckets
            .iter()
            .map(|b| {
                kernels.iter().find(|k| k.series == *b).ok_or_else(|| {
                    let known: Vec<String> = kernels.iter().map(|k| k.series.to_string()).collect();
                    anyhow::anyhow!("series {b} is not in the {arch} kernel matrix (known: {}); add it to kernels.toml and run `cargo xtask kernels lock`", known.join(", "))
                })
            })
            .collect();
    }
    Ok(kernels.iter().filter(|k| all || k.bucket).collect())
}

#[derive(Debug, Serialize)]
struct Fetched {
    series: String,
    release: String,
    headers: Option<fetch::HeaderTree>,
    vmlinuz: Option<std::path::PathBuf>,
}

fn run_fetch(o: FetchOptions) -> Result<()> {
    let (_, lock) = load_checked_lock()?;
    let selected = select_arch(&lock, o.arch, &o.buckets, o.all)?;
    let mut fetcher = Fetcher::new(paths::cache_dir());
    let mut out = Vec::new();
    for k in selected {
        let headers = if k.bucket {
            Some(fetcher.headers(k)?)
        } else {
            None
        };
        let vmlinuz = if o.images {
            Some(fetcher.image(k)?)
        } else {
            None
        };
        if !o.json {
            eprintln!(
                "{:<5} {:<28} {}{}",
                k.series.to_string(),
                k.release,
                headers
                    .as_ref()
                    .map(|h| h.flavour_dir.display().to_string())
                    .unwrap_or_default(),
                vmlinuz
                    .as_ref()
                    .map(|v| format!(" {}", v.display()))
                    .unwrap_or_default()
            );
        }
        out.push(Fetched {
            series: k.series.to_string(),
            release: k.release.clone(),
            headers,
            vmlinuz,
        });
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!(
            "downloaded {:.1} MiB",
            fetcher.downloaded_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Listed {
    series: String,
    arch: Arch,
    bucket: bool,
    suite: String,
    release: String,
    kernel_version: String,
    headers_cached: bool,
    image_cached: bool,
}

fn run_list(o: ListOptions) -> Result<()> {
    let m = Matrix::load(&paths::kernels_toml())?;
    let lock = match Lock::load(&paths::kernels_lock()) {
        Ok(l) => l,
        Err(e) => bail!("{e:#}"),
    };
    let check = lock.check_against(&m);
    let fetcher = Fetcher::new(paths::cache_dir());
    let rows: Vec<Listed> = lock
        .arches()
        .into_iter()
        .flat_map(|a| lock.kernels(a))
        .map(|k| Listed {
            series: k.series.to_string(),
            arch: k.arch,
            bucket: k.bucket,
            suite: k.suite.clone(),
            release: k.release.clone(),
            kernel_version: k.kernel_version.clone(),
            headers_cached: fetcher.cached(k, Role::Headers),
            image_cached: fetcher.cached(k, Role::Image),
        })
        .collect();
    if o.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<6} {:<6} {:<7} {:<18} {:<28} {:<9} {:<8} {:<6}",
            "SERIES", "ARCH", "KIND", "SUITE", "RELEASE", "KERNEL", "HEADERS", "IMAGE"
        );
        let yes = |b: bool, applies: bool| {
            if !applies {
                "-"
            } else if b {
                "cached"
            } else {
                "missing"
            }
        };
        for r in &rows {
            println!(
                "{:<6} {:<6} {:<7} {:<18} {:<28} {:<9} {:<8} {:<6}",
                r.series,
                r.arch,
                if r.bucket { "bucket" } else { "boot" },
                r.suite,
                r.release,
                r.kernel_version,
                yes(r.headers_cached, r.bucket),
                yes(r.image_cached, true)
            );
        }
        println!("cache: {}", fetcher.cache().display());
    }
    if let Err(e) = check {
        eprintln!("warning: {e:#}");
    }
    Ok(())
}
