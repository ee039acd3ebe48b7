//! `cargo xtask kernels lock`: read the suites' indexes and pin the matrix.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::resolve::{self, SuiteIndex};
use kc_common::Arch;

use super::spec::{Lock, Matrix, LOCK_VERSION};
use crate::atomic;
use crate::debian::index;
use crate::debian::mirror::Mirror;
use crate::debian::release::Release;
use crate::debian::signature::{ArchiveKeyring, SignatureError};
use crate::download::{sha256_bytes, DownloadError, Downloader};

/// A suite's `Release` file as its signature vouches for it: `InRelease` (else `Release` with
/// `Release.gpg`) checked against `keyring`, then for the suite's name and `Valid-Until` at
/// `now`. Nothing outside the signed text is read.
pub fn fetch_signed_release(
    dl: &Downloader,
    mirror: &Mirror,
    suite: &str,
    keyring: &ArchiveKeyring,
    now: i64,
) -> Result<(Release, Vec<String>)> {
    let url = |file: &str| mirror.url(suite, &format!("dists/{suite}/{file}"));
    let unreadable = || {
        format!("suite {suite}: reading its Release file (is the suite name right, and does the mirror carry it?)")
    };
    let verified = match dl.fetch_bytes(&url("InRelease")) {
        Ok(bytes) => keyring.open_clearsigned(&url("InRelease"), &bytes)?,
        // Some mirrors and older archives carry only the detached form.
        Err(DownloadError::NotFound { .. }) => {
            let release = dl.fetch_bytes(&url("Release")).with_context(unreadable)?;
            let signature = match dl.fetch_bytes(&url("Release.gpg")) {
                Err(DownloadError::NotFound { .. }) => {
                    return Err(SignatureError::NotSigned {
                        name: format!(
                            "{} (neither InRelease nor Release.gpg exists)",
                            url("Release")
                        ),
                    }
                    .into())
                }
                r => r.with_context(|| format!("suite {suite}: reading Release.gpg"))?,
            };
            keyring.check_detached(&url("Release"), &release, &signature)?
        }
        Err(e) => return Err(e).with_context(unreadable),
    };
    let text = String::from_utf8(verified.text).map_err(|_| {
        anyhow::anyhow!("{}: the signed Release text is not UTF-8", url("InRelease"))
    })?;
    let release = Release::parse(&text);
    release
        .check_for(suite, now)
        .with_context(|| format!("suite {suite}: its signed Release file is refused"))?;
    Ok((release, verified.signers))
}

/// Downloads and checks one suite's `main/binary-<arch>/Packages` index (xz, else gz)
/// against the sizes and hashes its signed `Release` file lists.
pub fn fetch_suite_index(
    dl: &Downloader,
    mirror: &Mirror,
    suite: &str,
    release: &Release,
    arch: Arch,
    keep: &dyn Fn(&str) -> bool,
) -> Result<SuiteIndex> {
    let sums = &release.sha256;
    let mut last_err = None;
    for ext in ["xz", "gz"] {
        let name = &format!("main/binary-{arch}/Packages.{ext}");
        let Some((size, sha)) = sums.get(name) else {
            continue;
        };
        let url = mirror.url(suite, &format!("dists/{suite}/{name}"));
        let bytes = match dl.fetch_bytes(&url) {
            Ok(b) => b,
            Err(e) => {
                last_err = Some(anyhow::Error::new(e));
                continue;
            }
        };
        let actual = sha256_bytes(&bytes);
        if bytes.len() as u64 != *size || actual != *sha {
            bail!(
                "{url}: does not match the suite's Release file (expected {size} bytes, SHA256 {sha}; got {} bytes, {actual}); \
                 the mirror may be mid-update: try again later",
                bytes.len()
            );
        }
        let text = decompress(ext, &bytes).with_context(|| format!("{url}: decompressing"))?;
        let packages = index::parse(&format!("{suite}/{name}"), &text, keep)?;
        return Ok(resolve::index_by_name(packages));
    }
    match last_err {
        Some(e) => Err(e.context(format!("suite {suite}: downloading its Packages index"))),
        None => {
            bail!("suite {suite}: its Release file lists no main/binary-{arch}/Packages.{{xz,gz}}")
        }
    }
}

fn decompress(ext: &str, bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    match ext {
        "xz" => xz2::read::XzDecoder::new_multi_decoder(bytes).read_to_string(&mut text)?,
        "gz" => flate2::read::MultiGzDecoder::new(bytes).read_to_string(&mut text)?,
        _ => unreachable!("only xz and gz indexes are requested"),
    };
    Ok(text)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct LockOutcome {
    pub lock: Lock,
    pub changed: bool,
}

/// Resolves the matrix at `matrix_path` from `mirror`, every suite's index vouched for by a
/// signature from `keyring`, and writes the lock to `lock_path` (only when its text changes;
/// any refusal leaves it as it was). `only`: resolve these architectures and keep the other
/// architectures' pins as the lock has them (empty: every architecture).
pub fn run(
    mirror: &Mirror,
    keyring: &ArchiveKeyring,
    matrix_path: &Path,
    lock_path: &Path,
    only: &[Arch],
) -> Result<LockOutcome> {
    let matrix = Matrix::load(matrix_path)?;
    // Each architecture's own matrix (its flavour, its series, its suites), made once.
    let arches: Vec<(Arch, Matrix)> = matrix
        .arches()
        .into_iter()
        .filter(|a| only.is_empty() || only.contains(a))
        .map(|a| (a, matrix.for_arch(a).expect("one of the matrix's")))
        .collect();
    if let Some(a) = only.iter().find(|a| !arches.iter().any(|(b, _)| b == *a)) {
        bail!(
            "{a} is not in {}: add an [arch.{a}] table",
            matrix_path.display()
        );
    }
    // Resolving some architectures keeps the others' pins as they are.
    let mut lock = if only.is_empty() {
        Lock {
            lock_version: LOCK_VERSION,
            flavour: matrix.flavour.clone(),
            kernel: Vec::new(),
            arch: BTreeMap::new(),
        }
    } else {
        Lock::load(lock_path).context("keeping the other architectures' pins")?
    };
    let mut suites: Vec<(String, Arch)> = arches
        .iter()
        .flat_map(|(a, m)| {
            m.kernel
                .iter()
                .flat_map(|k| k.suites.iter().map(|s| (s.clone(), *a)))
        })
        .collect();
    suites.sort();
    suites.dedup();
    let dl = &Downloader::new();
    let now = unix_now();
    // One thread per suite and architecture: the indexes are large and the mirror is the
    // bottleneck.
    let results: Vec<((String, Arch), Result<SuiteIndex>)> = std::thread::scope(|s| {
        let handles: Vec<_> = suites
            .iter()
            .map(|(suite, arch)| {
                (
                    (suite.clone(), *arch),
                    s.spawn(move || -> Result<SuiteIndex> {
                        let (release, signers) =
                            fetch_signed_release(dl, mirror, suite, keyring, now)?;
                        eprintln!(
                            "  {suite} ({arch}): Release signed by {}",
                            signers.join(", ")
                        );
                        fetch_suite_index(
                            dl,
                            mirror,
                            suite,
                            &release,
                            *arch,
                            &resolve::wanted_package,
                        )
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| (n, h.join().expect("index thread panicked")))
            .collect()
    });
    let mut indexes: BTreeMap<Arch, BTreeMap<String, SuiteIndex>> = BTreeMap::new();
    for ((suite, arch), r) in results {
        indexes.entry(arch).or_default().insert(suite, r?);
    }
    for (arch, m) in &arches {
        let resolved = resolve::resolve(m, &indexes.remove(arch).unwrap_or_default(), *arch)
            .with_context(|| format!("resolving the {arch} kernels"))?;
        lock.replace_arch(*arch, resolved);
    }
    let text = lock.to_toml();
    let path = lock_path;
    let changed = std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str());
    if changed {
        atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(LockOutcome { lock, changed })
}

/// A loopback mirror whose suites are signed (or not) by throwaway keys: what `kernels lock`
/// accepts and refuses.
#[cfg(test)]
mod tests {
    use std::io::Write;

    use kc_testsrv::{Route, TestServer};

    use super::*;
    use crate::debian::release::parse_date;
    use crate::debian::signature::test_key::TestKey;

    const NOW: &str = "Thu, 26 Nov 2026 09:00:00 UTC";

    fn now() -> i64 {
        parse_date(NOW).unwrap()
    }

    fn packages_xz() -> Vec<u8> {
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        let stanza = format!(
            "Package: linux-image-6.1.0-1-cloud-amd64\nVersion: 6.1.1-1\nArchitecture: amd64\n\
             Filename: pool/main/l/linux/linux-image-6.1.0-1-cloud-amd64_6.1.1-1_amd64.deb\n\
             Size: 1000\nSHA256: {}\n\n",
            "ab".repeat(32)
        );
        xz.write_all(stanza.as_bytes()).unwrap();
        xz.finish().unwrap()
    }

    fn release_text(suite: &str, valid_until: Option<&str>, packages: &[u8]) -> String {
        let valid = valid_until.map_or(String::new(), |v| format!("Valid-Until: {v}\n"));
        format!(
            "Origin: Debian\nSuite: {suite}\nCodename: {suite}\nDate: Tue, 24 Nov 2026 02:12:15 UTC\n{valid}\
             SHA256:\n {} {} main/binary-amd64/Packages.xz\n",
            sha256_bytes(packages),
            packages.len()
        )
    }

    /// A suite's files under `dists/<suite>/`: (name, bytes).
    type SuiteFiles<'a> = Vec<(&'a str, Vec<u8>)>;

    /// Serves `files` of each suite, and the index.
    fn mirror(suites: &[(&str, SuiteFiles)]) -> (TestServer, Mirror) {
        let mut routes = Vec::new();
        let paths: Vec<(String, Vec<u8>)> = suites
            .iter()
            .flat_map(|(suite, files)| {
                let archive = if suite.ends_with("-security") {
                    "debian-security"
                } else {
                    "debian"
                };
                let index = (
                    format!("/{archive}/dists/{suite}/main/binary-amd64/Packages.xz"),
                    packages_xz(),
                );
                files
                    .iter()
                    .map(move |(name, bytes)| {
                        (format!("/{archive}/dists/{suite}/{name}"), bytes.clone())
                    })
                    .chain(std::iter::once(index))
            })
            .collect();
        for (path, bytes) in &paths {
            routes.push((path.as_str(), Route::ok(bytes.clone())));
        }
        let server = TestServer::start(routes);
        let mirror = Mirror {
            main: server.url("/debian"),
            security: server.url("/debian-security"),
        };
        (server, mirror)
    }

    fn lock_suite(files: SuiteFiles, keyring: &ArchiveKeyring) -> Result<SuiteIndex> {
        let (_server, mirror) = mirror(&[("bookworm", files)]);
        let dl = Downloader::new();
        let (release, _) = fetch_signed_release(&dl, &mirror, "bookworm", keyring, now())?;
        fetch_suite_index(
            &dl,
            &mirror,
            "bookworm",
            &release,
            Arch::Amd64,
            &resolve::wanted_package,
        )
    }

    fn gpg_or_skip() -> Option<(TestKey, ArchiveKeyring)> {
        if !crate::process::exists("gpg") {
            kc_common::skip::skip(
                "kernels::lock tests",
                "gpg is not installed (`cargo xtask setup` installs gnupg)",
            );
            return None;
        }
        let key = TestKey::generate();
        let keyring = ArchiveKeyring::from_path(&key.keyring);
        Some((key, keyring))
    }

    fn refusal(r: Result<SuiteIndex>) -> String {
        match r {
            Ok(_) => panic!("the suite was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_signed_suite_is_read_in_either_form_needs_gpg() {
        let Some((key, keyring)) = gpg_or_skip() else {
            return;
        };
        let text = release_text(
            "bookworm",
            Some("Thu, 03 Dec 2026 02:12:15 UTC"),
            &packages_xz(),
        );
        let index = lock_suite(vec![("InRelease", key.clearsign(&text))], &keyring).unwrap();
        assert!(index.contains_key("linux-image-6.1.0-1-cloud-amd64"));
        let detached = vec![
            ("Release", text.clone().into_bytes()),
            ("Release.gpg", key.detach_sign(&text)),
        ];
        let index = lock_suite(detached, &keyring).unwrap();
        assert!(index.contains_key("linux-image-6.1.0-1-cloud-amd64"));
    }

    #[test]
    fn an_unsigned_suite_is_refused_needs_gpg() {
        let Some((_key, keyring)) = gpg_or_skip() else {
            return;
        };
        let text = release_text("bookworm", None, &packages_xz());
        let e = refusal(lock_suite(
            vec![("Release", text.clone().into_bytes())],
            &keyring,
        ));
        assert!(
            e.contains("not signed") && e.contains("neither InRelease nor Release.gpg"),
            "{e}"
        );
        let e = refusal(lock_suite(vec![("InRelease", text.into_bytes())], &keyring));
        assert!(e.contains("InRelease: not signed"), "{e}");
    }

    #[test]
    fn a_suite_signed_by_another_key_is_refused_needs_gpg() {
        let Some((_key, keyring)) = gpg_or_skip() else {
            return;
        };
        let stranger = TestKey::generate();
        let text = release_text("bookworm", None, &packages_xz());
        let e = refusal(lock_suite(
            vec![("InRelease", stranger.clearsign(&text))],
            &keyring,
        ));
        assert!(
            e.contains("not in") && e.contains("KC_DEBIAN_KEYRING"),
            "{e}"
        );
        let detached = vec![
            ("Release", text.clone().into_bytes()),
            ("Release.gpg", stranger.detach_sign(&text)),
        ];
        let e = refusal(lock_suite(detached, &keyring));
        assert!(e.contains("not Debian's archive key"), "{e}");
    }

    #[test]
    fn a_tampered_signed_text_is_refused_needs_gpg() {
        let Some((key, keyring)) = gpg_or_skip() else {
            return;
        };
        let text = release_text("bookworm", None, &packages_xz());
        // The attacker swaps the index's checksum inside the signed text.
        let signed = String::from_utf8(key.clearsign(&text)).unwrap();
        let sha = sha256_bytes(&packages_xz());
        let forged = signed.replace(&sha, &"0".repeat(64));
        assert_ne!(forged, signed);
        let e = refusal(lock_suite(
            vec![("InRelease", forged.into_bytes())],
            &keyring,
        ));
        assert!(e.contains("BAD signature"), "{e}");
        // Or keeps the signature and serves another Release beside it.
        let other = text.replace("Origin: Debian", "Origin: Elsewhere");
        let detached = vec![
            ("Release", other.into_bytes()),
            ("Release.gpg", key.detach_sign(&text)),
        ];
        let e = refusal(lock_suite(detached, &keyring));
        assert!(e.contains("BAD signature"), "{e}");
        // Or prepends unsigned fields a careless reader would take.
        let prepended = format!("Suite: bookworm\n{signed}");
        let e = refusal(lock_suite(
            vec![("InRelease", prepended.into_bytes())],
            &keyring,
        ));
        assert!(e.contains("text before the signed message"), "{e}");
    }

    #[test]
    fn an_expired_or_another_suites_release_is_refused_needs_gpg() {
        let Some((key, keyring)) = gpg_or_skip() else {
            return;
        };
        let expired = release_text(
            "bookworm",
            Some("Tue, 24 Nov 2026 09:00:00 UTC"),
            &packages_xz(),
        );
        let e = refusal(lock_suite(
            vec![("InRelease", key.clearsign(&expired))],
            &keyring,
        ));
        assert!(
            e.contains("expired on Tue, 24 Nov 2026 09:00:00 UTC") && e.contains("2 days ago"),
            "{e}"
        );
        let replayed = release_text("bullseye", None, &packages_xz());
        let e = refusal(lock_suite(
            vec![("InRelease", key.clearsign(&replayed))],
            &keyring,
        ));
        assert!(e.contains("describes suite \"bullseye\""), "{e}");
    }

    #[test]
    fn a_refused_signature_leaves_the_lock_byte_identical_needs_gpg() {
        let Some((key, keyring)) = gpg_or_skip() else {
            return;
        };
        let matrix = Matrix::load(&crate::paths::kernels_toml()).unwrap();
        let mut suites: Vec<String> = matrix
            .kernel
            .iter()
            .flat_map(|k| k.suites.clone())
            .collect();
        suites.sort();
        suites.dedup();
        // Every suite is properly signed but one, whose text was changed after signing.
        let files: Vec<(&str, SuiteFiles)> = suites
            .iter()
            .enumerate()
            .map(|(i, suite)| {
                let signed = key.clearsign(&release_text(suite, None, &packages_xz()));
                let signed = if i == suites.len() / 2 {
                    String::from_utf8(signed)
                        .unwrap()
                        .replace("Origin: Debian", "Origin: Debiam")
                        .into_bytes()
                } else {
                    signed
                };
                (suite.as_str(), vec![("InRelease", signed)])
            })
            .collect();
        let (_server, mirror) = mirror(&files);
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("kernels.lock");
        let before = std::fs::read(crate::paths::kernels_lock()).unwrap();
        std::fs::write(&lock, &before).unwrap();
        let e = run(
            &mirror,
            &keyring,
            &crate::paths::kernels_toml(),
            &lock,
            &[Arch::Amd64],
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("BAD signature"), "{e:#}");
        assert_eq!(std::fs::read(&lock).unwrap(), before);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            ["kernels.lock"],
            "no temporary file is left beside the lock"
        );
    }
}
