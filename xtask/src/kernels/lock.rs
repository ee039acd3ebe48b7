//! `cargo xtask kernels lock`: read the suites' indexes and pin the matrix.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::resolve::{self, SuiteIndex};
use super::spec::{Lock, Matrix};
use crate::atomic;
use crate::debian::index;
use crate::debian::mirror::Mirror;
use crate::download::{sha256_bytes, Downloader};

/// Downloads and checks one suite's `main/binary-amd64/Packages` index (xz, else gz),
/// against the sizes and hashes its `Release` file lists.
pub fn fetch_suite_index(dl: &Downloader, mirror: &Mirror, suite: &str) -> Result<SuiteIndex> {
    let release_url = mirror.url(suite, &format!("dists/{suite}/Release"));
    let release = dl
        .fetch_bytes(&release_url)
        .with_context(|| format!("suite {suite}: reading its Release file (is the suite name right, and does the mirror carry it?)"))?;
    let sums = index::release_checksums(&String::from_utf8_lossy(&release));
    let mut last_err = None;
    for (ext, name) in [
        ("xz", "main/binary-amd64/Packages.xz"),
        ("gz", "main/binary-amd64/Packages.gz"),
    ] {
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
        let packages = index::parse(&format!("{suite}/{name}"), &text, resolve::wanted_package)?;
        return Ok(resolve::index_by_name(packages));
    }
    match last_err {
        Some(e) => Err(e.context(format!("suite {suite}: downloading its Packages index"))),
        None => {
            bail!("suite {suite}: its Release file lists no main/binary-amd64/Packages.{{xz,gz}}")
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

pub struct LockOutcome {
    pub lock: Lock,
    pub changed: bool,
}

/// Resolves the matrix at `matrix_path` from `mirror` and writes the lock to `lock_path`
/// (only when its text changes).
pub fn run(mirror: &Mirror, matrix_path: &Path, lock_path: &Path) -> Result<LockOutcome> {
    let matrix = Matrix::load(matrix_path)?;
    let mut suites: Vec<String> = matrix
        .kernel
        .iter()
        .flat_map(|k| k.suites.clone())
        .collect();
    suites.sort();
    suites.dedup();
    let dl = Downloader::new();
    // One thread per suite: the indexes are large and the mirror is the bottleneck.
    let results: Vec<(String, Result<SuiteIndex>)> = std::thread::scope(|s| {
        let handles: Vec<_> = suites
            .iter()
            .map(|suite| {
                (
                    suite.clone(),
                    s.spawn(|| fetch_suite_index(&dl, mirror, suite)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| (n, h.join().expect("index thread panicked")))
            .collect()
    });
    let mut indexes = BTreeMap::new();
    for (suite, r) in results {
        indexes.insert(suite, r?);
    }
    let lock = resolve::resolve(&matrix, &indexes)?;
    let text = lock.to_toml();
    let path = lock_path;
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
    if changed {
        atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(LockOutcome { lock, changed })
}
