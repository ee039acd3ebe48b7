//! The install prefix's housekeeping: one installer at a time (an advisory lock on
//! `<prefix>/.kc-install.lock`), the leftovers of a killed run, and old releases.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const LOCK_FILE: &str = ".kc-install.lock";
/// What `releases/` calls a release being assembled.
pub const STAGING_PREFIX: &str = ".staging-";
/// The marker of a complete release directory.
pub const COMPLETE: &str = ".complete";

/// Held for the whole install; released when dropped (or when the process dies).
pub struct PrefixLock {
    _file: File,
}

/// Takes the prefix's lock, waiting up to `wait` for another installer to finish.
pub fn lock(prefix: &Path, wait: Duration) -> Result<PrefixLock> {
    std::fs::create_dir_all(prefix).with_context(|| format!("creating {}", prefix.display()))?;
    let path = prefix.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(PrefixLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another kc-install has held {} for {} s: wait for it to finish, or stop it",
                path.display(),
                wait.as_secs()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// The release directory `current` points at, if any.
pub fn current_target(prefix: &Path) -> Option<PathBuf> {
    std::fs::read_link(prefix.join("current"))
        .ok()
        .map(|l| prefix.join(l))
}

/// Removes what a killed installer left: staging directories and a half-made link. Only
/// under the lock, when no other installer can be using them.
pub fn remove_leftovers(prefix: &Path, _held: &PrefixLock) -> Result<usize> {
    let releases = prefix.join("releases");
    let mut removed = 0;
    if let Ok(rd) = std::fs::read_dir(&releases) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing the leftover {}", e.path().display()))?;
                removed += 1;
            }
        }
    }
    let _ = std::fs::remove_file(prefix.join(".current.tmp"));
    Ok(removed)
}

/// Removes the oldest complete releases beyond the newest `keep` (the current one always
/// counts and always stays); returns what it removed.
pub fn prune(prefix: &Path, keep: usize, _held: &PrefixLock) -> Result<Vec<PathBuf>> {
    let current = current_target(prefix);
    let mut releases: Vec<(std::time::SystemTime, PathBuf)> =
        std::fs::read_dir(prefix.join("releases"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join(COMPLETE).is_file())
                    .filter_map(|p| Some((p.join(COMPLETE).metadata().ok()?.modified().ok()?, p)))
                    .collect()
            })
            .unwrap_or_default();
    // Newest first; the current release first of all.
    releases.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    releases.sort_by_key(|(_, p)| Some(p) != current.as_ref());
    let mut removed = Vec::new();
    for (_, p) in releases.into_iter().skip(keep.max(1)) {
        std::fs::remove_dir_all(&p).with_context(|| format!("removing the old {}", p.display()))?;
        removed.push(p);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_says_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path(), Duration::ZERO).unwrap();
        let e = format!(
            "{:#}",
            lock(d.path(), Duration::from_millis(250)).err().unwrap()
        );
        assert!(
            e.contains("another kc-install") && e.contains(LOCK_FILE),
            "{e}"
        );
        drop(held);
        lock(d.path(), Duration::ZERO).unwrap();
    }

    #[test]
    fn leftovers_go_and_old_releases_are_pruned_but_never_current() {
        let d = tempfile::tempdir().unwrap();
        let rel = d.path().join("releases");
        for (i, name) in ["v1-glibc", "v2-glibc", "v3-glibc"].iter().enumerate() {
            std::fs::create_dir_all(rel.join(name)).unwrap();
            std::fs::write(rel.join(name).join(COMPLETE), "").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            File::options()
                .write(true)
                .open(rel.join(name).join(COMPLETE))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::create_dir_all(rel.join(".staging-abc/x")).unwrap();
        // The oldest is current (a downgrade): it stays, with the newest.
        std::os::unix::fs::symlink("releases/v1-glibc", d.path().join("current")).unwrap();
        let held = lock(d.path(), Duration::ZERO).unwrap();
        assert_eq!(remove_leftovers(d.path(), &held).unwrap(), 1);
        let removed = prune(d.path(), 2, &held).unwrap();
        assert_eq!(removed, [rel.join("v2-glibc")]);
        let mut left: Vec<String> = std::fs::read_dir(&rel)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["v1-glibc", "v3-glibc"]);
    }
}
