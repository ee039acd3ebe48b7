//! The `kc-select` that releases carry: the workspace's `kc-select` crate built for this
//! machine's architecture with glibc linked in statically, so one binary serves glibc and musl
//! hosts and an initramfs alike. Source paths are remapped: the bytes do not depend on where
//! the tree or the crate cache sit.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{host, paths, process};

/// Builds it (cargo skips an unchanged build) and returns its bytes and the rustc that built
/// it; once per process.
pub fn build() -> Result<(Vec<u8>, String)> {
    static BUILT: std::sync::OnceLock<(Vec<u8>, String)> = std::sync::OnceLock::new();
    if let Some(b) = BUILT.get() {
        return Ok(b.clone());
    }
    let built = build_now()?;
    Ok(BUILT.get_or_init(|| built).clone())
}

fn build_now() -> Result<(Vec<u8>, String)> {
    let root = paths::project_root();
    let sh = process::shell_in(&root);
    let verbose = process::read(cmd!(sh, "rustc -vV"))?;
    let triple = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` names no host triple")?
        .to_string();
    let version = verbose.lines().next().unwrap_or_default().to_string();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    // With --target the flags reach the binary only, not build scripts or proc macros; a
    // plain static executable (not static-pie) needs no loader and no self-relocation.
    let flags = format!(
        "-C target-feature=+crt-static -C relocation-model=static --remap-path-prefix={}=/kc --remap-path-prefix={}=/cargo",
        root.display(),
        cargo_home.display()
    );
    // Beside the workspace's builds (CI shares CARGO_TARGET_DIR between jobs).
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("kc-build/kc-select");
    let _env = sh.push_env("RUSTFLAGS", flags);
    process::output(cmd!(
        sh,
        "cargo build --locked --quiet -p kc-select --profile release-tool --target {triple} --target-dir {target_dir}"
    ))
    .context("building the release's static kc-select")?;
    let bin = target_dir.join(&triple).join("release-tool/kc-select");
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if !host::is_static_executable(&bytes).map_err(anyhow::Error::msg)? {
        bail!(
            "{} is dynamically linked: the release needs it static",
            bin.display()
        );
    }
    Ok((bytes, version))
}
