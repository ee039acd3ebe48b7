//! The Docker backend end to end: every cell of both libcs built in the images, against the
//! host backend's cells and the host kernel.

use anyhow::{ensure, Context, Result};
use kc_common::{CellId, Libc};
use xshell::cmd;

use std::time::Instant;

use super::host::host_bucket;
use super::{libcs_agree, Verdict};
use crate::cli::LibcChoice;
use crate::compile::{self, cell, Backend, BuildOptions};
use crate::paths::cell_dir;
use crate::{host, kernels, process};

/// Builds every cell for both libcs in containers, then checks: each glibc cell is byte-identical
/// to the host backend's (built by `check_build`); each musl cell carries the same BPF objects
/// and skeletons as its glibc twin; the musl loader is fully static and loads every object on
/// the host kernel; a second run starts no container; outputs belong to the invoking user; a
/// build container sees no network.
pub fn docker() -> Result<Verdict> {
    if !crate::image::daemon_answers() {
        return Ok(Verdict::Skipped(
            "no Docker daemon answers on this machine".into(),
        ));
    }
    let rt = crate::image::runtime()?;
    let (_, lock) = kernels::load_checked_lock()?;
    let glibc_cells: Vec<CellId> = lock
        .buckets()
        .into_iter()
        .map(|b| CellId::bucket(b, Libc::Glibc))
        .chain([CellId::core(Libc::Glibc)])
        .collect();
    let host_built = glibc_cells
        .iter()
        .map(|id| cell::read_dir(&cell_dir(*id)))
        .collect::<Result<Vec<_>>>()?;
    let opts = BuildOptions {
        jobs: Some(2),
        ..BuildOptions::everything(Backend::Docker, Some(LibcChoice::All))
    };
    let t = Instant::now();
    let first = compile::docker::run(&opts, &Libc::ALL)?;
    let cold = t.elapsed().as_secs_f64();
    for (id, want) in glibc_cells.iter().zip(&host_built) {
        let glibc = cell::read_dir(&cell_dir(*id))?;
        let differ: Vec<&String> = want
            .keys()
            .chain(glibc.keys())
            .filter(|k| want.get(*k) != glibc.get(*k))
            .collect();
        ensure!(
            differ.is_empty(),
            "cell {id}: the docker and host builds differ in {differ:?}"
        );
        let musl_id = CellId::new(id.kind, Libc::Musl);
        let musl = cell::read_dir(&cell_dir(musl_id))?;
        let info: serde_json::Value = serde_json::from_slice(
            musl.get(compile::BUILD_INFO)
                .with_context(|| format!("cell {musl_id} has no {}", compile::BUILD_INFO))?,
        )?;
        ensure!(
            info["libc"] == "musl",
            "cell {musl_id} says libc {}",
            info["libc"]
        );
    }
    libcs_agree()?;
    let loader = cell_dir(CellId::core(Libc::Musl)).join(cell::LOADER);
    ensure!(
        host::is_static_executable(&std::fs::read(&loader)?).map_err(anyhow::Error::msg)?,
        "the musl kc-loader is not static: it has a program interpreter or a dynamic section"
    );
    // The static loader runs on this (glibc) host: the objects load with it too.
    let root = host::is_root();
    if root {
        let legacy = cell::object_files(&cell_dir(CellId::bucket(host_bucket()?, Libc::Musl)))?;
        let sh = process::shell();
        let out = process::output(cmd!(
            sh,
            "{loader} --no-attach --json --embedded {legacy...}"
        ))
        .context("the musl kc-loader failed on the host")?;
        crate::schema::validate_reports(&String::from_utf8_lossy(&out.stdout))
            .context("the musl kc-loader's report")?;
    }
    let t = Instant::now();
    let again = compile::docker::run(&opts, &Libc::ALL)?;
    let warm = t.elapsed().as_secs_f64();
    ensure!(
        again.built.is_empty(),
        "an unchanged matrix started containers again for {:?}",
        again.built
    );
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&loader)?.uid();
    ensure!(
        owner == host::uid_gid().0,
        "outputs belong to uid {owner}, not the invoking user"
    );
    // The no-network guarantee, seen from inside a container configured like a cell's.
    let d = rt.block_on(crate::image::docker())?;
    for libc in Libc::ALL {
        let tag = rt.block_on(crate::image::ensure_image(&d, libc))?;
        let netdev = rt.block_on(compile::container::run_isolated(
            &d,
            &tag,
            &["cat", "/proc/net/dev"],
        ))?;
        let interfaces: Vec<&str> = netdev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        ensure!(
            interfaces == ["lo"],
            "a {libc} build container sees network interfaces {interfaces:?}; only lo was expected"
        );
    }
    eprintln!(
        "e2e: docker: {} cells built in {cold:.1} s (glibc identical to the host's, musl objects identical to glibc's, musl loader static); no-op run {warm:.2} s started no container; containers see only lo",
        first.built.len() + first.up_to_date.len()
    );
    if !root {
        return Ok(Verdict::Skipped(
            "everything but the musl loader's load on the host kernel passed; that needs root"
                .into(),
        ));
    }
    Ok(Verdict::Passed)
}
