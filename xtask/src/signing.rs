//! Deterministic minisign signatures.
//!
//! The minisign crate adds random noise to every Ed25519 signature, so two signings of the
//! same file differ. Release files must be reproducible byte for byte, signatures included,
//! so we write the same format (prehashed "ED": Ed25519 over BLAKE2b-512 of the file, then a
//! global signature over signature || trusted comment) with RFC 8032's deterministic Ed25519.
//! The minisign crate and the `minisign` command verify the result.

use anyhow::{ensure, Result};
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey};

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
