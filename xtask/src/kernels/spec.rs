//! The kernel matrix's two files: `kernels.toml` (what we want: series, suites, which are
//! buckets) and `kernels.lock` (its resolved pins). `cargo xtask matrix` is the CI cells.

use std::path::Path;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kc_common::{Arch, Bucket};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The amd64 flavour (the top level is amd64: the matrix began with it).
    pub flavour: String,
    pub kernel: Vec<MatrixKernel>,
    /// Every other architecture: its flavour and which of the entries it has.
    #[serde(default)]
    pub arch: BTreeMap<Arch, ArchMatrix>,
}

/// `[arch.<arch>]`: the entries of the matrix an architecture also has, from its flavour's
/// packages (`binary-<arch>` indexes of the same suites); buckets stay buckets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchMatrix {
    pub flavour: String,
    pub series: Vec<Bucket>,
    /// Where this architecture takes a series from other suites than amd64 does.
    #[serde(default)]
    pub suites: BTreeMap<Bucket, Vec<String>>,
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
        for (arch, a) in &m.arch {
            if *arch == Arch::Amd64 {
                bail!("[arch.amd64]: amd64 is the top level (flavour, [[kernel]])");
            }
            if let Some(s) = a.series.iter().find(|s| !seen.contains(s)) {
                bail!("[arch.{arch}] lists series {s}, which has no [[kernel]] entry");
            }
            for (s, suites) in &a.suites {
                if !a.series.contains(s) {
                    bail!("[arch.{arch}.suites] names series {s}, which [arch.{arch}] series does not list: add it there or drop the line");
                }
                if suites.is_empty() {
                    bail!("[arch.{arch}.suites] gives series {s} no suite: list one, or drop the line to use the [[kernel]] entry's");
                }
            }
        }
        Ok(m)
    }

    /// The architectures the matrix covers: amd64, then each `[arch.<arch>]`.
    pub fn arches(&self) -> Vec<Arch> {
        amd64_then(self.arch.keys())
    }

    /// The matrix of one architecture alone, with that architecture's flavour.
    pub fn for_arch(&self, arch: Arch) -> Option<Matrix> {
        let (flavour, kernel) = match arch {
            Arch::Amd64 => (self.flavour.clone(), self.kernel.clone()),
            _ => {
                let a = self.arch.get(&arch)?;
                let kernel = self
                    .kernel
                    .iter()
                    .filter(|k| a.series.contains(&k.series))
                    .map(|k| MatrixKernel {
                        suites: a.suites.get(&k.series).unwrap_or(&k.suites).clone(),
                        ..k.clone()
                    })
                    .collect();
                (a.flavour.clone(), kernel)
            }
        };
        Some(Matrix {
            flavour,
            kernel,
            arch: BTreeMap::new(),
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("{} is not a valid kernel matrix", path.display()))
    }
}

/// amd64 (the top level of both files), then each `[arch.<arch>]` table's architecture.
fn amd64_then<'a>(tables: impl Iterator<Item = &'a Arch>) -> Vec<Arch> {
    std::iter::once(Arch::Amd64)
        .chain(tables.copied())
        .collect()
}

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub lock_version: u32,
    /// The amd64 flavour and kernels (the top level, as in kernels.toml).
    pub flavour: String,
    pub kernel: Vec<LockedKernel>,
    /// Every other architecture's pins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arch: BTreeMap<Arch, ArchLock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchLock {
    pub flavour: String,
    pub kernel: Vec<LockedKernel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedKernel {
    pub series: Bucket,
    /// amd64 unless said (only `[[arch.<arch>.kernel]]` entries say it).
    #[serde(default, skip_serializing_if = "is_amd64")]
    pub arch: Arch,
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

fn is_amd64(a: &Arch) -> bool {
    *a == Arch::Amd64
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
        for arch in lock.arches() {
            if let Some(k) = lock.kernels(arch).iter().find(|k| k.arch != arch) {
                bail!(
                    "series {} ({}) is pinned among the {arch} kernels but says arch = {}",
                    k.series,
                    k.release,
                    k.arch
                );
            }
        }
        Ok(lock)
    }

    /// The architectures pinned: amd64, then each `[arch.<arch>]`.
    pub fn arches(&self) -> Vec<Arch> {
        amd64_then(self.arch.keys())
    }

    /// One architecture's kernels (none for an architecture the lock does not pin).
    pub fn kernels(&self, arch: Arch) -> &[LockedKernel] {
        match arch {
            Arch::Amd64 => &self.kernel,
            _ => self.arch.get(&arch).map_or(&[], |a| a.kernel.as_slice()),
        }
    }

    /// The lock of one architecture alone, shaped like the amd64 one.
    pub fn for_arch(&self, arch: Arch) -> Option<Lock> {
        let flavour = match arch {
            Arch::Amd64 => self.flavour.clone(),
            _ => self.arch.get(&arch)?.flavour.clone(),
        };
        Some(Lock {
            lock_version: self.lock_version,
            flavour,
            kernel: self.kernels(arch).to_vec(),
            arch: BTreeMap::new(),
        })
    }

    /// Puts `one` (a lock of `arch` alone, as [`Lock::for_arch`] or the resolver makes it) in
    /// place of this lock's pins for `arch`.
    pub fn replace_arch(&mut self, arch: Arch, one: Lock) {
        match arch {
            Arch::Amd64 => {
                self.flavour = one.flavour;
                self.kernel = one.kernel;
            }
            _ => {
                self.arch.insert(
                    arch,
                    ArchLock {
                        flavour: one.flavour,
                        kernel: one.kernel,
                    },
                );
            }
        }
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

    /// Checks that the lock pins exactly the matrix's entries, for every architecture (no
    /// network).
    pub fn check_against(&self, m: &Matrix) -> Result<()> {
        let mut problems = Vec::new();
        for arch in m.arches() {
            let (Some(want), Some(have)) = (m.for_arch(arch), self.for_arch(arch)) else {
                problems.push(format!("{arch} is not locked"));
                continue;
            };
            let prefix = match arch {
                Arch::Amd64 => String::new(),
                _ => format!("{arch}: "),
            };
            problems.extend(
                have.problems_against(&want)
                    .into_iter()
                    .map(|p| format!("{prefix}{p}")),
            );
        }
        for arch in self.arch.keys().filter(|a| !m.arch.contains_key(a)) {
            problems.push(format!("{arch} is locked but not in the matrix"));
        }
        if !problems.is_empty() {
            bail!("kernels.lock does not match kernels.toml:\n  - {}\nRun `cargo xtask kernels lock` to re-resolve it.", problems.join("\n  - "));
        }
        Ok(())
    }

    /// What differs between a one-architecture lock and its matrix.
    fn problems_against(&self, m: &Matrix) -> Vec<String> {
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
        problems
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

    const TWO_ARCHES: &str = "flavour = \"cloud-amd64\"\n\
        [[kernel]]\nseries = \"6.1\"\nsuites = [\"bookworm\"]\nbucket = true\n\
        [[kernel]]\nseries = \"7.3\"\nsuites = [\"trixie-backports\"]\n\
        [arch.arm64]\nflavour = \"cloud-arm64\"\nseries = [\"7.3\"]\n";

    fn locked(series: &str, arch: Arch, flavour: &str, bucket: bool) -> LockedKernel {
        let roles: &[Role] = if bucket {
            &[Role::Headers, Role::HeadersCommon, Role::Image]
        } else {
            &[Role::Image]
        };
        LockedKernel {
            series: series.parse().unwrap(),
            arch,
            bucket,
            suite: if series == "6.1" {
                "bookworm"
            } else {
                "trixie-backports"
            }
            .into(),
            abi: format!("{series}.0-1"),
            release: format!("{series}.0-1-{flavour}"),
            kernel_version: format!("{series}.1"),
            package: roles
                .iter()
                .map(|r| LockedPackage {
                    role: *r,
                    name: format!("{r:?}"),
                    version: "1".into(),
                    filename: "pool/x.deb".into(),
                    size: 1,
                    sha256: "00".into(),
                })
                .collect(),
        }
    }

    /// An architecture's table names its flavour and which entries it has; its lock lives in
    /// its own table, and the amd64 top level reads and writes as it always did.
    #[test]
    fn a_second_architecture_is_its_own_table() {
        let m = Matrix::parse(TWO_ARCHES).unwrap();
        assert_eq!(m.arches(), [Arch::Amd64, Arch::Arm64]);
        let arm = m.for_arch(Arch::Arm64).unwrap();
        assert_eq!(arm.flavour, "cloud-arm64");
        assert_eq!(arm.kernel.len(), 1);
        let elsewhere = Matrix::parse(&format!(
            "{TWO_ARCHES}[arch.arm64.suites]\n\"7.3\" = [\"trixie\"]\n"
        ))
        .unwrap();
        assert_eq!(
            elsewhere.for_arch(Arch::Arm64).unwrap().kernel[0].suites,
            ["trixie"]
        );
        assert_eq!(
            elsewhere.for_arch(Arch::Amd64).unwrap().kernel[1].suites,
            ["trixie-backports"]
        );
        assert!(m.for_arch(Arch::Amd64).unwrap().kernel.len() == 2);

        let amd64 = Lock {
            lock_version: LOCK_VERSION,
            flavour: "cloud-amd64".into(),
            kernel: vec![
                locked("6.1", Arch::Amd64, "cloud-amd64", true),
                locked("7.3", Arch::Amd64, "cloud-amd64", false),
            ],
            arch: BTreeMap::new(),
        };
        let amd64_text = amd64.to_toml();
        let err = format!("{:#}", amd64.check_against(&m).unwrap_err());
        assert!(err.contains("arm64 is not locked"), "{err}");

        let mut both = amd64.clone();
        both.replace_arch(
            Arch::Arm64,
            Lock {
                lock_version: LOCK_VERSION,
                flavour: "cloud-arm64".into(),
                kernel: vec![locked("7.3", Arch::Arm64, "cloud-arm64", false)],
                arch: BTreeMap::new(),
            },
        );
        both.check_against(&m).unwrap();
        let text = both.to_toml();
        assert!(
            text.starts_with(&amd64_text),
            "the amd64 part is unchanged:\n{text}"
        );
        assert!(text.contains("[[arch.arm64.kernel]]"), "{text}");
        assert_eq!(Lock::parse(&text).unwrap(), both);
        assert_eq!(both.kernels(Arch::Arm64)[0].release, "7.3.0-1-cloud-arm64");

        // An entry filed under the wrong architecture is refused when read.
        let lying = text.replacen("arch = \"arm64\"\n", "", 1);
        let err = format!("{:#}", Lock::parse(&lying).unwrap_err());
        assert!(
            err.contains("among the arm64 kernels but says arch = amd64"),
            "{err}"
        );
        // A matrix that drops the architecture finds the lock's table stale.
        let amd64_only = Matrix::parse(TWO_ARCHES.split("[arch.arm64]").next().unwrap()).unwrap();
        let err = format!("{:#}", both.check_against(&amd64_only).unwrap_err());
        assert!(
            err.contains("arm64 is locked but not in the matrix"),
            "{err}"
        );
    }

    #[test]
    fn bad_matrices() {
        for (text, want) in [
            ("flavour = \"x\"\nkernel = []\n", "no [[kernel]]"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = []\n", "no suite"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n", "twice"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"six\"\nsuites = [\"a\"]\n", "MAJOR.MINOR"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\nbukket = true\n", "unknown field"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[arch.arm64]\nflavour = \"y\"\nseries = [\"6.2\"]\n", "lists series 6.2, which has no [[kernel]] entry"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[arch.arm64]\nflavour = \"y\"\nseries = [\"6.1\"]\n[arch.arm64.suites]\n\"6.1\" = []\n", "gives series 6.1 no suite"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[[kernel]]\nseries = \"7.3\"\nsuites = [\"a\"]\n[arch.arm64]\nflavour = \"y\"\nseries = [\"6.1\"]\n[arch.arm64.suites]\n\"7.3\" = [\"b\"]\n", "names series 7.3, which [arch.arm64] series does not list"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[arch.amd64]\nflavour = \"y\"\nseries = []\n", "amd64 is the top level"),
            ("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\n[arch.riscv64]\nflavour = \"y\"\nseries = []\n", "riscv64"),
        ] {
            let err = format!("{:#}", Matrix::parse(text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
