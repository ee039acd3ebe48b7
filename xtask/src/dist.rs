//! `cargo xtask dist`: the main job. Check the lock, build every cell (both libcs in Docker
//! when a daemon answers, else the host's libc with the host's tools), fetch every kernel,
//! optionally boot them all, and package the release.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use kc_common::{Arch, CellId, Libc};

use crate::cli::LibcChoice;
use crate::compile::{self, BuildOptions};
use crate::kernels::{self, fetch::Fetcher};
use crate::{paths, setup};

#[derive(Debug, Args)]
pub struct DistOptions {
    /// Skip the kernel images (only headers for the legacy build)
    #[arg(long)]
    pub no_images: bool,
    /// The release tag (default: v0.0.0-dev)
    #[arg(long, default_value = "v0.0.0-dev")]
    pub tag: String,
    /// Fail when no signing key is given (KC_SIGNING_KEY or --key)
    #[arg(long)]
    pub require_signature: bool,
    /// The minisign secret key file
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// Also boot every kernel of the matrix and prove every object loads, attaches and counts
    #[arg(long)]
    pub vmtest: bool,
    /// The libcs to build (default: both in Docker when a daemon answers, else the host's own)
    #[arg(long, value_enum)]
    pub libc: Option<LibcChoice>,
}

pub fn run(o: DistOptions) -> Result<()> {
    setup::run(setup::SetupOptions {
        check: false,
        role: setup::Role::All,
    })?;
    let (_, lock) = kernels::load_checked_lock()?;
    // Docker (both libcs) when a daemon answers, else the host's libc with the host's tools;
    // every released architecture (another than the host's with its cross toolchain).
    for arch in Arch::RELEASED {
        compile::run(BuildOptions {
            backend: None,
            arch,
            ..BuildOptions::everything(compile::Backend::Host, o.libc)
        })?;
    }
    let mut fetcher = Fetcher::new(paths::cache_dir());
    let started = Instant::now();
    let kernels: Vec<_> = Arch::RELEASED
        .iter()
        .flat_map(|&a| lock.kernels(a))
        .collect();
    for k in &kernels {
        if k.bucket {
            let tree = fetcher.headers(k)?;
            eprintln!(
                "dist: headers {} {:<5} {}",
                k.arch,
                k.series.to_string(),
                tree.flavour_dir.display()
            );
        }
        if !o.no_images {
            let v = fetcher.image(k)?;
            eprintln!(
                "dist: image   {} {:<5} {}",
                k.arch,
                k.series.to_string(),
                v.display()
            );
        }
    }
    eprintln!(
        "dist: {} kernels ready in {:.1} s ({:.1} MiB downloaded)",
        kernels.len(),
        started.elapsed().as_secs_f64(),
        fetcher.downloaded_bytes as f64 / 1048576.0
    );
    if o.vmtest {
        // The release's vmtest runs, of the libcs that were built.
        let libcs = o.libc.map_or(Libc::ALL.to_vec(), LibcChoice::libcs);
        for run in crate::matrix::vmtest_runs(&Arch::RELEASED, &libcs) {
            let core = CellId::core(run.libc).on(run.arch);
            if !paths::cell_dir(core).is_dir() {
                eprintln!(
                    "dist: no {core} cell was built (its libc needs Docker here): the {} kernels are not booted with the {} loader",
                    run.arch, run.libc
                );
                continue;
            }
            crate::vmtest::run(crate::vmtest::VmtestOptions {
                kernels: vec![],
                collectors: vec![],
                jobs: 2,
                agent: None,
                timeout: crate::vmtest::DEFAULT_TIMEOUT,
                accel: crate::vmtest::Accel::Auto,
                libc: Some(LibcChoice::from(run.libc)),
                arch: run.arch,
                json: false,
                update_baseline: false,
                slots: None,
            })?;
        }
    }
    crate::package::package(crate::package::PackageOptions {
        tag: o.tag,
        key: o.key,
        require_signature: o.require_signature,
        cells: paths::CELLS.into(),
        out: paths::RELEASE.into(),
    })
}
