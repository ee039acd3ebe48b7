//! The archive's signatures, checked as apt checks them: Debian's `gpgv` against the Debian
//! archive keyring, and only the text the signature covers is used afterwards.

use std::path::{Path, PathBuf};

use thiserror::Error;
use xshell::cmd;

use crate::process;

/// Where Debian's `debian-archive-keyring` package puts the archive's keys.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error(
        "{what}: the keyring {} does not exist; {hint}",
        keyring.display()
    )]
    NoKeyring {
        what: &'static str,
        keyring: PathBuf,
        hint: &'static str,
    },
    #[error("{name}: not signed (no OpenPGP signature found); a Debian mirror signs every suite, so this one is not to be trusted")]
    NotSigned { name: String },
    #[error("{name}: {problem}; only one clear-signed message with nothing around it is accepted")]
    Malformed { name: String, problem: String },
    #[error(
        "{name}: BAD signature: the signed text was changed after signing (tampered with, or \
         corrupted on the way); nothing was written"
    )]
    Tampered { name: String },
    #[error(
        "{name}: signed by key {keys}, which is not in {}: not Debian's archive key. \
         If this mirror is a private re-signed archive, point KC_DEBIAN_KEYRING at its keyring",
        keyring.display()
    )]
    UnknownKey {
        name: String,
        keys: String,
        keyring: PathBuf,
    },
    #[error("{name}: gpgv found no good signature: {detail}")]
    Rejected { name: String, detail: String },
    #[error(transparent)]
    Tool(#[from] process::ToolError),
    #[error("writing the files gpgv checks to a temporary directory (is TMPDIR writable?): {0}")]
    Io(#[from] std::io::Error),
}

/// A signed text, and the fingerprints of the keys whose signatures on it are good.
#[derive(Debug)]
pub struct Verified {
    pub text: Vec<u8>,
    pub signers: Vec<String>,
}

/// The keyring the archive's signatures are checked against.
#[derive(Debug, Clone)]
pub struct ArchiveKeyring {
    path: PathBuf,
}

impl ArchiveKeyring {
    /// `KC_DEBIAN_KEYRING`, else Debian's archive keyring; it must exist.
    pub fn discover() -> Result<Self, SignatureError> {
        match std::env::var_os("KC_DEBIAN_KEYRING").filter(|v| !v.is_empty()) {
            Some(p) => Self::at(PathBuf::from(p), "KC_DEBIAN_KEYRING", "set it to an OpenPGP keyring file, or unset it to use Debian's"),
            None => Self::at(
                PathBuf::from(DEBIAN_KEYRING),
                "the Debian archive keyring",
                "install the debian-archive-keyring package (`cargo xtask setup` does), or set KC_DEBIAN_KEYRING",
            ),
        }
    }

    fn at(path: PathBuf, what: &'static str, hint: &'static str) -> Result<Self, SignatureError> {
        if path.is_file() {
            Ok(Self { path })
        } else {
            Err(SignatureError::NoKeyring {
                what,
                keyring: path,
                hint,
            })
        }
    }

    #[cfg(test)]
    pub fn from_path(path: &Path) -> Self {
        Self { path: path.into() }
    }

    /// Checks a clear-signed file (`InRelease`) and returns the text its signature covers,
    /// nothing outside it.
    pub fn open_clearsigned(&self, name: &str, bytes: &[u8]) -> Result<Verified, SignatureError> {
        single_clearsigned_message(bytes).map_err(|problem| match problem {
            None => SignatureError::NotSigned { name: name.into() },
            Some(problem) => SignatureError::Malformed {
                name: name.into(),
                problem,
            },
        })?;
        let dir = tempfile::tempdir()?;
        let (input, signed) = (dir.path().join("InRelease"), dir.path().join("signed"));
        std::fs::write(&input, bytes)?;
        let status = self.gpgv(&["--output".as_ref(), signed.as_os_str(), input.as_os_str()])?;
        let signers = judge(name, &status, &self.path)?;
        Ok(Verified {
            text: std::fs::read(&signed)?,
            signers,
        })
    }

    /// Checks a detached signature (`Release.gpg`) over `data` (`Release`).
    pub fn check_detached(
        &self,
        name: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<Verified, SignatureError> {
        let dir = tempfile::tempdir()?;
        let (sig, file) = (dir.path().join("Release.gpg"), dir.path().join("Release"));
        std::fs::write(&sig, signature)?;
        std::fs::write(&file, data)?;
        let status = self.gpgv(&[sig.as_os_str(), file.as_os_str()])?;
        let signers = judge(name, &status, &self.path)?;
        Ok(Verified {
            text: data.to_vec(),
            signers,
        })
    }

    /// Runs gpgv with machine-readable status on stdout; its exit status is judged from that.
    fn gpgv(&self, args: &[&std::ffi::OsStr]) -> Result<String, SignatureError> {
        let sh = process::shell();
        let keyring = &self.path;
        let out = process::capture(cmd!(sh, "gpgv --status-fd 1 --keyring {keyring} {args...}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `Err(None)` when there is no signature at all, `Err(Some(why))` when the file is not exactly
/// one clear-signed message: apt refuses text around or between messages, since gpgv would
/// vouch for the signed part while a reader might see the rest.
fn single_clearsigned_message(bytes: &[u8]) -> Result<(), Option<String>> {
    const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
    const END: &str = "-----END PGP SIGNATURE-----";
    let text = std::str::from_utf8(bytes).map_err(|_| Some("it is not UTF-8 text".to_string()))?;
    if !text.contains(BEGIN) {
        return Err(None);
    }
    if !text.starts_with(BEGIN) {
        return Err(Some("it has text before the signed message".into()));
    }
    if text.matches(BEGIN).count() != 1 {
        return Err(Some("it holds more than one signed message".into()));
    }
    match text.find(END) {
        Some(at) if text[at + END.len()..].trim().is_empty() => Ok(()),
        Some(_) => Err(Some("it has text after the signature".into())),
        None => Err(Some("its signature block is not terminated".into())),
    }
}

/// Reads gpgv's status lines: good when at least one signature is good (`GOODSIG`, which an
/// expired or revoked key never gets) and none is bad, as apt decides. Returns the good
/// signatures' fingerprints.
fn judge(name: &str, status: &str, keyring: &Path) -> Result<Vec<String>, SignatureError> {
    let mut good = 0;
    let mut valid = Vec::new();
    let mut unknown = Vec::new();
    let mut other = Vec::new();
    for line in status.lines() {
        let mut w = line
            .strip_prefix("[GNUPG:] ")
            .unwrap_or("")
            .split_whitespace();
        match w.next() {
            Some("GOODSIG") => good += 1,
            Some("VALIDSIG") => valid.extend(w.next().map(str::to_string)),
            Some("BADSIG") => return Err(SignatureError::Tampered { name: name.into() }),
            Some("NO_PUBKEY") => unknown.extend(w.next().map(str::to_string)),
            Some("NODATA") => return Err(SignatureError::NotSigned { name: name.into() }),
            Some(k @ ("EXPKEYSIG" | "REVKEYSIG" | "EXPSIG")) => {
                other.push(format!("{k} {}", w.collect::<Vec<_>>().join(" ")))
            }
            _ => {}
        }
    }
    if good > 0 && !valid.is_empty() {
        return Ok(valid);
    }
    if !unknown.is_empty() && other.is_empty() {
        return Err(SignatureError::UnknownKey {
            name: name.into(),
            keys: unknown.join(", "),
            keyring: keyring.into(),
        });
    }
    Err(SignatureError::Rejected {
        name: name.into(),
        detail: if other.is_empty() {
            "no signature could be checked".into()
        } else {
            other.join("; ")
        },
    })
}

/// A throwaway OpenPGP key made with `gpg` in a private home, to sign a loopback mirror's files.
#[cfg(test)]
pub mod test_key {
    use super::*;

    pub struct TestKey {
        home: tempfile::TempDir,
        pub keyring: PathBuf,
    }

    impl TestKey {
        pub fn generate() -> Self {
            let home = tempfile::Builder::new()
                .prefix("kc-gpg")
                .tempdir_in("/tmp")
                .unwrap();
            let sh = process::shell();
            sh.set_var("GNUPGHOME", home.path());
            let quiet = [
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase=",
            ];
            let uid = "kc test mirror <mirror@kc.invalid>";
            process::output(cmd!(
                sh,
                "gpg {quiet...} --quick-gen-key {uid} ed25519 sign never"
            ))
            .unwrap();
            let keyring = home.path().join("keyring.gpg");
            process::output(cmd!(sh, "gpg {quiet...} --output {keyring} --export")).unwrap();
            Self { home, keyring }
        }

        fn sign(&self, how: &str, data: &[u8]) -> Vec<u8> {
            let sh = process::shell();
            sh.set_var("GNUPGHOME", self.home.path());
            let (input, output) = (self.home.path().join("in"), self.home.path().join("out"));
            std::fs::write(&input, data).unwrap();
            let _ = std::fs::remove_file(&output);
            process::output(cmd!(
                sh,
                "gpg --batch --quiet --yes --digest-algo SHA256 {how} --output {output} {input}"
            ))
            .unwrap();
            std::fs::read(&output).unwrap()
        }

        /// An `InRelease` of `release`.
        pub fn clearsign(&self, release: &str) -> Vec<u8> {
            self.sign("--clearsign", release.as_bytes())
        }

        /// A `Release.gpg` for `release`.
        pub fn detach_sign(&self, release: &str) -> Vec<u8> {
            self.sign("--detach-sign", release.as_bytes())
        }
    }

    impl Drop for TestKey {
        fn drop(&mut self) {
            let sh = process::shell();
            sh.set_var("GNUPGHOME", self.home.path());
            let _ = process::capture(cmd!(sh, "gpgconf --kill gpg-agent"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clearsigned_message_with_nothing_around_it() {
        let msg = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(single_clearsigned_message(msg.as_bytes()), Ok(()));
        assert_eq!(single_clearsigned_message(b"Suite: x\n"), Err(None));
        let before = format!("Suite: evil\n{msg}");
        let after = format!("{msg}Suite: evil\n");
        let twice = format!("{msg}{msg}");
        for (bad, why) in [
            (before, "before"),
            (after, "after"),
            (twice, "more than one"),
        ] {
            let e = single_clearsigned_message(bad.as_bytes())
                .unwrap_err()
                .unwrap();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn status_lines_decide_as_apt_does() {
        let k = Path::new("/k.gpg");
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0E7B82643E131 Debian\n[GNUPG:] VALIDSIG 4CB50190207B4758A3F73A796ED0E7B82643E131 2026-11-24\n\
                    [GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 78DBA3BC47EF2265 1 8 01 1795486397 9 -\n[GNUPG:] NO_PUBKEY 78DBA3BC47EF2265\n";
        assert_eq!(
            judge("f", good, k).unwrap(),
            ["4CB50190207B4758A3F73A796ED0E7B82643E131"]
        );
        let bad = format!("{good}[GNUPG:] BADSIG 1234 x\n");
        assert!(matches!(
            judge("f", &bad, k),
            Err(SignatureError::Tampered { .. })
        ));
        let unknown = "[GNUPG:] ERRSIG 1234 1 8 01 1 9 -\n[GNUPG:] NO_PUBKEY 1234\n";
        let e = judge("f", unknown, k).unwrap_err();
        assert!(
            matches!(e, SignatureError::UnknownKey { .. }) && e.to_string().contains("1234"),
            "{e}"
        );
        let expired = "[GNUPG:] EXPKEYSIG 1234 x\n[GNUPG:] VALIDSIG ABCD 2020-01-01\n";
        assert!(matches!(
            judge("f", expired, k),
            Err(SignatureError::Rejected { .. })
        ));
        assert!(matches!(
            judge("f", "[GNUPG:] NODATA 1\n", k),
            Err(SignatureError::NotSigned { .. })
        ));
        assert!(matches!(
            judge("f", "", k),
            Err(SignatureError::Rejected { .. })
        ));
    }

    #[test]
    fn a_missing_keyring_says_how_to_get_one() {
        let e = ArchiveKeyring::at("/nonexistent/k.gpg".into(), "KC_DEBIAN_KEYRING", "set it")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/k.gpg does not exist; set it"),
            "{e}"
        );
    }
}
