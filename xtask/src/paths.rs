//! Where things live: the checkout, the download cache, the artifacts.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The checkout's root (the workspace that holds `xtask/`): the one `cargo xtask` runs in
/// (cargo sets `CARGO_MANIFEST_DIR` for the process it runs), else the checkout the current
/// directory is (the workflows run the built binary from the checkout's root), else the one
/// this binary was built in. Checkouts that share a target directory (the rehearsal's jobs)
/// may run a binary built in another checkout of the same sources; each works in its own.
/// Found once (see `process::forget_cargo_run`: what it is found from is then gone).
pub fn project_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(find_project_root).clone()
}

fn find_project_root() -> PathBuf {
    let is_checkout =
        |d: &Path| d.join("xtask/Cargo.toml").is_file() && d.join("Cargo.toml").is_file();
    let from_cargo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.ends_with("xtask"))
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .filter(|d| is_checkout(d));
    let from_cwd = || std::env::current_dir().ok().filter(|d| is_checkout(d));
    from_cargo.or_else(from_cwd).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf()
    })
}

/// `KC_CACHE_DIR`, else `$XDG_CACHE_HOME/kernel-collector`, else `~/.cache/kernel-collector`.
/// Downloads and unpacked kernel trees live here, outside the checkout, shared by checkouts.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("KC_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("kernel-collector")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/kernel-collector")))
        .unwrap_or_else(|| project_root().join("target/kc-cache"))
}

/// Cargo's target directory for this checkout: `CARGO_TARGET_DIR` where set (`.ci/run` points
/// it at a cache shared by clean clones, as the workflows' caches share `target/`), else the
/// checkout's `target/`.
pub fn cargo_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// The environment variable that moves the build's compile cache and scratch space out of the
/// checkout: `.ci/run` points it at a cache shared by clean clones, as it does cargo's target
/// directory (on GitHub, ci.yml's cache of `target/` carries it).
pub const BUILD_WORK_VAR: &str = "KC_BUILD_DIR";

/// The build's compile cache (keyed by every input) and scratch space: `KC_BUILD_DIR` where
/// set, else the checkout's `target/kc-build`.
pub fn build_work_dir() -> PathBuf {
    std::env::var_os(BUILD_WORK_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| project_root().join("target/kc-build"), PathBuf::from)
}

/// Where `cargo xtask build` writes the cells and `package` the release, under the checkout
/// (the commands' defaults spell these).
pub const CELLS: &str = "artifacts/cells";
pub const RELEASE: &str = "artifacts/release";

/// The directory of every built cell.
pub fn cells_dir() -> PathBuf {
    project_root().join(CELLS)
}

/// A path given on the command line: as is when absolute, else under the checkout (the
/// commands' defaults are relative to it, wherever they are run from).
pub fn in_root(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        project_root().join(p)
    }
}

/// One built cell's directory.
pub fn cell_dir(id: kc_common::CellId) -> PathBuf {
    cells_dir().join(id.to_string())
}

pub fn kernels_toml() -> PathBuf {
    project_root().join("kernels.toml")
}

pub fn kernels_lock() -> PathBuf {
    project_root().join("kernels.lock")
}

/// What `uname -r` prints for the running kernel.
pub fn running_kernel_release() -> anyhow::Result<String> {
    use anyhow::Context;
    Ok(std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the running kernel's release")?
        .trim()
        .to_string())
}

/// This xtask binary, which a cell's container and the bitcode lowering (`bpf-codegen`) run.
/// Under `cargo test` the running binary is the test harness
/// (`target/<profile>/deps/xtask-<hash>`); the xtask binary is beside `deps/`.
///
/// Outside tests this is `/proc/self/exe`, which still reads as this binary after a `cargo
/// build` replaced the file on disk (as `cargo test` of the workspace can do meanwhile).
pub fn xtask_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let in_deps = exe.parent().is_some_and(|d| d.ends_with("deps"));
    if !in_deps {
        return Ok(PathBuf::from("/proc/self/exe"));
    }
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("xtask"))
        .context("locating the xtask binary")?;
    if !bin.is_file() {
        bail!("{} is missing: run `cargo build -p xtask`", bin.display());
    }
    Ok(bin)
}
