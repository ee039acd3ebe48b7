//! Where things live: the checkout, the download cache, the artifacts.

use std::path::{Path, PathBuf};

/// The checkout's root (the workspace that holds `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
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

pub fn kernels_toml() -> PathBuf {
    project_root().join("kernels.toml")
}

pub fn kernels_lock() -> PathBuf {
    project_root().join("kernels.lock")
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    // Temporary files are created 0600; what we publish is world-readable like any output.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What `uname -r` prints for the running kernel.
pub fn running_kernel_release() -> anyhow::Result<String> {
    use anyhow::Context;
    Ok(std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the running kernel's release")?
        .trim()
        .to_string())
}
