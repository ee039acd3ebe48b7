//! The release format, shared by the pipeline that makes releases and the installer that
//! consumes them: file names, `manifest.json`, `sha256sums.txt`, minisign signatures, and a
//! check of a whole release directory.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const SUMS_FILE: &str = "sha256sums.txt";
pub const MANIFEST: &str = "manifest.json";
pub const SIG_SUFFIX: &str = ".minisig";
/// Where an installed release keeps each tarball's members: `<release>/legacy/` (every
/// bucket's objects, the loader, the kernel checker) and `<release>/co-re/` (the CO-RE
/// objects, skeletons and their headers), each with its own manifest; `<release>/kc-select`
/// and `<release>/kc-exporter` ([`ReleaseTool`]) beside them.
pub const LEGACY_DIR: &str = "legacy";
pub const CORE_DIR: &str = "co-re";
/// `kc-select`, the selection rule as a program, as installed.
pub const SELECT_TOOL: &str = "kc-select";
pub use crate::names::{is_file_of, select_tool_file, ReleaseTool};

pub use crate::names::{core_tarball, legacy_tarball};
use crate::names::{Arch, Libc};

/// The trusted comment of a release file's signature: what the signature vouches for.
pub fn trusted_comment(tag: &str, file: &str) -> String {
    format!("kernel-collector {tag} {file}")
}

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("{file}: {message}")]
    Bad { file: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

fn bad(file: &str, message: impl Into<String>) -> ReleaseError {
    ReleaseError::Bad {
        file: file.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCollector {
    pub name: String,
    pub description: String,
    pub min_kernel: String,
}

/// `manifest.json` inside each release tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tag: String,
    /// Absent for amd64: its manifests came before the field and read as they did.
    #[serde(default, skip_serializing_if = "Arch::is_amd64")]
    pub arch: Arch,
    pub libc: Libc,
    /// `legacy` or `co-re`.
    pub kind: String,
    pub source_commit: String,
    pub source_date_epoch: u64,
    pub toolchain: BTreeMap<String, String>,
    pub collectors: Vec<ManifestCollector>,
    pub buckets: Vec<String>,
    /// Every other file of the tarball.
    pub files: Vec<ManifestFile>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256sum` format: `<hex>  <name>` lines, sorted by name.
pub fn format_sums(files: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = files.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect()
}

/// Parses `sha256sums.txt` into (name, hash); names must be plain file names.
pub fn parse_sums(text: &str) -> Result<Vec<(String, String)>, ReleaseError> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (hash, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| {
                bad(
                    SUMS_FILE,
                    format!("line {}: expected `<sha256>  <file>`", i + 1),
                )
            })?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(
                SUMS_FILE,
                format!("line {}: {hash:?} is not a SHA256", i + 1),
            ));
        }
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(bad(
                SUMS_FILE,
                format!("line {}: {name:?} is not a plain file name", i + 1),
            ));
        }
        out.push((name.to_string(), hash.to_ascii_lowercase()));
    }
    Ok(out)
}

/// Checks a minisign signature of `data` and that its trusted comment names `file` and `tag`.
pub fn verify_signature(
    pubkey: &str,
    file: &str,
    data: &[u8],
    signature: &str,
    tag: Option<&str>,
) -> Result<(), ReleaseError> {
    let pk = minisign::PublicKeyBox::from_string(pubkey)
        .and_then(|b| b.into_public_key())
        .map_err(|e| bad("public key", format!("not a minisign public key: {e}")))?;
    let sig_file = format!("{file}{SIG_SUFFIX}");
    let sig = minisign::SignatureBox::from_string(signature).map_err(|e| {
        bad(
            &sig_file,
            format!("not a minisign signature (truncated?): {e}"),
        )
    })?;
    minisign::verify(&pk, &sig, Cursor::new(data), true, false, false).map_err(|e| {
        bad(
            file,
            format!("signature check failed ({e}): the file was changed, or signed by another key"),
        )
    })?;
    let comment = sig
        .trusted_comment()
        .map_err(|e| bad(&sig_file, e.to_string()))?;
    let words: Vec<&str> = comment.split_whitespace().collect();
    if words.last() != Some(&file) || tag.is_some_and(|t| !words.contains(&t)) {
        return Err(bad(
            &sig_file,
            format!(
                "its trusted comment {comment:?} does not name {file}{}",
                tag.map(|t| format!(" of {t}")).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// What [`check_release_dir`] found.
#[derive(Debug, Default, Serialize)]
pub struct ReleaseCheck {
    pub tag: Option<String>,
    pub files: Vec<String>,
    pub tarball_members: usize,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ReleaseError> {
    std::fs::read(dir.join(name)).map_err(|source| ReleaseError::Io {
        file: name.to_string(),
        source,
    })
}

/// Checks a release directory: the signature of `sha256sums.txt` and of every file it lists,
/// every checksum, and that each tarball's files match its `manifest.json`.
pub fn check_release_dir(dir: &Path, pubkey: &str) -> Result<ReleaseCheck, ReleaseError> {
    let sums_bytes = read(dir, SUMS_FILE)?;
    let sums_sig =
        String::from_utf8_lossy(&read(dir, &format!("{SUMS_FILE}{SIG_SUFFIX}"))?).into_owned();
    verify_signature(pubkey, SUMS_FILE, &sums_bytes, &sums_sig, None)?;
    let sums = parse_sums(&String::from_utf8_lossy(&sums_bytes))?;
    if sums.is_empty() {
        return Err(bad(SUMS_FILE, "lists no file"));
    }
    // Nothing unsigned rides along: every file is listed, or a listed file's signature.
    let listed = |n: &str| {
        let base = n.strip_suffix(SIG_SUFFIX).unwrap_or(n);
        base == SUMS_FILE || sums.iter().any(|(s, _)| s == base)
    };
    let entries = std::fs::read_dir(dir).map_err(|source| ReleaseError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !listed(&name) {
            return Err(bad(
                &name,
                "is in the release directory but in no signed list (sha256sums.txt): remove it, or package the release again",
            ));
        }
    }
    let mut check = ReleaseCheck::default();
    let mut signed = Vec::new();
    for (name, want) in &sums {
        let data = read(dir, name).map_err(|e| match e {
            ReleaseError::Io { file, .. } => bad(
                &file,
                "listed in sha256sums.txt but missing from the release",
            ),
            other => other,
        })?;
        let got = sha256_hex(&data);
        if &got != want {
            return Err(bad(
                name,
                format!("SHA256 mismatch: sha256sums.txt says {want}, the file is {got}"),
            ));
        }
        let sig = String::from_utf8_lossy(&read(dir, &format!("{name}{SIG_SUFFIX}"))?).into_owned();
        verify_signature(pubkey, name, &data, &sig, None)?;
        if name.ends_with(".tar.xz") {
            let manifest = check_tarball(name, &data)?;
            if check.tag.get_or_insert_with(|| manifest.tag.clone()) != &manifest.tag {
                return Err(bad(
                    name,
                    format!(
                        "its manifest is for {}, the rest of the release for {}",
                        manifest.tag,
                        check.tag.clone().unwrap_or_default()
                    ),
                ));
            }
            check.tarball_members += manifest.files.len() + 1;
        }
        check.files.push(name.clone());
        signed.push((name.clone(), data, sig));
    }
    // Every signature vouches for the tag the manifests carry, not only for the bytes.
    if let Some(tag) = &check.tag {
        signed.push((SUMS_FILE.to_string(), sums_bytes, sums_sig));
        for (name, data, sig) in &signed {
            verify_signature(pubkey, name, data, sig, Some(tag))?;
        }
    }
    Ok(check)
}

/// Checks a release tarball's members against its manifest, streaming: each member is hashed
/// as it passes and none is held, so memory stays flat whatever the tarball claims. Once the
/// manifest has been read (`package` writes it first), every later member must have exactly
/// the size the manifest declares, checked from its header before a byte of it is read; the
/// whole stream is bounded by [`TARBALL_DECOMPRESSED_CAP`] whatever the order.
pub fn check_tarball(name: &str, xz: &[u8]) -> Result<Manifest, ReleaseError> {
    check_and_extract(name, xz, None)
}

/// Where [`check_and_extract`] writes what it checks, and which members.
pub struct Extract<'a> {
    /// A fresh directory (the caller's staging area): on an error it holds debris to discard.
    pub dest: &'a Path,
    /// The members to keep, decided once from the manifest.
    pub select: &'a dyn Fn(&Manifest) -> std::collections::BTreeSet<String>,
}

/// [`check_tarball`], writing the kept members into `extract.dest` in the same single pass
/// (files 0644 or 0755, never anything else). A tarball whose manifest comes last (releases
/// from before it came first) is checked first and extracted in a second pass: nothing is
/// written before the manifest says what to keep.
pub fn check_and_extract(
    name: &str,
    xz: &[u8],
    extract: Option<&Extract>,
) -> Result<Manifest, ReleaseError> {
    let (manifest, came_first) = check_pass(name, xz, extract, None)?;
    if extract.is_some() && !came_first {
        check_pass(name, xz, extract, Some(&manifest))?;
    }
    Ok(manifest)
}

/// One pass over the tarball; `known` is the manifest a first pass found at the end. Returns
/// the manifest and whether it was the first member.
fn check_pass(
    name: &str,
    xz: &[u8],
    extract: Option<&Extract>,
    known: Option<&Manifest>,
) -> Result<(Manifest, bool), ReleaseError> {
    let mut came_first = false;
    let mut members = 0usize;
    // What to write, once a manifest (this pass's or the first pass's) has said.
    let mut kept = known.and_then(|m| extract.map(|x| (x.select)(m)));
    let stream = decompressed(xz);
    let mut archive = tar::Archive::new(stream);
    let mut manifest: Option<Manifest> = None;
    let mut declared: BTreeMap<&str, u64> = BTreeMap::new();
    // Member name -> (size, sha256) of every member but the manifest.
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for entry in archive
        .entries()
        .map_err(|e| bad(name, format!("not a tar archive: {e}")))?
    {
        let mut e = entry.map_err(|e| bad(name, format!("corrupt tar stream: {e}")))?;
        let raw = e
            .path()
            .map_err(|e| bad(name, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let member = member_name(&raw)
            .ok_or_else(|| bad(name, format!("member {raw:?} is not a plain relative path")))?;
        members += 1;
        // A release holds regular files only: a link must not stand in for a listed file.
        let kind = e.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(bad(
                name,
                format!("member {raw} is a {kind:?}, not a regular file"),
            ));
        }
        let twice = || {
            bad(
                name,
                format!("two members are {member} (one as {raw:?}): refusing the ambiguity"),
            )
        };
        if member == MANIFEST {
            if manifest.is_some() {
                return Err(twice());
            }
            if e.size() > MANIFEST_CAP {
                return Err(bad(
                    name,
                    format!(
                        "manifest.json is {} bytes: too large for a manifest",
                        e.size()
                    ),
                ));
            }
            let mut bytes = Vec::new();
            (&mut e)
                .take(MANIFEST_CAP)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(name, format!("manifest.json: {e}")))?;
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| bad(name, format!("manifest.json is malformed: {e}")))?;
            came_first = members == 1;
            kept = extract.map(|x| (x.select)(&m));
            // A second pass has written it already.
            let keep_manifest = kept.as_ref().is_some_and(|k| k.contains(MANIFEST));
            if let Some(x) = extract.filter(|_| known.is_none() && keep_manifest) {
                new_member_file(x.dest, MANIFEST, false)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
                    .map_err(|e| ReleaseError::Io {
                        file: format!("{name}: {MANIFEST}"),
                        source: e,
                    })?;
            }
            manifest = Some(m);
            declared = manifest
                .as_ref()
                .map(|m| m.files.iter().map(|f| (f.name.as_str(), f.size)).collect())
                .unwrap_or_default();
            continue;
        }
        if seen.contains_key(&member) {
            return Err(twice());
        }
        let size = e.size();
        if manifest.is_some() {
            match declared.get(member.as_str()) {
                None => {
                    return Err(bad(
                        name,
                        format!("{member} is in the tarball but not in its manifest"),
                    ))
                }
                Some(&want) if want != size => {
                    return Err(bad(
                        name,
                        format!("member {member} is {size} bytes but its manifest declares {want}: refused before reading it"),
                    ))
                }
                Some(_) => {}
            }
        } else if size > TARBALL_DECOMPRESSED_CAP {
            return Err(bad(
                name,
                format!("member {raw} is {size} bytes: too large"),
            ));
        }
        let write_to = match (extract, &kept) {
            (Some(x), Some(k)) if k.contains(&member) => Some(x.dest),
            _ => None,
        };
        let executable = e.header().mode().unwrap_or(0o644) & 0o111 != 0;
        let mut out =
            match write_to {
                Some(dest) => Some(new_member_file(dest, &member, executable).map_err(|e| {
                    ReleaseError::Io {
                        file: format!("{name}: {member}"),
                        source: e,
                    }
                })?),
                None => None,
            };
        let digest = hash_stream(&mut e, out.as_mut())
            .map_err(|e| bad(name, format!("member {member}: {e}")))?;
        seen.insert(member, digest);
    }
    let manifest = manifest.ok_or_else(|| bad(name, "has no manifest.json"))?;
    for f in &manifest.files {
        match seen.remove(&f.name) {
            None => {
                return Err(bad(
                    name,
                    format!("{} is in its manifest but not in the tarball", f.name),
                ))
            }
            Some((size, sha)) if sha != f.sha256 || size != f.size => {
                return Err(bad(
                    name,
                    format!("{} does not match its manifest entry", f.name),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(bad(
            name,
            format!("{extra} is in the tarball but not in its manifest"),
        ));
    }
    Ok((manifest, came_first))
}

/// A new file for `member` under `dest` (its directories made), never following or replacing
/// anything: members are plain relative paths, each met once.
pub fn new_member_file(
    dest: &Path,
    member: &str,
    executable: bool,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dest.join(member);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mode = if executable { 0o755 } else { 0o644 };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // Whatever the umask: the loader must stay executable, nothing else may be.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(file)
}

/// The size and SHA256 of what `r` yields, read in small pieces, copied to `out` if given.
fn hash_stream(
    r: &mut impl Read,
    mut out: Option<&mut std::fs::File>,
) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf)? {
            0 => return Ok((total, hex::encode(hasher.finalize()))),
            n => {
                hasher.update(&buf[..n]);
                if let Some(f) = out.as_mut() {
                    std::io::Write::write_all(f, &buf[..n])?;
                }
                total += n as u64;
            }
        }
    }
}

/// What `manifest.json` may weigh: it lists a few hundred files.
const MANIFEST_CAP: u64 = 1 << 20;

/// What a release tarball may decompress to at most (a release is about 1 MiB).
pub const TARBALL_DECOMPRESSED_CAP: u64 = 256 << 20;

/// A release tarball's decompressed stream, which fails with a plain error (not an early end
/// of file, which tar would report as a cut archive) once it passes
/// [`TARBALL_DECOMPRESSED_CAP`].
pub fn decompressed(xz: &[u8]) -> impl Read + Send + '_ {
    Capped {
        inner: xz2::read::XzDecoder::new(xz),
        left: TARBALL_DECOMPRESSED_CAP,
    }
}

struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One more byte tells a stream that ends exactly at the cap from one that goes on.
            return match self.inner.read(&mut [0u8])? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "it decompresses to more than {} MiB, far more than a release: a decompression bomb or not a release",
                    TARBALL_DECOMPRESSED_CAP >> 20
                ))),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A member's name as extraction will see it (`./x` is `x`), or `None` when it is not a
/// plain relative path (absolute, `..`, empty).
fn member_name(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if raw.starts_with('/') || parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_round_trip_and_refuse_paths() {
        let text = format_sums(&[
            ("b.tar.xz".into(), "ab".repeat(32)),
            ("a.tar.xz".into(), "cd".repeat(32)),
        ]);
        assert!(text.starts_with(&format!("{}  a.tar.xz\n", "cd".repeat(32))));
        assert_eq!(parse_sums(&text).unwrap().len(), 2);
        assert!(parse_sums(&format!("{}  ../etc/passwd\n", "ab".repeat(32))).is_err());
        assert!(parse_sums("zz  a\n").is_err());
        assert!(parse_sums("no separator\n").is_err());
    }

    #[test]
    fn signatures() {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let pk = kp.pk.to_box().unwrap().to_string();
        let sig = minisign::sign(
            Some(&kp.pk),
            &kp.sk,
            Cursor::new(b"data"),
            Some(&trusted_comment("v1.0.0", "f.tar.xz")),
            None,
        )
        .unwrap()
        .to_string();
        verify_signature(&pk, "f.tar.xz", b"data", &sig, Some("v1.0.0")).unwrap();
        let e = verify_signature(&pk, "f.tar.xz", b"dat4", &sig, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.tar.xz") && e.contains("signature check failed"),
            "{e}"
        );
        let e = verify_signature(&pk, "g.tar.xz", b"data", &sig, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not name g.tar.xz"), "{e}");
        let other = minisign::KeyPair::generate_unencrypted_keypair()
            .unwrap()
            .pk
            .to_box()
            .unwrap()
            .to_string();
        assert!(verify_signature(&other, "f.tar.xz", b"data", &sig, None).is_err());
        let e = verify_signature(&pk, "f.tar.xz", b"data", &sig[..sig.len() / 2], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.tar.xz.minisig"), "{e}");
    }

    /// A tarball of raw members: (name, type, data); a manifest listing `listed` is added.
    fn tarball(members: &[(&str, tar::EntryType, &[u8])], listed: &[(&str, &[u8])]) -> Vec<u8> {
        tarball_ordered(members, listed, false)
    }

    /// The same, with the manifest first (as `package` writes it) or last.
    fn tarball_ordered(
        members: &[(&str, tar::EntryType, &[u8])],
        listed: &[(&str, &[u8])],
        manifest_first: bool,
    ) -> Vec<u8> {
        let manifest = Manifest {
            tag: "v1.0.0".into(),
            arch: Arch::Amd64,
            libc: Libc::Glibc,
            kind: "legacy".into(),
            source_commit: String::new(),
            source_date_epoch: 0,
            toolchain: BTreeMap::new(),
            collectors: vec![],
            buckets: vec![],
            files: listed
                .iter()
                .map(|(n, b)| ManifestFile {
                    name: n.to_string(),
                    size: b.len() as u64,
                    sha256: sha256_hex(b),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut all: Vec<(&str, tar::EntryType, &[u8])> = members.to_vec();
        let at = if manifest_first { 0 } else { all.len() };
        all.insert(at, (MANIFEST, tar::EntryType::Regular, &json));
        for (name, kind, data) in all {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(kind);
            h.set_size(if kind == tar::EntryType::Regular {
                data.len() as u64
            } else {
                0
            });
            if kind == tar::EntryType::Symlink {
                h.set_link_name("elsewhere").unwrap();
            }
            h.set_mode(0o644);
            h.set_cksum();
            let body: &[u8] = if kind == tar::EntryType::Regular {
                data
            } else {
                &[]
            };
            b.append(&h, body).unwrap();
        }
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut xz, &b.into_inner().unwrap()).unwrap();
        xz.finish().unwrap()
    }

    #[test]
    fn members_that_alias_or_link_are_refused() {
        use tar::EntryType::{Regular, Symlink};
        let good = tarball(&[("x.o", Regular, b"obj")], &[("x.o", b"obj")]);
        check_tarball("t", &good).unwrap();
        let dot = tarball(&[("./x.o", Regular, b"obj")], &[("x.o", b"obj")]);
        check_tarball("t", &dot).unwrap();
        let twice = tarball(
            &[("x.o", Regular, b"obj"), ("./x.o", Regular, b"bad")],
            &[("x.o", b"obj")],
        );
        let e = check_tarball("t", &twice).unwrap_err().to_string();
        assert!(e.contains("two members are x.o"), "{e}");
        let link = tarball(&[("x.o", Symlink, b"")], &[("x.o", b"")]);
        let e = check_tarball("t", &link).unwrap_err().to_string();
        assert!(e.contains("x.o is a Symlink, not a regular file"), "{e}");
        let up = tarball(&[("../x.o", Regular, b"obj")], &[("x.o", b"obj")]);
        let e = check_tarball("t", &up).unwrap_err().to_string();
        assert!(e.contains("not a plain relative path"), "{e}");
    }

    /// 3 x 100 MiB of zeros in a few hundred KiB, each member under the cap but not all of
    /// them: refused once the stream passes the cap, never held.
    #[test]
    fn a_decompression_bomb_is_cut_at_the_cap() {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..3 {
            let mut h = tar::Header::new_gnu();
            h.set_path(format!("zeros{i}.o")).unwrap();
            h.set_size(100 << 20);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, std::io::repeat(0).take(100 << 20)).unwrap();
        }
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, &b.into_inner().unwrap()).unwrap();
        let bomb = xz.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let e = check_tarball("bomb.tar.xz", &bomb).unwrap_err().to_string();
        assert!(
            e.contains("member zeros2.o: it decompresses to more than 256 MiB"),
            "{e}"
        );
        // A single member that says it is larger than the cap is refused from its header.
        let mut h = tar::Header::new_gnu();
        h.set_path("huge.o").unwrap();
        h.set_size(1 << 40);
        h.set_cksum();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, h.as_bytes()).unwrap();
        let e = check_tarball("bomb.tar.xz", &xz.finish().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("member huge.o is 1099511627776 bytes: too large"),
            "{e}"
        );
    }

    /// With the manifest first, a member is held to the size the manifest declares before a
    /// byte of it is read: a bomb behind a small declaration never decompresses.
    #[test]
    fn after_the_manifest_members_are_bounded_by_its_sizes() {
        use tar::EntryType::Regular;
        let good = tarball_ordered(&[("x.o", Regular, b"obj")], &[("x.o", b"obj")], true);
        check_tarball("t", &good).unwrap();
        let big = vec![0u8; 4096];
        let grown = tarball_ordered(&[("x.o", Regular, &big)], &[("x.o", b"obj")], true);
        let e = check_tarball("t", &grown).unwrap_err().to_string();
        assert!(
            e.contains(
                "member x.o is 4096 bytes but its manifest declares 3: refused before reading it"
            ),
            "{e}"
        );
        let unlisted = tarball_ordered(
            &[("x.o", Regular, b"obj"), ("y.o", Regular, b"obj")],
            &[("x.o", b"obj")],
            true,
        );
        let e = check_tarball("t", &unlisted).unwrap_err().to_string();
        assert!(
            e.contains("y.o is in the tarball but not in its manifest"),
            "{e}"
        );
        let changed = tarball_ordered(&[("x.o", Regular, b"jbo")], &[("x.o", b"obj")], true);
        let e = check_tarball("t", &changed).unwrap_err().to_string();
        assert!(e.contains("x.o does not match its manifest entry"), "{e}");
    }

    /// One pass writes exactly the kept members, in either member order, with modes 0644 or
    /// 0755; the manifest is kept when asked for.
    #[test]
    fn extraction_keeps_what_the_manifest_selects_in_one_pass() {
        use std::os::unix::fs::PermissionsExt;
        use tar::EntryType::Regular;
        let members: &[(&str, tar::EntryType, &[u8])] =
            &[("a.o", Regular, b"aaa"), ("b.o", Regular, b"bbbb")];
        let listed: &[(&str, &[u8])] = &[("a.o", b"aaa"), ("b.o", b"bbbb")];
        for manifest_first in [true, false] {
            let xz = tarball_ordered(members, listed, manifest_first);
            let dir = tempfile::tempdir().unwrap();
            let keep = |m: &Manifest| {
                let mut k = std::collections::BTreeSet::new();
                if m.tag == "v1.0.0" {
                    k.extend(["b.o".to_string(), MANIFEST.to_string()]);
                }
                k
            };
            let m = check_and_extract(
                "t",
                &xz,
                Some(&Extract {
                    dest: dir.path(),
                    select: &keep,
                }),
            )
            .unwrap();
            assert_eq!(m.files.len(), 2);
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["b.o", "manifest.json"],
                "manifest first: {manifest_first}"
            );
            assert_eq!(std::fs::read(dir.path().join("b.o")).unwrap(), b"bbbb");
            let mode = std::fs::metadata(dir.path().join("b.o"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o644);
        }
        // A refusal is still a refusal when extracting.
        let changed = tarball_ordered(&[("a.o", Regular, b"aab")], &[("a.o", b"aaa")], true);
        let dir = tempfile::tempdir().unwrap();
        let keep = |m: &Manifest| m.files.iter().map(|f| f.name.clone()).collect();
        let e = check_and_extract(
            "t",
            &changed,
            Some(&Extract {
                dest: dir.path(),
                select: &keep,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a.o does not match its manifest entry"), "{e}");
    }
}
