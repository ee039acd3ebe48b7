//! `cargo xtask dist` (the main job) and `cargo xtask test` (every test, then end-to-end
//! checks against the real mirror).

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::debian::mirror::Mirror;
use crate::kernels::{self, fetch::Fetcher, matrix::Lock};
use crate::{paths, setup};

#[derive(Debug, Args)]
pub struct DistOptions {
    /// Skip the kernel images (only headers for the legacy build)
    #[arg(long)]
    pub no_images: bool,
}

#[derive(Debug, Args)]
pub struct TestOptions {
    /// Run only `cargo test`, not the end-to-end checks that need the mirror
    #[arg(long)]
    pub unit_only: bool,
}

pub fn dist(o: DistOptions) -> Result<()> {
    setup::run(setup::SetupOptions { check: false })?;
    let (_, lock) = kernels::load_checked_lock()?;
    let mut fetcher = Fetcher::new(paths::cache_dir());
    let started = Instant::now();
    for k in &lock.kernel {
        if k.bucket {
            let tree = fetcher.headers(k)?;
            eprintln!(
                "dist: headers {:<5} {}",
                k.series.to_string(),
                tree.flavour_dir.display()
            );
        }
        if !o.no_images {
            let v = fetcher.image(k)?;
            eprintln!("dist: image   {:<5} {}", k.series.to_string(), v.display());
        }
    }
    eprintln!(
        "dist: {} kernels ready in {:.1} s ({:.1} MiB downloaded)",
        lock.kernel.len(),
        started.elapsed().as_secs_f64(),
        fetcher.downloaded_bytes as f64 / 1048576.0
    );
    Ok(())
}

pub fn test(o: TestOptions) -> Result<()> {
    setup::run(setup::SetupOptions { check: false })?;
    let sh = Shell::new()?;
    sh.change_dir(paths::project_root());
    cmd!(sh, "cargo test --workspace --locked")
        .run()
        .context("cargo test failed")?;
    if o.unit_only {
        return Ok(());
    }
    let checks: [(&str, fn() -> Result<()>); 3] = [
        ("lock covers the matrix", check_lock),
        ("live mirror resolves the matrix", check_live_lock),
        ("fetch of the oldest bucket, cold then warm", check_fetch),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        let t = Instant::now();
        match check() {
            Ok(()) => {
                passed += 1;
                eprintln!("e2e: {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                failed += 1;
                eprintln!("e2e: {name} ... FAILED: {e:#}");
            }
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} end-to-end checks failed");
    }
    Ok(())
}

fn check_lock() -> Result<()> {
    kernels::load_checked_lock().map(|_| ())
}

/// Resolves the matrix from the real mirror into a scratch file: every series must resolve.
/// A newer pin than the committed lock is reported, not failed: the archive moves on.
fn check_live_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().join("kernels.lock");
    let out = kernels::lock::run(&Mirror::discover()?, &paths::kernels_toml(), &scratch)?;
    let committed = Lock::load(&paths::kernels_lock())?;
    for k in &out.lock.kernel {
        if committed.kernel(k.series).map(|c| &c.release) != Some(&k.release) {
            eprintln!("e2e: note: the mirror now offers {} for {}; `cargo xtask kernels lock` would move to it", k.release, k.series);
        }
    }
    Ok(())
}

/// Fetches the oldest bucket into a fresh cache, checks the tree, and fetches it again:
/// the second fetch must download nothing.
fn check_fetch() -> Result<()> {
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
    Ok(())
}
