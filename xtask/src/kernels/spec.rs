//! The kernel matrix's two files: `kernels.toml` (what we want: series, suites, which are
//! buckets) and `kernels.lock` (its resolved pins). `cargo xtask matrix` is the CI cells.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kc_common::Bucket;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub flavour: String,
    pub kernel: Vec<MatrixKernel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixKernel {
    pub series: Bucket,
    pub suites: Vec<String>,
    #[serde(default)]
    pub bucket: bool,
}

impl Matrix {
    pub fn parse(text: &str) -> Result<Self> {
        let m: Matrix = toml::from_str(text)?;
        if m.kernel.is_empty() {
            bail!("no [[kernel]] entry");
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &m.kernel {
            if !seen.insert(k.series) {
                bail!("series {} is listed twice", k.series);
            }
            if k.suites.is_empty() {
                bail!("series {} lists no suite", k.series);
            }
        }
        Ok(m)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("{} is not a valid kernel matrix", path.display()))
    }
}

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub lock_version: u32,
    pub flavour: String,
    pub kernel: Vec<LockedKernel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedKernel {
    pub series: Bucket,
    pub bucket: bool,
    pub suite: String,
    /// The Debian ABI, e.g. `6.1.0-50` or `7.2.12+deb13`.
    pub abi: String,
    /// What `uname -r` prints on this kernel, e.g. `6.1.0-50-cloud-amd64`.
    pub release: String,
    /// The upstream kernel version, e.g. `6.1.176` (its `LINUX_VERSION_CODE`).
    pub kernel_version: String,
    pub package: Vec<LockedPackage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The flavour's prepared headers (generated files, `.config`).
    Headers,
    /// The flavour-independent headers the flavour package depends on.
    HeadersCommon,
    /// The package that carries `/boot/vmlinuz-<release>` (and, before the 7.x packaging
    /// split, its modules).
    Image,
    /// Since the split, the package that carries the image's modules (`linux-modules-*`):
    /// vmtest loads the MD and file system modules from it.
    Modules,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub role: Role,
    pub name: String,
    pub version: String,
    /// Pool path relative to the archive root of `suite`.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

impl LockedKernel {
    pub fn package(&self, role: Role) -> Option<&LockedPackage> {
        self.package.iter().find(|p| p.role == role)
    }
}

const LOCK_HEADER: &str = "\
# kernels.lock: the exact Debian packages behind kernels.toml.
# Written by `cargo xtask kernels lock`; do not edit by hand. Re-run it to move to newer ABIs.
";

impl Lock {
    pub fn to_toml(&self) -> String {
        format!(
            "{LOCK_HEADER}\n{}",
            toml::to_string(self).expect("the lock serializes")
        )
    }

    pub fn parse(text: &str) -> Result<Self> {
        let lock: Lock = toml::from_str(text)?;
        if lock.lock_version != LOCK_VERSION {
            bail!(
                "lock_version {} is not the {LOCK_VERSION} this xtask writes; run `cargo xtask kernels lock`",
                lock.lock_version
            );
        }
        Ok(lock)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {} (run `cargo xtask kernels lock` to create it)",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| {
            format!(
                "{} is malformed; run `cargo xtask kernels lock` to rewrite it",
                path.display()
            )
        })
    }

    /// The series that are buckets (have headers for legacy builds).
    pub fn buckets(&self) -> Vec<Bucket> {
        self.kernel
            .iter()
            .filter(|k| k.bucket)
            .map(|k| k.series)
            .collect()
    }

    pub fn kernel(&self, series: Bucket) -> Option<&LockedKernel> {
        self.kernel.iter().find(|k| k.series == series)
    }

    /// Checks that the lock pins exactly the matrix's entries (no network).
    pub fn check_against(&self, m: &Matrix) -> Result<()> {
        let mut problems = Vec::new();
        if self.flavour != m.flavour {
            problems.push(format!(
                "flavour is {} in the lock, {} in the matrix",
                self.flavour, m.flavour
            ));
        }
        for want in &m.kernel {
            match self.kernel(want.series) {
                None => problems.push(format!("series {} is not locked", want.series)),
                Some(k) => {
                    if k.bucket != want.bucket {
                        problems.push(format!(
                            "series {}: bucket = {} in the lock, {} in the matrix",
                            k.series, k.bucket, want.bucket
                        ));
                    }
                    if !want.suites.contains(&k.suite) {
                        problems.push(format!(
                            "series {}: locked from suite {}, not one of {:?}",
                            k.series, k.suite, want.suites
                        ));
                    }
                    let roles: Vec<Role> = k.package.iter().map(|p| p.role).collect();
                    let need: &[Role] = if want.bucket {
                        &[Role::Headers, Role::HeadersCommon, Role::Image]
                    } else {
                        &[Role::Image]
                    };
                    for r in need {
                        if !roles.contains(r) {
                            problems.push(format!("series {}: no {r:?} package locked", k.series));
                        }
                    }
                }
            }
        }
        for k in &self.kernel {
            if !m.kernel.iter().any(|w| w.series == k.series) {
                problems.push(format!(
                    "series {} is locked but not in the matrix",
                    k.series
                ));
            }
        }
        if !problems.is_empty() {
            bail!("kernels.lock does not match kernels.toml:\n  - {}\nRun `cargo xtask kernels lock` to re-resolve it.", problems.join("\n  - "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_matrix_parses_and_has_the_required_buckets() {
        let m = Matrix::load(&crate::paths::kernels_toml()).unwrap();
        let buckets: Vec<String> = m
            .kernel
            .iter()
            .filter(|k| k.bucket)
            .map(|k| k.series.to_string())
            .collect();
        for want in ["5.10", "6.1", "6.12", "7.2"] {
            assert!(buckets.contains(&want.to_string()), "{buckets:?}");
        }
        let series: Vec<String> = m.kernel.iter().map(|k| k.series.to_string()).collect();
        for want in [
            "5.10", "6.1", "6.12", "6.16", "6.17", "6.18", "6.19", "7.0", "7.1", "7.2", "7.3",
        ] {
            assert!(series.contains(&want.to_string()), "{series:?}");
        }
    }

    #[test]
    fn the_committed_lock_matches_the_matrix() {
        let m = Matrix::load(&crate::paths::kernels_toml()).unwrap();
        let lock = Lock::load(&crate::paths::kernels_lock()).unwrap();
        lock.check_against(&m).unwrap();
        // Serialization is stable: what is committed is what the lock writes.
        let text = std::fs::read_to_string(crate::paths::kernels_lock()).unwrap();
        assert_eq!(lock.to_toml(), text);
    }

    #[test]
    fn bad_matrices() {
        for (text, want) in [
            ("flavour = \"x\"\nkernel = []\n", "no [[kernel]]"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = []\n", "no suite"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n", "twice"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"six\"\nsuites = [\"a\"]\n", "MAJOR.MINOR"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\nbukket = true\n", "unknown field"),
        ] {
            let err = format!("{:#}", Matrix::parse(text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
