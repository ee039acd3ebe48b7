//! Installs a kernel-collector release on a host:
//!
//! 1. fetch `sha256sums.txt`, the libc's two tarballs (legacy and CO-RE), `kc-select-<arch>`,
//!    `kc-exporter-<arch>` (where the release has one) and their `.minisig` (URL or directory;
//!    the tarballs and programs at once);
//! 2. verify every signature against the pinned public key (trusted comments name file and
//!    tag), each tarball's checksum, and each tarball against its manifest;
//! 3. extract them safely (no `..`, no absolute paths, no links leaving the target, no devices)
//!    into `legacy/` (every bucket's objects, the loader, the kernel checker) and `co-re/` (the
//!    CO-RE objects, skeletons and headers), with the release's static `kc-select` and
//!    `kc-exporter` beside them: the objects for every kernel the host may boot, chosen at run time by `kc-select`
//!    (kc-common's rule). `--only-bucket` keeps the legacy objects of the running kernel's
//!    bucket only, and no CO-RE;
//! 4. move them into `<prefix>/releases/<tag>-<libc>` (`-<bucket>` when lean) and switch
//!    `<prefix>/current` to it with a rename, so the previous install stays whole until the new
//!    one is complete.
//!
//! Everything before step 4 happens in a staging directory that is removed on failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kc_common::release::{self, Manifest, CORE_DIR, LEGACY_DIR};
use kc_common::select::{self, Kernel, LegacyMode, Offer, Selection, Trial};
use kc_common::{select_bucket, Arch, Bucket, KernelVersion, Libc};

pub struct Options {
    /// Base URL or directory of the release.
    pub from: String,
    pub tag: String,
    /// The trusted minisign public key (file contents).
    pub pubkey: String,
    pub prefix: PathBuf,
    pub libc: Libc,
    /// The host's architecture: only a release's objects for it are installed.
    pub arch: Arch,
    /// The kernel release the lean install (`only_bucket`) selects its bucket for.
    pub kernel: String,
    /// Install the legacy objects of `kernel`'s bucket only (no CO-RE, no other bucket).
    pub only_bucket: bool,
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
        /// The one bucket a lean install kept.
        bucket: Option<String>,
        files: usize,
    },
}

pub mod download;
pub mod prefix;

use download::{fetch, SMALL_FILE_CAP, TARBALL_CAP};

use prefix::COMPLETE;

/// How long an install waits for another one on the same prefix.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// The legacy tarball's files a lean install keeps for this kernel: its bucket's objects, the
/// loader, `kc-select`, the checker and the manifest.
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

/// What the rule will choose on `kernel` from an installed release, without asking the kernel
/// (CO-RE on BTF alone): what the installer reports. `kc-select` asks the kernel.
pub fn predict(dir: &Path, kernel: &str, btf: &Path) -> Result<Vec<Selection>> {
    let offer = Offer::installed(dir, LegacyMode::default()).map_err(anyhow::Error::msg)?;
    let kernel = Kernel::probe(kernel, btf)?;
    Ok(select::choose(
        &kernel,
        &offer,
        LegacyMode::default(),
        &|_| Trial::NotTried,
    ))
}

pub fn install(o: &Options) -> Result<Outcome> {
    // One installer at a time: a second one waits, then finds the work done.
    let held = prefix::lock(&o.prefix, LOCK_WAIT)?;
    prefix::remove_leftovers(&o.prefix, &held)?;
    let outcome = install_locked(o)?;
    prefix::prune(&o.prefix, o.keep, &held)?;
    Ok(outcome)
}

/// Where a release lives: `<tag>-<libc>`, or `<tag>-<libc>-<bucket>` for a lean install (the
/// bucket is part of the name, so a kernel upgrade to another bucket installs beside it).
fn release_dir(o: &Options, bucket: Option<Bucket>) -> PathBuf {
    let name = match bucket {
        Some(b) => format!("{}-{}-{b}", o.tag, o.libc),
        None => format!("{}-{}", o.tag, o.libc),
    };
    o.prefix.join("releases").join(name)
}

/// The complete release `current` points at, when it is this tag and libc and the install
/// asked for (a lean one: holding the bucket this kernel selects, by its installed manifest).
fn already_installed(o: &Options) -> Option<PathBuf> {
    let current = prefix::current_target(&o.prefix)?;
    if !current.join(COMPLETE).is_file() {
        return None;
    }
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(current.join(LEGACY_DIR).join(release::MANIFEST)).ok()?,
    )
    .ok()?;
    if manifest.tag != o.tag || manifest.libc != o.libc || manifest.arch != o.arch {
        return None;
    }
    let bucket = if o.only_bucket {
        Some(selected(&manifest, &o.kernel).ok()?.0)
    } else {
        None
    };
    (current == release_dir(o, bucket)).then_some(current)
}

/// Fetches `name` (at most `cap` bytes) and checks it against `sha256sums.txt` (already
/// verified) and its own signature.
fn fetch_verified(
    o: &Options,
    listed: &[(String, String)],
    name: &str,
    cap: u64,
) -> Result<Vec<u8>> {
    let want = listed
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, h)| h.clone())
        .with_context(|| {
            format!(
                "the release {} has no {name} (is {} the right libc? a release without CO-RE objects installs with --only-bucket)",
                o.tag, o.libc
            )
        })?;
    let tarball = fetch(&o.from, name, cap, &o.limits)?;
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
        name,
        &tarball,
        &String::from_utf8_lossy(&sig),
        Some(&o.tag),
    )?;
    Ok(tarball)
}

/// What a release's program may weigh (kc-select is about 2 MiB, kc-exporter 3).
const TOOL_CAP: u64 = 32 << 20;

/// Writes a release's program, executable, into the staging directory.
fn write_tool(staging: &Path, tool: release::ReleaseTool, bytes: &[u8]) -> Result<()> {
    let path = staging.join(tool.program());
    release::new_member_file(staging, tool.program(), true)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// Fetches, checks and writes the release's programs for the host's architecture: kc-select
/// (every release has it, checked before this) and kc-exporter where the release carries it
/// (releases before it did not). Returns how many it wrote.
fn install_tools(o: &Options, listed: &[(String, String)], staging: &Path) -> Result<usize> {
    let mut written = 0;
    for tool in release::ReleaseTool::ALL {
        let name = tool.file(o.arch, &o.tag);
        if tool != release::ReleaseTool::Select && !listed.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let bytes = fetch_verified(o, listed, &name, TOOL_CAP)?;
        write_tool(staging, tool, &bytes)?;
        written += 1;
    }
    Ok(written)
}

/// Fetches and checks tarball `name` (of `kind`), and extracts into `dest` (created) the
/// members kept: every one, or for a lean legacy install the kernel's bucket's. Returns how
/// many files it wrote and, when lean, the bucket.
fn install_tarball(
    o: &Options,
    listed: &[(String, String)],
    name: &str,
    kind: &str,
    dest: &Path,
) -> Result<(usize, Option<Bucket>)> {
    let tarball = fetch_verified(o, listed, name, TARBALL_CAP)?;
    // One pass over the tarball checks every member against the manifest and writes the ones
    // kept into the staging directory, removed on any refusal.
    std::fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
    let lean = o.only_bucket && kind == "legacy";
    // A manifest that selects nothing for this kernel is refused by `selected` below.
    let select = |m: &Manifest| -> BTreeSet<String> {
        if lean {
            selected(m, &o.kernel)
                .map_or_else(|_| Default::default(), |(_, k)| k.into_iter().collect())
        } else {
            m.files
                .iter()
                .map(|f| f.name.clone())
                .chain([release::MANIFEST.to_string()])
                .collect()
        }
    };
    let manifest = release::check_and_extract(
        name,
        &tarball,
        Some(&release::Extract {
            dest,
            select: &select,
        }),
    )?;
    if manifest.tag != o.tag
        || manifest.libc != o.libc
        || manifest.kind != kind
        || manifest.arch != o.arch
    {
        bail!(
            "{name}: its manifest is for {} {} {} {}, not {} {} {} {kind}",
            manifest.tag,
            manifest.arch,
            manifest.libc,
            manifest.kind,
            o.tag,
            o.arch,
            o.libc
        );
    }
    let bucket = if lean {
        Some(selected(&manifest, &o.kernel)?.0)
    } else {
        None
    };
    let kept = select(&manifest);
    for f in &kept {
        if !dest.join(f).is_file() {
            bail!("{name}: {f} is missing after extraction");
        }
    }
    Ok((kept.len(), bucket))
}

fn install_locked(o: &Options) -> Result<Outcome> {
    let current = o.prefix.join("current");
    if let Some(dir) = already_installed(o) {
        return Ok(Outcome::AlreadyInstalled(dir));
    }
    // 1-2: the signed list of checksums first.
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
    // Before anything else is fetched or the prefix touched: a release carries objects of
    // the architectures its files name, and another architecture's kernel must never be
    // handed them.
    let tool = release::select_tool_file(o.arch, &o.tag);
    if !listed.iter().any(|(name, _)| *name == tool) {
        let carried: Vec<String> = Arch::ALL
            .iter()
            .filter(|a| {
                listed
                    .iter()
                    .any(|(n, _)| *n == release::select_tool_file(**a, &o.tag))
            })
            .map(|a| a.to_string())
            .collect();
        if carried.is_empty() {
            bail!(
                "the release {} lists no kc-select for any architecture (its sha256sums.txt lacks {tool}): nothing was installed. Is it a kernel-collector release?",
                o.tag
            );
        }
        bail!(
            "this host is {}, and the release {} carries objects for {} only: nothing was installed. Install on an {} host, or with a release whose files include {tool}",
            o.arch,
            o.tag,
            carried.join(", "),
            carried.join(" or "),
        );
    }
    let releases = o.prefix.join("releases");
    std::fs::create_dir_all(&releases)
        .with_context(|| format!("creating {}", releases.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(prefix::STAGING_PREFIX)
        .tempdir_in(&releases)?;
    let mut parts = vec![(
        LEGACY_DIR,
        release::legacy_tarball(o.arch, o.libc, &o.tag),
        "legacy",
    )];
    if !o.only_bucket {
        parts.push((
            CORE_DIR,
            release::core_tarball(o.arch, o.libc, &o.tag),
            "co-re",
        ));
    }
    // 2-3: the tarballs and the programs at once (each one's download, checks and extraction are
    // independent); the first refusal, in that order, is the one reported.
    let (results, tool_result) = std::thread::scope(|s| {
        let jobs: Vec<_> = parts
            .iter()
            .map(|(sub, name, kind)| {
                let (listed, dest) = (&listed, staging.path().join(sub));
                s.spawn(move || install_tarball(o, listed, name, kind, &dest))
            })
            .collect();
        let tool_result = install_tools(o, &listed, staging.path());
        let results: Vec<Result<(usize, Option<Bucket>)>> = jobs
            .into_iter()
            .map(|j| j.join().expect("an install thread panicked"))
            .collect();
        (results, tool_result)
    });
    let mut files = 0;
    let mut bucket = None;
    for r in results {
        let (n, b) = r?;
        files += n;
        bucket = bucket.or(b);
    }
    files += tool_result?;
    let target = release_dir(o, bucket);
    std::fs::write(
        staging.path().join(COMPLETE),
        match bucket {
            Some(b) => format!("{} {} bucket {b}\n", o.tag, o.libc),
            None => format!("{} {} every bucket and CO-RE\n", o.tag, o.libc),
        },
    )?;

    // 4: move into place, then switch `current` atomically.
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
        bucket: bucket.map(|b| b.to_string()),
        files,
    })
}
