//! Writing outputs so that a reader never sees half of one: a temporary sibling, then a
//! rename. A crash leaves a `.tmp-*` sibling at worst, never a half-written target.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` (mode 0644, or 0755 when `executable`) through a temporary file
/// in the same directory.
pub fn write_file(path: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    set_mode(tmp.path(), executable)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` (0644) through a temporary file.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_file(path, bytes, false)
}

/// Copies `from` to `to` through a temporary file beside `to`, keeping the mode bits 0755 or
/// 0644 by whether `from` is executable.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    std::fs::copy(from, tmp.path()).with_context(|| format!("copying {}", from.display()))?;
    let executable = std::fs::metadata(from)?.permissions().mode() & 0o111 != 0;
    set_mode(tmp.path(), executable)?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

fn set_mode(path: &Path, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are created 0600; what we publish is world-readable like any output.
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A directory filled under a temporary name beside its target, then renamed into place.
/// Dropped without [`publish`](Self::publish) or [`replace`](Self::replace), it is removed.
#[derive(Debug)]
pub struct StagedDir {
    tmp: tempfile::TempDir,
    target: PathBuf,
}

impl StagedDir {
    pub fn beside(target: &Path) -> Result<Self> {
        let parent = target
            .parent()
            .context("a staged directory needs a parent")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames it to the target, for content-addressed targets: when another process published
    /// the same target first, theirs is as good and ours is dropped. Returns whether ours won.
    pub fn publish(self) -> Result<bool> {
        let tmp = self.tmp.keep();
        match std::fs::rename(&tmp, &self.target) {
            Ok(()) => Ok(true),
            Err(_) if self.target.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e).with_context(|| format!("moving into {}", self.target.display()))
            }
        }
    }

    /// Replaces the target with it: the old directory is moved aside first and removed after,
    /// so the target is never missing for longer than between two renames.
    pub fn replace(self) -> Result<()> {
        let parent = self.target.parent().expect("checked in beside()");
        let name = self
            .target
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let old = parent.join(format!(".old-{name}"));
        let _ = std::fs::remove_dir_all(&old);
        if self.target.exists() {
            std::fs::rename(&self.target, &old)
                .with_context(|| format!("moving {} aside", self.target.display()))?;
        }
        std::fs::rename(self.tmp.keep(), &self.target)
            .with_context(|| format!("moving into {}", self.target.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_appear_whole_with_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/out.bin");
        write_file(&f, b"abc", true).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let g = d.path().join("copy");
        copy(&f, &g).unwrap();
        assert_eq!(
            std::fs::metadata(&g).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn staged_dirs_publish_once_replace_and_clean_up() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("t");
        let a = StagedDir::beside(&target).unwrap();
        std::fs::write(a.path().join("x"), "a").unwrap();
        let b = StagedDir::beside(&target).unwrap();
        std::fs::write(b.path().join("x"), "b").unwrap();
        assert!(a.publish().unwrap());
        assert!(!b.publish().unwrap(), "the first one wins");
        assert_eq!(std::fs::read_to_string(target.join("x")).unwrap(), "a");
        let c = StagedDir::beside(&target).unwrap();
        std::fs::write(c.path().join("y"), "c").unwrap();
        c.replace().unwrap();
        assert!(!target.join("x").exists() && target.join("y").is_file());
        drop(StagedDir::beside(&target).unwrap());
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["t"], "nothing else is left in the parent");
    }
}
