//! The pipeline's own checks: the mirror resolves the matrix, a cold then warm fetch, the
//! build of every cell and its no-op rebuild, the verifier on what was built, and a signed
//! release of it installed and chosen from.

use anyhow::{ensure, Context, Result};
use xshell::cmd;

use super::{all_cells, select, Verdict};
use crate::compile;
use crate::debian::mirror::Mirror;
use crate::debian::signature::ArchiveKeyring;
use crate::kernels::{self, fetch::Fetcher, spec::Lock};
use crate::{host, paths, process};

/// Resolves the matrix from the real mirror into a scratch file: every series must resolve.
/// A newer pin than the committed lock is reported, not failed: the archive moves on.
pub fn live_lock() -> Result<Verdict> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().join("kernels.lock");
    let out = kernels::lock::run(
        &Mirror::discover()?,
        &ArchiveKeyring::discover()?,
        &paths::kernels_toml(),
        &scratch,
        &[],
    )?;
    let committed = Lock::load(&paths::kernels_lock())?;
    for arch in out.lock.arches() {
        for k in out.lock.kernels(arch) {
            let pinned = committed
                .kernels(arch)
                .iter()
                .find(|c| c.series == k.series);
            if pinned.map(|c| &c.release) != Some(&k.release) {
                eprintln!("e2e: note: the mirror now offers {} for {} ({arch}); `cargo xtask kernels lock` would move to it", k.release, k.series);
            }
        }
    }
    Ok(Verdict::Passed)
}

/// Fetches the oldest bucket into a fresh cache, checks the tree, and fetches it again:
/// the second fetch must download nothing.
pub fn fetch() -> Result<Verdict> {
    let (_, lock) = kernels::load_checked_lock()?;
    let k = lock
        .kernel
        .iter()
        .find(|k| k.bucket)
        .context("no bucket in the lock")?;
    let cache = tempfile::tempdir()?;
    let mut f = Fetcher::new(cache.path().to_path_buf());
    let tree = f.headers(k)?;
    for must in [
        tree.flavour_dir.join("include/generated/autoconf.h"),
        tree.flavour_dir.join(".config"),
        tree.common_dir.join("include/linux/sched.h"),
        tree.common_dir.join("include/uapi/linux/bpf.h"),
    ] {
        ensure!(
            must.is_file(),
            "{} is missing from the unpacked tree",
            must.display()
        );
    }
    let autoconf = std::fs::read_to_string(tree.flavour_dir.join("include/generated/autoconf.h"))?;
    ensure!(
        autoconf.contains("CONFIG_BPF_SYSCALL"),
        "autoconf.h lacks CONFIG_BPF_SYSCALL"
    );
    let cold = f.downloaded_bytes;
    ensure!(cold > 0, "a cold fetch downloaded nothing");
    let mut warm = Fetcher::with_mirror(
        cache.path().to_path_buf(),
        Mirror {
            main: "http://127.0.0.1:9/unreachable".into(),
            security: "http://127.0.0.1:9/unreachable".into(),
        },
    );
    let again = warm.headers(k)?;
    ensure!(
        warm.downloaded_bytes == 0 && again.flavour_dir == tree.flavour_dir,
        "the warm fetch did network I/O"
    );
    Ok(Verdict::Passed)
}

/// Builds everything (from the compile cache when warm), then again: nothing may compile.
pub fn build() -> Result<Verdict> {
    let first = compile::build(&compile::Project::checkout(), &all_cells())?;
    ensure!(
        first.failures.is_empty(),
        "build failed:\n{}",
        first.failures.join("\n")
    );
    let n_cells = first.cells.len();
    ensure!(
        first.cells.iter().all(|c| c.ok && c.tarball.is_some()),
        "a cell has no tarball"
    );
    let again = compile::build(&compile::Project::checkout(), &all_cells())?;
    ensure!(
        again.compiled == 0,
        "a rebuild with unchanged inputs compiled {} jobs",
        again.compiled
    );
    eprintln!(
        "e2e: {n_cells} cells, {} jobs; first pass compiled {}, no-op rebuild {:.2} s",
        again.cached, first.compiled, again.seconds
    );
    Ok(Verdict::Passed)
}

pub fn verify() -> Result<Verdict> {
    crate::verify::run(crate::verify::VerifyOptions {
        paths: vec![paths::cells_dir()],
        json: false,
    })?;
    Ok(Verdict::Passed)
}

/// A release of the cells just built, signed with a throw-away key, checked by us and by the
/// reference tools (`minisign -V`, `sha256sum -c`, `tar -tJf`); packaged twice, identical.
pub fn package() -> Result<Verdict> {
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let cells = paths::cells_dir();
    let a =
        crate::package::build_release("v0.0.0-e2e", &cells, Some(&sk), &kc_common::Arch::RELEASED)?;
    let b =
        crate::package::build_release("v0.0.0-e2e", &cells, Some(&sk), &kc_common::Arch::RELEASED)?;
    ensure!(a.files == b.files, "two packages of the same cells differ");
    // Built elsewhere (another checkout, a CD job), the release is the same bytes: no file
    // carries where this checkout is.
    let root = paths::project_root().display().to_string();
    for (name, bytes) in &a.files {
        ensure!(
            !bytes.windows(root.len()).any(|w| w == root.as_bytes()),
            "{name} contains this checkout's path {root}: a build elsewhere would differ"
        );
    }
    let dir = tempfile::tempdir()?;
    for (name, bytes) in &a.files {
        std::fs::write(dir.path().join(name), bytes)?;
    }
    kc_common::release::check_release_dir(dir.path(), &pk)?;
    let pub_file = dir.path().join("test.pub");
    std::fs::write(&pub_file, &pk)?;
    let sh = process::shell_in(dir.path());
    for name in a.files.keys().filter(|n| !n.ends_with(".minisig")) {
        process::output(cmd!(sh, "minisign -Vm {name} -p {pub_file}"))?;
        if name.ends_with(".tar.xz") {
            process::output(cmd!(sh, "tar -tJf {name}"))?;
        }
    }
    process::output(cmd!(sh, "sha256sum --quiet -c sha256sums.txt"))?;
    // The downstream installer takes it too, for the running kernel.
    let release = crate::paths::running_kernel_release()?;
    let prefix = tempfile::tempdir()?;
    let installed = kc_install::install(&kc_install::Options {
        from: dir.path().display().to_string(),
        tag: "v0.0.0-e2e".into(),
        pubkey: pk.clone(),
        prefix: prefix.path().to_path_buf(),
        libc: host::host_libc(),
        arch: kc_common::host::host_arch()?,
        kernel: release,
        only_bucket: false,
        keep: 2,
        limits: Default::default(),
    })?;
    eprintln!("e2e: kc-install: {installed:?}");
    select::check_installed_release(prefix.path())?;
    eprintln!("e2e: release of {} files, {} bytes, reproducible and verified by minisign, sha256sum and tar", a.files.len(), a.files.values().map(Vec::len).sum::<usize>());
    Ok(Verdict::Passed)
}
