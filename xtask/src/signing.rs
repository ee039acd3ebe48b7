//! The release key: `cargo xtask keygen` and `check-release`, reading the signing key, and
//! deterministic minisign signatures.
//!
//! The minisign crate adds random noise to every Ed25519 signature, so two signings of the
//! same file differ. Release files must be reproducible byte for byte, signatures included,
//! so we write the same format (prehashed "ED": Ed25519 over BLAKE2b-512 of the file, then a
//! global signature over signature || trusted comment) with RFC 8032's deterministic Ed25519.
//! The minisign crate and the `minisign` command verify the result.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use blake2::{Blake2b512, Digest};
use clap::Args;
use ed25519_dalek::{Signer, SigningKey};
use kc_common::release;

use crate::atomic;

#[derive(Debug, Args)]
pub struct KeygenOptions {
    /// Writes PREFIX.key (secret) and PREFIX.pub
    #[arg(long)]
    pub out: PathBuf,
    /// Leave the secret key unencrypted (for CI secrets); otherwise the password comes from
    /// KC_SIGNING_KEY_PASSWORD
    #[arg(long)]
    pub unencrypted: bool,
}

#[derive(Debug, Args)]
pub struct CheckReleaseOptions {
    /// The release directory
    pub dir: PathBuf,
    /// The trusted public key
    #[arg(long, default_value = "release.pub")]
    pub pubkey: PathBuf,
}

/// The signing key, from `--key FILE` or `KC_SIGNING_KEY`. Errors never carry key material.
pub fn signing_key(key: Option<&Path>) -> Result<Option<minisign::SecretKey>> {
    let text = match key {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?,
        None => match std::env::var("KC_SIGNING_KEY") {
            Ok(k) if !k.trim().is_empty() => k,
            _ => return Ok(None),
        },
    };
    signing_key_from(&text, std::env::var("KC_SIGNING_KEY_PASSWORD").ok()).map(Some)
}

fn signing_key_from(text: &str, password: Option<String>) -> Result<minisign::SecretKey> {
    let key_box = || minisign::SecretKeyBox::from_string(text.trim_end());
    if let Ok(sk) = key_box().and_then(|b| b.into_unencrypted_secret_key()) {
        return Ok(sk);
    }
    let password = password.filter(|p| !p.is_empty()).context(
        "the signing key is encrypted (or not a minisign secret key): set KC_SIGNING_KEY_PASSWORD to its password",
    )?;
    // Never Some(None)-style prompting: a password is always given, so no terminal is needed.
    let sk = key_box().and_then(|b| b.into_secret_key(Some(password))).map_err(|_| {
        anyhow::anyhow!("the signing key could not be opened: it is not a minisign secret key, or KC_SIGNING_KEY_PASSWORD is not its password")
    })?;
    Ok(sk)
}

pub fn keygen(o: KeygenOptions) -> Result<()> {
    let key_path = PathBuf::from(format!("{}.key", o.out.display()));
    let pub_path = PathBuf::from(format!("{}.pub", o.out.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!("{} exists: keygen never overwrites a key", p.display());
        }
    }
    let kp = if o.unencrypted {
        minisign::KeyPair::generate_unencrypted_keypair()
    } else {
        let password = std::env::var("KC_SIGNING_KEY_PASSWORD").ok().filter(|p| !p.is_empty()).context(
            "set KC_SIGNING_KEY_PASSWORD to the password that will encrypt the secret key (or pass --unencrypted)",
        )?;
        minisign::KeyPair::generate_encrypted_keypair(Some(password))
    }
    .context("generating the key pair")?;
    let sk = kp
        .sk
        .to_box(Some("kernel-collector release secret key"))
        .context("encoding the secret key")?
        .to_string();
    let pk = kp
        .pk
        .to_box()
        .context("encoding the public key")?
        .to_string();
    write_secret(&key_path, sk.as_bytes())?;
    atomic::write(&pub_path, pk.as_bytes())?;
    eprintln!(
        "wrote {} (secret: keep it out of the repository) and {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

pub fn check_release(o: CheckReleaseOptions) -> Result<()> {
    let pubkey = std::fs::read_to_string(crate::paths::in_root(&o.pubkey))
        .with_context(|| format!("reading the public key {}", o.pubkey.display()))?;
    let check = release::check_release_dir(&o.dir, &pubkey)?;
    println!(
        "{}: {} files, {} tarball members: signatures, checksums and manifests verified (tag {})",
        o.dir.display(),
        check.files.len(),
        check.tarball_members,
        check.tag.unwrap_or_default()
    );
    Ok(())
}

/// Offsets in `minisign::SecretKey::to_bytes()`: sig_alg, kdf_alg, chk_alg (2 each), salt (32),
/// opslimit, memlimit (8 each), then keynum (8) and the libsodium secret key (seed || public).
const KEYNUM_AT: usize = 2 + 2 + 2 + 32 + 8 + 8;
const SEED_AT: usize = KEYNUM_AT + 8;

pub fn sign(
    sk: &minisign::SecretKey,
    data: &[u8],
    trusted_comment: &str,
    untrusted_comment: &str,
) -> Result<String> {
    ensure!(
        !trusted_comment.contains('\n') && !untrusted_comment.contains('\n'),
        "comments are one line"
    );
    let raw = zeroize_on_drop(sk.to_bytes());
    ensure!(
        raw.0.len() >= SEED_AT + 64 && !sk.is_encrypted(),
        "the secret key is not decrypted"
    );
    let keynum: [u8; 8] = raw.0[KEYNUM_AT..SEED_AT].try_into().expect("8 bytes");
    let seed: [u8; 32] = raw.0[SEED_AT..SEED_AT + 32].try_into().expect("32 bytes");
    let key = SigningKey::from_bytes(&seed);
    let digest = Blake2b512::digest(data);
    let signature = key.sign(&digest).to_bytes();
    let mut line = Vec::with_capacity(74);
    line.extend_from_slice(b"ED");
    line.extend_from_slice(&keynum);
    line.extend_from_slice(&signature);
    let mut global_input = signature.to_vec();
    global_input.extend_from_slice(trusted_comment.as_bytes());
    let global = key.sign(&global_input).to_bytes();
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "untrusted comment: {untrusted_comment}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
        b64.encode(line),
        b64.encode(global)
    ))
}

/// A fresh unencrypted key pair and its public key text, for checks and benchmarks that sign
/// a release nobody will install.
pub fn throwaway_keypair() -> Result<(minisign::SecretKey, String)> {
    let kp = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| anyhow::anyhow!("generating a key pair: {e}"))?;
    let pk = kp
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("encoding a public key: {e}"))?
        .to_string();
    Ok((kp.sk, pk))
}

/// Key bytes are wiped when dropped.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0
            .iter_mut()
            .for_each(|b| unsafe { std::ptr::write_volatile(b, 0) });
    }
}

fn zeroize_on_drop(v: Vec<u8>) -> Wiped {
    Wiped(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_password_writes_nothing_and_says_so() {
        let kp = minisign::KeyPair::generate_encrypted_keypair(Some("right".into())).unwrap();
        let d = tempfile::tempdir().unwrap();
        let key_file = d.path().join("k.key");
        std::fs::write(&key_file, kp.sk.to_box(None).unwrap().to_string()).unwrap();
        // The password is read from the environment only in signing_key; use the same path.
        let text = std::fs::read_to_string(&key_file).unwrap();
        let opened = minisign::SecretKeyBox::from_string(text.trim_end())
            .and_then(|b| b.into_secret_key(Some("wrong".into())));
        assert!(opened.is_err());
        let e = format!(
            "{:#}",
            signing_key_from(&text, Some("wrong".into())).unwrap_err()
        );
        assert!(
            e.contains("KC_SIGNING_KEY_PASSWORD is not its password")
                && !e.contains(text.lines().nth(1).unwrap()),
            "{e}"
        );
        assert!(signing_key_from(&text, Some("right".into())).is_ok());
        let e = format!("{:#}", signing_key_from(&text, None).unwrap_err());
        assert!(e.contains("set KC_SIGNING_KEY_PASSWORD"), "{e}");
    }

    #[test]
    fn the_minisign_crate_verifies_and_signing_is_deterministic() {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let pk = kp.pk.to_box().unwrap().to_string();
        let a = sign(
            &kp.sk,
            b"release bytes",
            "kernel-collector v1.0.0 f.tar.xz",
            "u",
        )
        .unwrap();
        let b = sign(
            &kp.sk,
            b"release bytes",
            "kernel-collector v1.0.0 f.tar.xz",
            "u",
        )
        .unwrap();
        assert_eq!(a, b);
        kc_common::release::verify_signature(&pk, "f.tar.xz", b"release bytes", &a, Some("v1.0.0"))
            .unwrap();
        assert!(
            kc_common::release::verify_signature(&pk, "f.tar.xz", b"release bytez", &a, None)
                .is_err()
        );
    }
}
