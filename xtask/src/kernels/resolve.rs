//! Resolves the matrix against the suites' `Packages` indexes (pure: no I/O).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kc_common::{Arch, KernelVersion};

use super::spec::{Lock, LockedKernel, LockedPackage, Matrix, MatrixKernel, Role, LOCK_VERSION};
use crate::debian::index::Package;
use crate::debian::version;

/// The packages of one suite, by name (a suite may hold several versions of one name).
pub type SuiteIndex = BTreeMap<String, Vec<Package>>;

pub fn index_by_name(packages: Vec<Package>) -> SuiteIndex {
    let mut idx = SuiteIndex::new();
    for p in packages {
        idx.entry(p.name.clone()).or_default().push(p);
    }
    idx
}

/// Only these names matter to the lock.
pub fn wanted_package(name: &str) -> bool {
    [
        "linux-headers-",
        "linux-image-",
        "linux-binary-",
        "linux-modules-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `linux-headers-6.1.0-50-cloud-amd64` → `6.1.0-50` when it belongs to `series`.
fn abi_of<'a>(
    name: &'a str,
    prefix: &str,
    flavour: &str,
    suffix: &str,
    series: &str,
) -> Option<&'a str> {
    let abi = name
        .strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .strip_suffix(flavour)?
        .strip_suffix('-')?;
    let rest = abi.strip_prefix(series)?.strip_prefix('.')?;
    rest.starts_with(|c: char| c.is_ascii_digit())
        .then_some(abi)
}

fn find<'a>(idx: &'a SuiteIndex, name: &str, version: &str) -> Option<&'a Package> {
    idx.get(name)?.iter().find(|p| p.version == version)
}

fn locked(role: Role, p: &Package) -> LockedPackage {
    LockedPackage {
        role,
        name: p.name.clone(),
        version: p.version.clone(),
        filename: p.filename.clone(),
        size: p.size,
        sha256: p.sha256.clone(),
    }
}

/// The packages that carry the kernel binary for `abi` and its modules:
/// `linux-image-<abi>-<flavour>` (or `-unsigned`) alone, or, since the 7.x packaging split,
/// the `linux-binary-*` and `linux-modules-*` it depends on.
fn image_for(
    idx: &SuiteIndex,
    abi: &str,
    flavour: &str,
    version: &str,
) -> Option<Vec<LockedPackage>> {
    for name in [
        format!("linux-image-{abi}-{flavour}"),
        format!("linux-image-{abi}-{flavour}-unsigned"),
    ] {
        let Some(image) = find(idx, &name, version) else {
            continue;
        };
        let split_part = |prefix: &str, role: Role| {
            let dep = image.depends.iter().find(|d| d.name.starts_with(prefix))?;
            let v = dep.exact_version.as_deref().unwrap_or(version);
            Some(find(idx, &dep.name, v).map(|p| locked(role, p)))
        };
        return match split_part("linux-binary-", Role::Image) {
            None => Some(vec![locked(Role::Image, image)]),
            Some(binary) => {
                let modules = split_part("linux-modules-", Role::Modules).flatten();
                Some(binary.into_iter().chain(modules).collect())
            }
        };
    }
    None
}

struct Candidate<'a> {
    suite: &'a str,
    abi: String,
    version: String,
    packages: Vec<LockedPackage>,
}

fn resolve_one(
    entry: &MatrixKernel,
    flavour: &str,
    suites: &BTreeMap<String, SuiteIndex>,
    arch: Arch,
) -> Result<LockedKernel, String> {
    let series = entry.series.to_string();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut rejected = Vec::new();
    for suite in &entry.suites {
        let Some(idx) = suites.get(suite) else {
            return Err(format!("suite {suite} was not read"));
        };
        let prefix = if entry.bucket {
            "linux-headers-"
        } else {
            "linux-image-"
        };
        for (name, versions) in idx.range(format!("{prefix}{series}.")..) {
            if !name.starts_with(&format!("{prefix}{series}.")) {
                break;
            }
            let Some(abi) = abi_of(name, prefix, flavour, "", &series) else {
                continue;
            };
            for p in versions {
                let mut packages = Vec::new();
                if entry.bucket {
                    let common = p.depends.iter().find(|d| {
                        d.name.starts_with("linux-headers-") && d.name.ends_with("-common")
                    });
                    let common = common.and_then(|d| {
                        find(
                            idx,
                            &d.name,
                            d.exact_version.as_deref().unwrap_or(&p.version),
                        )
                    });
                    let Some(common) = common else {
                        rejected.push(format!(
                            "{name} {} (its -common headers are not in {suite})",
                            p.version
                        ));
                        continue;
                    };
                    packages.push(locked(Role::Headers, p));
                    packages.push(locked(Role::HeadersCommon, common));
                }
                let Some(image) = image_for(idx, abi, flavour, &p.version) else {
                    rejected.push(format!(
                        "{name} {} (no kernel image of that ABI in {suite})",
                        p.version
                    ));
                    continue;
                };
                packages.extend(image);
                candidates.push(Candidate {
                    suite,
                    abi: abi.to_string(),
                    version: p.version.clone(),
                    packages,
                });
            }
        }
    }
    // Newest Debian version wins; on a tie the suite listed first.
    let best = candidates.into_iter().reduce(|best, c| {
        match version::compare(&c.version, &best.version) {
            Ordering::Greater => c,
            _ => best,
        }
    });
    let Some(best) = best else {
        let what = if entry.bucket {
            "linux-headers"
        } else {
            "linux-image"
        };
        let mut msg = format!(
            "no {what}-{series}.*-{flavour} package in {:?}",
            entry.suites
        );
        if !rejected.is_empty() {
            msg.push_str(&format!("; passed over: {}", rejected.join(", ")));
        }
        return Err(msg);
    };
    let kernel_version = KernelVersion::parse(&best.version).map_err(|e| e.to_string())?;
    if !entry.series.contains(&kernel_version) {
        return Err(format!(
            "package version {} is not a {series} kernel",
            best.version
        ));
    }
    Ok(LockedKernel {
        series: entry.series,
        arch,
        bucket: entry.bucket,
        suite: best.suite.to_string(),
        release: format!("{}-{flavour}", best.abi),
        abi: best.abi,
        kernel_version: kernel_version.to_string(),
        package: best.packages,
    })
}

/// Resolves every entry of a one-architecture matrix (its flavour names the packages) from
/// that architecture's indexes; all failures are reported together.
pub fn resolve(m: &Matrix, suites: &BTreeMap<String, SuiteIndex>, arch: Arch) -> Result<Lock> {
    let mut kernels = Vec::new();
    let mut errors = Vec::new();
    for entry in &m.kernel {
        match resolve_one(entry, &m.flavour, suites, arch) {
            Ok(k) => kernels.push(k),
            Err(e) => errors.push(format!("series {}: {e}", entry.series)),
        }
    }
    if !errors.is_empty() {
        bail!(
            "the kernel matrix cannot be resolved from the mirror's indexes:\n  - {}\n\
             Fix kernels.toml (series and suites: see KERNELS.md) or point KC_DEBIAN_MIRROR at a mirror that has them.",
            errors.join("\n  - ")
        );
    }
    kernels.sort_by_key(|k| k.series);
    Ok(Lock {
        lock_version: LOCK_VERSION,
        flavour: m.flavour.clone(),
        kernel: kernels,
        arch: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::index::parse;

    fn stanza(name: &str, version: &str, depends: &str) -> String {
        let sha = crate::download::sha256_bytes(format!("{name}{version}").as_bytes());
        format!("Package: {name}\nVersion: {version}\nDepends: {depends}\nFilename: pool/main/l/{name}_{version}_amd64.deb\nSize: 100\nSHA256: {sha}\n\n")
    }

    fn suite(stanzas: &[String]) -> SuiteIndex {
        index_by_name(parse("test", &stanzas.concat(), wanted_package).unwrap())
    }

    fn bookworm() -> SuiteIndex {
        let mut s = Vec::new();
        for (abi, v) in [("6.1.0-47", "6.1.158-1"), ("6.1.0-50", "6.1.176-1")] {
            s.push(stanza(
                &format!("linux-headers-{abi}-cloud-amd64"),
                v,
                &format!("linux-headers-{abi}-common (= {v}), linux-kbuild-6.1 (>= {v})"),
            ));
            s.push(stanza(&format!("linux-headers-{abi}-common"), v, ""));
            s.push(stanza(&format!("linux-image-{abi}-cloud-amd64"), v, "kmod"));
            s.push(stanza(
                &format!("linux-image-{abi}-cloud-amd64-unsigned"),
                v,
                "kmod",
            ));
        }
        // A 6.12 backport must not be taken for 6.1, nor the meta package.
        s.push(stanza(
            "linux-headers-6.12.95+deb12-cloud-amd64",
            "6.12.95-1~bpo12+1",
            "linux-headers-6.12.95+deb12-common (= 6.12.95-1~bpo12+1)",
        ));
        s.push(stanza(
            "linux-headers-cloud-amd64",
            "6.1.176-1",
            "linux-headers-6.1.0-50-cloud-amd64",
        ));
        suite(&s)
    }

    fn trixie_backports() -> SuiteIndex {
        let v = "7.2.12-1~bpo13+1";
        let abi = "7.2.12+deb13";
        suite(&[
            stanza(
                &format!("linux-headers-{abi}-cloud-amd64"),
                v,
                &format!("linux-headers-{abi}-common (= {v})"),
            ),
            stanza(&format!("linux-headers-{abi}-common"), v, ""),
            stanza(
                &format!("linux-image-{abi}-cloud-amd64"),
                v,
                &format!(
                    "dracut | initramfs-tools, linux-binary-{abi}-cloud-amd64 (= {v}), \
                     linux-modules-{abi}-cloud-amd64 (= {v})"
                ),
            ),
            stanza(&format!("linux-binary-{abi}-cloud-amd64"), v, ""),
            stanza(&format!("linux-modules-{abi}-cloud-amd64"), v, ""),
            stanza(
                "linux-image-6.16.12+deb13-cloud-amd64",
                "6.16.12-1~bpo13+1",
                "kmod",
            ),
            stanza(
                "linux-image-6.16.3+deb13-cloud-amd64",
                "6.16.3-1~bpo13+1",
                "kmod",
            ),
        ])
    }

    fn matrix(text: &str) -> Matrix {
        Matrix::parse(&format!("flavour = \"cloud-amd64\"\n{text}")).unwrap()
    }

    fn suites() -> BTreeMap<String, SuiteIndex> {
        BTreeMap::from([
            ("bookworm".to_string(), bookworm()),
            ("trixie-backports".to_string(), trixie_backports()),
        ])
    }

    #[test]
    fn resolves_newest_headers_with_common_and_image() {
        let m = matrix("[[kernel]]\nseries = \"6.1\"\nsuites = [\"bookworm\"]\nbucket = true\n");
        let lock = resolve(&m, &suites(), Arch::Amd64).unwrap();
        let k = &lock.kernel[0];
        assert_eq!(
            (
                k.abi.as_str(),
                k.release.as_str(),
                k.kernel_version.as_str()
            ),
            ("6.1.0-50", "6.1.0-50-cloud-amd64", "6.1.176")
        );
        assert_eq!(
            k.package(Role::HeadersCommon).unwrap().name,
            "linux-headers-6.1.0-50-common"
        );
        assert_eq!(
            k.package(Role::Image).unwrap().name,
            "linux-image-6.1.0-50-cloud-amd64"
        );
    }

    #[test]
    fn split_packaging_locks_the_binary_package() {
        let m = matrix("[[kernel]]\nseries = \"7.2\"\nsuites = [\"trixie-backports\"]\nbucket = true\n[[kernel]]\nseries = \"6.16\"\nsuites = [\"trixie-backports\"]\n");
        let lock = resolve(&m, &suites(), Arch::Amd64).unwrap();
        assert_eq!(lock.kernel[0].series.to_string(), "6.16");
        assert_eq!(
            lock.kernel[0].abi, "6.16.12+deb13",
            "numeric, not lexical, ordering"
        );
        assert_eq!(lock.kernel[0].package.len(), 1);
        assert_eq!(
            lock.kernel[1].package(Role::Image).unwrap().name,
            "linux-binary-7.2.12+deb13-cloud-amd64"
        );
        assert_eq!(
            lock.kernel[1].package(Role::Modules).unwrap().name,
            "linux-modules-7.2.12+deb13-cloud-amd64"
        );
    }

    #[test]
    fn resolution_is_deterministic() {
        let m = matrix("[[kernel]]\nseries = \"7.2\"\nsuites = [\"trixie-backports\"]\nbucket = true\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"bookworm\"]\nbucket = true\n");
        let a = resolve(&m, &suites(), Arch::Amd64).unwrap().to_toml();
        let b = resolve(&m, &suites(), Arch::Amd64).unwrap().to_toml();
        assert_eq!(a, b);
        assert_eq!(
            Lock::parse(&a).unwrap().to_toml(),
            a,
            "lock round-trips byte for byte"
        );
    }

    #[test]
    fn unresolvable_entries_are_all_reported() {
        let m = matrix("[[kernel]]\nseries = \"5.10\"\nsuites = [\"bookworm\"]\nbucket = true\n[[kernel]]\nseries = \"9.9\"\nsuites = [\"trixie-backports\"]\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"nosuchsuite\"]\n");
        let err = resolve(&m, &suites(), Arch::Amd64).unwrap_err().to_string();
        assert!(
            err.contains("series 5.10: no linux-headers-5.10.*-cloud-amd64"),
            "{err}"
        );
        assert!(err.contains("series 9.9: no linux-image-9.9.*"), "{err}");
        assert!(err.contains("suite nosuchsuite was not read"), "{err}");
    }

    #[test]
    fn headers_without_common_are_passed_over() {
        let v = "6.1.99-1";
        let idx = suite(&[
            stanza(
                "linux-headers-6.1.0-9-cloud-amd64",
                v,
                &format!("linux-headers-6.1.0-9-common (= {v})"),
            ),
            stanza("linux-image-6.1.0-9-cloud-amd64", v, ""),
        ]);
        let m = matrix("[[kernel]]\nseries = \"6.1\"\nsuites = [\"s\"]\nbucket = true\n");
        let err = resolve(&m, &BTreeMap::from([("s".to_string(), idx)]), Arch::Amd64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("-common headers are not in s"), "{err}");
    }
}
