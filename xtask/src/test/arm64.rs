//! The second architecture's cells: arm64's cells of both libcs cross-built in the images
//! (where Docker answers; else the host's libc with the host's cross toolchain), their loaders
//! checked for their ELF machine and the musl one for being static. The `vmtest` check then
//! boots the oldest and newest arm64 kernels under qemu-system-aarch64 with the release
//! installed from them, beside the amd64 matrix.

use anyhow::{ensure, Context, Result};
use kc_common::{Arch, CellId, Libc};

use super::Verdict;
use crate::cli::LibcChoice;
use crate::compile::{self, cell, Backend, BuildOptions, Project};
use crate::paths::cell_dir;
use crate::{host, kernels};

pub fn arm64() -> Result<Verdict> {
    let arch = Arch::Arm64;
    let docker = crate::image::daemon_answers();
    let libcs = if docker {
        let opts = BuildOptions {
            jobs: Some(2),
            arch,
            ..BuildOptions::everything(Backend::Docker, Some(LibcChoice::All))
        };
        compile::docker::run(&opts, &Libc::ALL)?;
        Libc::ALL.to_vec()
    } else {
        eprintln!("e2e: no Docker daemon answers: arm64's cells of the host's libc, with the host's cross toolchain");
        let opts = BuildOptions {
            jobs: Some(2),
            arch,
            ..BuildOptions::everything(Backend::Host, None)
        };
        let report = compile::build(&Project::checkout(), &opts)?;
        ensure!(
            report.failures.is_empty(),
            "arm64 build failures:\n{}",
            report.failures.join("\n")
        );
        vec![host::host_libc()]
    };
    for &libc in &libcs {
        let loader = cell_dir(CellId::core(libc).on(arch)).join(cell::LOADER);
        let bytes =
            std::fs::read(&loader).with_context(|| format!("reading {}", loader.display()))?;
        let machine = host::executable_arch(&bytes).map_err(anyhow::Error::msg)?;
        ensure!(
            machine == arch,
            "{} is an {machine} executable",
            loader.display()
        );
        let is_static = host::is_static_executable(&bytes).map_err(anyhow::Error::msg)?;
        ensure!(
            is_static == (libc == Libc::Musl),
            "{}: static {is_static}, expected a {} link",
            loader.display(),
            if libc == Libc::Musl {
                "static"
            } else {
                "dynamic"
            }
        );
    }
    if docker {
        // The BPF objects do not depend on the loader's libc.
        super::libcs_agree()?;
    }
    Ok(Verdict::Passed)
}

/// The oldest and newest arm64 kernels of the lock: the `vmtest` check boots them beside the
/// amd64 matrix, with the release's static musl loader where the images built it.
pub fn oldest_and_newest() -> Result<Vec<kc_common::Bucket>> {
    let (_, lock) = kernels::load_checked_lock()?;
    let series: Vec<kc_common::Bucket> =
        lock.kernels(Arch::Arm64).iter().map(|k| k.series).collect();
    let oldest = *series.iter().min().context("no arm64 kernels locked")?;
    let newest = *series.iter().max().context("no arm64 kernels locked")?;
    Ok(vec![oldest, newest])
}
