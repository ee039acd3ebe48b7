//! Facts about the machine xtask runs on: who we are, its libc, its packages.

use xshell::cmd;

pub use kc_common::host::{executable_arch, host_arch, host_libc, is_static_executable};

use crate::process;

fn status_field(name: &str) -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        // Real, effective, saved, filesystem: the effective id decides permissions.
        .nth(1)?
        .parse()
        .ok()
}

/// The effective user and group ids.
pub fn uid_gid() -> (u32, u32) {
    (
        status_field("Uid:").unwrap_or(u32::MAX),
        status_field("Gid:").unwrap_or(u32::MAX),
    )
}

/// Whether we run as root (loading BPF programs, debootstrap, apt).
/// This boot of the host's kernel (empty where /proc does not say).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn is_root() -> bool {
    uid_gid().0 == 0
}

/// Which of `packages` dpkg does not list as installed.
pub fn missing_packages<'a>(packages: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let sh = process::shell();
    let format = "-f=${Status}";
    packages
        .into_iter()
        .filter(|p| {
            process::read(cmd!(sh, "dpkg-query -W {format} {p}"))
                .map_or(true, |s| !s.contains("install ok installed"))
        })
        .collect()
}

/// Lets dpkg install `arch`'s packages beside the host's (multiarch); apt's next update
/// fetches that architecture's indexes.
pub fn add_foreign_arch(arch: &str) -> Result<(), process::ToolError> {
    let sh = process::shell();
    let known = process::read(cmd!(sh, "dpkg --print-foreign-architectures"))?;
    if known.lines().any(|l| l.trim() == arch) {
        return Ok(());
    }
    eprintln!("setup: adding the dpkg architecture {arch} (multiarch libraries)");
    process::output(cmd!(sh, "dpkg --add-architecture {arch}")).map(|_| ())
}

/// Installs Debian packages with apt (as root), refreshing the indexes first when asked.
pub fn apt_install(packages: &[&str], update: bool) -> Result<(), process::ToolError> {
    let sh = process::shell();
    sh.set_var("DEBIAN_FRONTEND", "noninteractive");
    if update {
        process::stream(cmd!(sh, "apt-get update -q"))?;
    }
    process::stream(cmd!(
        sh,
        "apt-get install -y -q --no-install-recommends {packages...}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_files_we_create() {
        use std::os::unix::fs::MetadataExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        let meta = f.as_file().metadata().unwrap();
        assert_eq!(uid_gid(), (meta.uid(), meta.gid()));
        assert_eq!(is_root(), meta.uid() == 0);
    }

    #[test]
    fn dpkg_knows_its_own_package_and_not_a_made_up_one() {
        if !process::exists("dpkg-query") {
            kc_common::skip::skip(
                "dpkg_knows_its_own_package_and_not_a_made_up_one",
                "no dpkg on this host",
            );
            return;
        }
        assert_eq!(
            missing_packages(["dpkg", "kc-no-such-package"]),
            ["kc-no-such-package"]
        );
    }
}
