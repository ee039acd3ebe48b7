//! Installs a kernel-collector release on a host:
//!
//! 1. fetch `sha256sums.txt`, the libc's tarball and their `.minisig` (URL or directory);
//! 2. verify both signatures against the pinned public key (trusted comments name file and
//!    tag), the tarball's checksum, and the tarball against its manifest;
//! 3. extract it safely (no `..`, no absolute paths, no links leaving the target, no devices);
//! 4. keep the objects of the bucket the kernel selects, the loader and the manifest;
//! 5. move them into `<prefix>/releases/<tag>-<libc>-<bucket>` and switch `<prefix>/current` to
//!    it with a rename, so the previous install stays whole until the new one is complete.
//!
//! Everything before step 5 happens in a staging directory that is removed on failure.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kc_common::release::{self, Manifest};
use kc_common::{select_bucket, Bucket, KernelVersion, Libc};

pub struct Options {
    /// Base URL or directory of the release.
    pub from: String,
    pub tag: String,
    /// The trusted minisign public key (file contents).
    pub pubkey: String,
    pub prefix: PathBuf,
    pub libc: Libc,
    /// The kernel release to install for.
    pub kernel: String,
    /// Complete releases kept in `<prefix>/releases` (the current one included).
    pub keep: usize,
    /// What each download may cost.
    pub limits: download::Limits,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyInstalled(PathBuf),
    Installed {
        dir: PathBuf,
        bucket: String,
        files: usize,
    },
}

pub mod download;
pub mod prefix;

use download::{fetch, SMALL_FILE_CAP, TARBALL_CAP};

use prefix::COMPLETE;

/// How long an install waits for another one on the same prefix.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// The files of the release that this kernel uses: its bucket's objects, the loader, the
/// checker and the manifest.
pub fn selected(manifest: &Manifest, kernel: &str) -> Result<(Bucket, Vec<String>)> {
    let version = KernelVersion::parse(kernel)?;
    let buckets: Vec<Bucket> = manifest
        .buckets
        .iter()
        .map(|b| b.parse())
        .collect::<Result<_, _>>()?;
    let bucket = select_bucket(&version, &buckets)?;
    let suffix = format!(".{bucket}.o");
    let mut files: Vec<String> = manifest
        .files
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| !n.ends_with(".o") || n.ends_with(&suffix))
        .collect();
    files.push(release::MANIFEST.into());
    Ok((bucket, files))
}

pub fn install(o: &Options) -> Result<Outcome> {
    // One installer at a time: a second one waits, then finds the work done.
    let held = prefix::lock(&o.prefix, LOCK_WAIT)?;
    prefix::remove_leftovers(&o.prefix, &held)?;
    let outcome = install_locked(o)?;
    prefix::prune(&o.prefix, o.keep, &held)?;
    Ok(outcome)
}

/// Where a release's objects for one bucket live: the bucket is part of the name, so a kernel
/// upgrade to another bucket installs beside the current one instead of over it.
fn release_dir(o: &Options, bucket: Bucket) -> PathBuf {
    o.prefix
        .join("releases")
        .join(format!("{}-{}-{bucket}", o.tag, o.libc))
}

/// The complete release `current` points at, when it is this tag and libc and holds the bucket
/// this kernel selects from it (by its own installed manifest).
fn already_installed(o: &Options) -> Option<PathBuf> {
    let current = prefix::current_target(&o.prefix)?;
    if !current.join(COMPLETE).is_file() {
        return None;
    }
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(current.join(release::MANIFEST)).ok()?).ok()?;
    if manifest.tag != o.tag || manifest.libc != o.libc {
        return None;
    }
    let (bucket, _) = selected(&manifest, &o.kernel).ok()?;
    (current == release_dir(o, bucket)).then_some(current)
}

fn install_locked(o: &Options) -> Result<Outcome> {
    let name = release::legacy_tarball(o.libc, &o.tag);
    let current = o.prefix.join("current");
    if let Some(dir) = already_installed(o) {
        return Ok(Outcome::AlreadyInstalled(dir));
    }
    // 1-2: fetch and verify.
    let sums = fetch(&o.from, release::SUMS_FILE, SMALL_FILE_CAP, &o.limits)?;
    let sums_sig = fetch(
        &o.from,
        &format!("{}{}", release::SUMS_FILE, release::SIG_SUFFIX),
        SMALL_FILE_CAP,
        &o.limits,
    )?;
    release::verify_signature(
        &o.pubkey,
        release::SUMS_FILE,
        &sums,
        &String::from_utf8_lossy(&sums_sig),
        Some(&o.tag),
    )?;
    let listed = release::parse_sums(&String::from_utf8_lossy(&sums))?;
    let want = listed
        .iter()
        .find(|(n, _)| n == &name)
        .map(|(_, h)| h.clone())
        .with_context(|| {
            format!(
                "the release {} has no {name} (is {} the right libc?)",
                o.tag, o.libc
            )
        })?;
    let tarball = fetch(&o.from, &name, TARBALL_CAP, &o.limits)?;
    let got = release::sha256_hex(&tarball);
    if got != want {
        bail!("{name}: SHA256 mismatch: sha256sums.txt says {want}, the download is {got}; nothing was installed");
    }
    let sig = fetch(
        &o.from,
        &format!("{name}{}", release::SIG_SUFFIX),
        SMALL_FILE_CAP,
        &o.limits,
    )?;
    release::verify_signature(
        &o.pubkey,
        &name,
        &tarball,
        &String::from_utf8_lossy(&sig),
        Some(&o.tag),
    )?;
    // 2-4: one pass over the tarball checks every member against the manifest and writes
    // the ones this kernel uses into a staging directory, removed on any refusal.
    let releases = o.prefix.join("releases");
    std::fs::create_dir_all(&releases)
        .with_context(|| format!("creating {}", releases.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(prefix::STAGING_PREFIX)
        .tempdir_in(&releases)?;
    // A manifest that selects nothing for this kernel is refused by `selected` below.
    let select = |m: &Manifest| {
        selected(m, &o.kernel).map_or_else(
            |_| Default::default(),
            |(_, keep)| keep.into_iter().collect(),
        )
    };
    let manifest = release::check_and_extract(
        &name,
        &tarball,
        Some(&release::Extract {
            dest: staging.path(),
            select: &select,
        }),
    )?;
    if manifest.tag != o.tag || manifest.libc != o.libc {
        bail!(
            "{name}: its manifest is for {} {}, not {} {}",
            manifest.tag,
            manifest.libc,
            o.tag,
            o.libc
        );
    }
    let (bucket, keep) = selected(&manifest, &o.kernel)?;
    let target = release_dir(o, bucket);
    for f in &keep {
        if !staging.path().join(f).is_file() {
            bail!("{name}: {f} is missing after extraction");
        }
    }
    std::fs::write(
        staging.path().join(COMPLETE),
        format!("{} {} bucket {bucket}\n", o.tag, o.libc),
    )?;

    // 5: move into place, then switch `current` atomically.
    let staged = staging.keep();
    if target.exists() {
        // An earlier attempt of the same tag, or its complete install that `current` has left
        // since; either way not what `current` points at (checked above, under the lock).
        if prefix::current_target(&o.prefix).as_deref() == Some(target.as_path()) {
            bail!(
                "{} is current but incomplete: remove it by hand",
                target.display()
            );
        }
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("removing the incomplete {}", target.display()))?;
    }
    std::fs::rename(&staged, &target)
        .with_context(|| format!("moving the release to {}", target.display()))?;
    let link = o.prefix.join(".current.tmp");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target.strip_prefix(&o.prefix).unwrap_or(&target), &link)?;
    std::fs::rename(&link, &current).with_context(|| format!("switching {}", current.display()))?;
    Ok(Outcome::Installed {
        dir: target,
        bucket: bucket.to_string(),
        files: keep.len(),
    })
}
