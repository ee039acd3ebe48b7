//! The `kc-select` that releases carry: the workspace's `kc-select` crate built for each
//! architecture with glibc linked in statically, so one binary serves glibc and musl hosts and
//! an initramfs alike (another architecture's is cross-linked with Debian's cross gcc). Source
//! paths are remapped: the bytes do not depend on where the tree or the crate cache sit.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use kc_common::release::ReleaseTool;
use kc_common::Arch;
use xshell::cmd;

use super::toolchain::gnu_triple;
use crate::{host, paths, process};

/// Rust's target for `arch`'s static glibc executables.
const fn rust_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-unknown-linux-gnu",
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

/// A static executable of the workspace that runs on a host or in a guest without a libc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// The release's kc-select: small and reproducible (profile `release-tool`).
    Select,
    /// The Rust consumer vmtest runs in its guests (a dev build: never shipped).
    Agent,
    /// The release's kc-exporter (profile `release-tool`).
    Exporter,
    /// kc-agent built as the shipped tools are (profile `release-tool`): what the benches
    /// measure (a dev build costs several times as much per row read).
    BenchAgent,
}

impl Tool {
    /// Its file in a tools directory (`cargo xtask tools`).
    pub fn file_name(self, arch: Arch) -> String {
        format!("{}-{arch}", self.package())
    }

    /// The tool a release carries as `t`.
    pub const fn shipped(t: ReleaseTool) -> Tool {
        match t {
            ReleaseTool::Select => Tool::Select,
            ReleaseTool::Exporter => Tool::Exporter,
        }
    }

    const fn package(self) -> &'static str {
        match self {
            Tool::Select => ReleaseTool::Select.program(),
            Tool::Agent | Tool::BenchAgent => "kc-agent",
            Tool::Exporter => ReleaseTool::Exporter.program(),
        }
    }

    /// (cargo's `--profile`, the directory it builds into).
    const fn profile(self) -> (&'static str, &'static str) {
        match self {
            Tool::Select | Tool::Exporter | Tool::BenchAgent => ("release-tool", "release-tool"),
            Tool::Agent => ("dev", "debug"),
        }
    }
}

/// Builds `arch`'s kc-select (cargo skips an unchanged build) and returns its bytes and the
/// rustc that built it; once per process and architecture.
pub fn build(arch: Arch) -> Result<(Vec<u8>, String)> {
    build_tool(Tool::Select, arch)
}

/// A built tool's bytes and the rustc that built it.
type Built = (Vec<u8>, String);

/// The environment variable naming a directory of tools a workflow's job built once
/// (`cargo xtask tools --out`): where set, tools are read from it and never built.
pub const TOOLS_VAR: &str = "KC_TOOLS_DIR";

/// [`build`] for any [`Tool`], or the one in `KC_TOOLS_DIR` where that is set.
pub fn build_tool(tool: Tool, arch: Arch) -> Result<Built> {
    static BUILT: Mutex<BTreeMap<(Tool, Arch), Built>> = Mutex::new(BTreeMap::new());
    if let Some(b) = BUILT.lock().expect("tool builds").get(&(tool, arch)) {
        return Ok(b.clone());
    }
    // A tools directory holds the shipped tools and the dev kc-agent, never the benches'.
    let prebuilt =
        std::env::var_os(TOOLS_VAR).filter(|d| !d.is_empty() && tool != Tool::BenchAgent);
    let built = match prebuilt {
        Some(dir) => {
            let built = crate::tools::prebuilt(Path::new(&dir), tool, arch)?;
            check_static(&built.0, arch, &tool.file_name(arch))?;
            built
        }
        None => build_now(tool, arch)?,
    };
    BUILT
        .lock()
        .expect("tool builds")
        .insert((tool, arch), built.clone());
    Ok(built)
}

fn build_now(tool: Tool, arch: Arch) -> Result<(Vec<u8>, String)> {
    let root = paths::project_root();
    let sh = process::shell_in(&root);
    let verbose = process::read(cmd!(sh, "rustc -vV"))?;
    let host_triple = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` names no host triple")?
        .to_string();
    let version = verbose.lines().next().unwrap_or_default().to_string();
    let triple = if host::host_arch().ok() == Some(arch) {
        host_triple
    } else {
        // rustup's standard library for the target, Debian's cross gcc as the linker.
        let target = rust_target(arch);
        let installed =
            process::read(cmd!(sh, "rustup target list --installed")).unwrap_or_default();
        if !installed.lines().any(|l| l.trim() == target) {
            bail!("the Rust target {target} is not installed (the {arch} kc-select): run `cargo xtask setup`");
        }
        let linker = format!("{}-gcc", gnu_triple(arch));
        if !process::exists(&linker) {
            bail!(
                "{linker} is not installed (links the {arch} {}): run `cargo xtask setup`",
                tool.package()
            );
        }
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        sh.set_var(var, linker);
        target.to_string()
    };
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    // With --target the flags reach the binary only, not build scripts or proc macros; a
    // plain static executable (not static-pie) needs no loader and no self-relocation. The
    // workspace's own sources reach rustc by relative paths, so the checkout's path is in
    // neither the binary nor these flags: checkouts elsewhere (a CD's jobs) share the
    // dependencies' builds and make the same bytes.
    let flags = format!(
        "-C target-feature=+crt-static -C relocation-model=static --remap-path-prefix={}=/cargo",
        cargo_home.display()
    );
    // Beside the workspace's builds (CI shares CARGO_TARGET_DIR between jobs); the shipped
    // programs share one directory, so that what they share (kc-common, kc-select's library)
    // builds once.
    let (package, (profile, out)) = (tool.package(), tool.profile());
    let dir = match tool {
        Tool::Select | Tool::Exporter | Tool::BenchAgent => "release-tools",
        Tool::Agent => package,
    };
    let target_dir = paths::cargo_target_dir().join("kc-build").join(dir);
    let _env = sh.push_env("RUSTFLAGS", flags);
    process::output(cmd!(
        sh,
        "cargo build --locked --quiet -p {package} --profile {profile} --target {triple} --target-dir {target_dir}"
    ))
    .with_context(|| format!("building the static {package}"))?;
    let bin = target_dir.join(&triple).join(out).join(package);
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    check_static(&bytes, arch, &bin.display().to_string())?;
    Ok((bytes, version))
}

/// `bytes` (named `what`) are a static `arch` executable.
fn check_static(bytes: &[u8], arch: Arch, what: &str) -> Result<()> {
    if host::executable_arch(bytes).map_err(anyhow::Error::msg)? != arch {
        bail!("{what} is not an {arch} executable");
    }
    if !host::is_static_executable(bytes).map_err(anyhow::Error::msg)? {
        bail!("{what} is dynamically linked: the release needs it static");
    }
    Ok(())
}
