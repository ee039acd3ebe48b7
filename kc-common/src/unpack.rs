//! Safe tar extraction: nothing is ever written outside the destination directory.
//!
//! Refused: absolute member paths, `..` components, members whose path passes through a
//! symlink, device files and FIFOs, hard links to anything but a regular file already
//! extracted, and symlinks whose target (followed through the links of the tree itself)
//! leaves the destination. The caller extracts into a fresh temporary directory and
//! renames it into place only on success, so a refused archive leaves nothing behind.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("{archive}: member {member:?} refused: {reason}")]
    Unsafe {
        archive: String,
        member: String,
        reason: String,
    },
    #[error("{archive}: reading the tar stream failed (truncated or corrupt?): {source}")]
    Corrupt {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: writing {path}: {source}")]
    Write {
        archive: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Members that `keep` turned down.
    pub skipped: u64,
}

/// Normalizes a member path: strips `./`, refuses absolute paths and `..`.
pub fn member_path(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(out)
}

/// Follows `rel` inside `root` through the symlinks that exist under `root`, as the kernel
/// would, and returns the physical path relative to `root`; `Err` if it leaves `root` (or
/// names an absolute target, or loops).
pub fn resolve_inside(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut todo: Vec<PathBuf> = rel
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut done = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.components().next() {
            Some(Component::CurDir) | None => {}
            Some(Component::ParentDir) => {
                if !done.pop() {
                    return Err("it leaves the destination".into());
                }
            }
            Some(Component::RootDir | Component::Prefix(_)) => return Err("absolute target".into()),
            Some(Component::Normal(name)) => {
                done.push(name);
                let here = root.join(&done);
                if let Ok(target) = fs::read_link(&here) {
                    hops += 1;
                    if hops > 40 {
                        return Err("too many levels of symbolic links".into());
                    }
                    if target.is_absolute() {
                        return Err(format!("symlink {} has absolute target", done.display()));
                    }
                    done.pop();
                    todo.extend(
                        target
                            .components()
                            .rev()
                            .map(|c| PathBuf::from(c.as_os_str())),
                    );
                }
            }
        }
    }
    Ok(done)
}

/// Extracts a tar stream into `dest` (which must exist and should be empty), keeping members
/// for which `keep(path)` is true. Modes are kept (permission bits only); owners are not.
pub fn unpack_tar<R: Read + Send>(
    archive_name: &str,
    reader: R,
    dest: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<UnpackStats, UnpackError> {
    read_ahead(reader, |r| unpack_stream(archive_name, r, dest, keep))
}

fn unpack_stream<R: Read>(
    archive_name: &str,
    reader: R,
    dest: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<UnpackStats, UnpackError> {
    let unsafe_member = |member: &Path, reason: String| UnpackError::Unsafe {
        archive: archive_name.to_string(),
        member: member.display().to_string(),
        reason,
    };
    let corrupt = |source| UnpackError::Corrupt {
        archive: archive_name.to_string(),
        source,
    };
    let write_err = |path: &Path, source| UnpackError::Write {
        archive: archive_name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut stats = UnpackStats::default();
    let mut links = Vec::new();
    let mut created_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut buf = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let rel = member_path(&raw).map_err(|r| unsafe_member(&raw, r))?;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        if !keep(&rel) {
            stats.skipped += 1;
            continue;
        }
        // No member may be written through a symlink of the tree.
        let mut prefix = PathBuf::new();
        let parent_components: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parent_components {
            prefix.push(c);
            if created_dirs.contains(&prefix) {
                continue;
            }
            match fs::symlink_metadata(dest.join(&prefix)) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_member(
                        &raw,
                        format!("its path passes through the symlink {}", prefix.display()),
                    ))
                }
                Ok(m) if m.is_dir() => {
                    created_dirs.insert(prefix.clone());
                }
                Ok(_) => {
                    return Err(unsafe_member(
                        &raw,
                        format!("{} is not a directory", prefix.display()),
                    ))
                }
                Err(_) => {
                    fs::create_dir_all(dest.join(&prefix)).map_err(|e| write_err(&prefix, e))?;
                    created_dirs.insert(prefix.clone());
                }
            }
        }
        let out = dest.join(&rel);
        // 0755 or 0644, whatever the archive says: never world-writable, never setuid.
        let mode = if entry.header().mode().unwrap_or(0o644) & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                buf.clear();
                entry.read_to_end(&mut buf).map_err(corrupt)?;
                let mut file = create_new(&out).map_err(|e| write_err(&out, e))?;
                file.write_all(&buf).map_err(|e| write_err(&out, e))?;
                set_mode(&out, mode).map_err(|e| write_err(&out, e))?;
                stats.files += 1;
                stats.bytes += buf.len() as u64;
            }
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&out) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(unsafe_member(&raw, "a directory replaces a file or link".into())),
                    // Another unpack into the same tree may make it meanwhile: that is fine.
                    Err(_) => match fs::create_dir(&out) {
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && out.is_dir() && !fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) => {}
                        r => r.map_err(|e| write_err(&out, e))?,
                    },
                }
                set_mode(&out, mode | 0o700).map_err(|e| write_err(&out, e))?;
                created_dirs.insert(rel.clone());
                stats.dirs += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_member(&raw, "symlink without a target".into()))?
                    .into_owned();
                if target.is_absolute() {
                    return Err(unsafe_member(&raw, format!("symlink to the absolute path {}", target.display())));
                }
                // Lexical check now; the physical check, through the tree's other links, at the end.
                let lexical = rel.parent().unwrap_or(Path::new("")).join(&target);
                resolve_lexically(&lexical)
                    .map_err(|r| unsafe_member(&raw, format!("symlink to {}: {r}", target.display())))?;
                remove_existing(&out).map_err(|e| write_err(&out, e))?;
                symlink(&target, &out).map_err(|e| write_err(&out, e))?;
                links.push((raw.clone(), rel.clone()));
                stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_member(&raw, "hard link without a target".into()))?;
                let target_rel = member_path(&target).map_err(|r| unsafe_member(&raw, format!("hard link target: {r}")))?;
                let physical = resolve_inside(dest, &target_rel)
                    .map_err(|r| unsafe_member(&raw, format!("hard link target: {r}")))?;
                let src = dest.join(&physical);
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_file() => {}
                    _ => return Err(unsafe_member(&raw, format!("hard link to {}, which is not a file extracted before it", target_rel.display()))),
                }
                remove_existing(&out).map_err(|e| write_err(&out, e))?;
                fs::hard_link(&src, &out).map_err(|e| write_err(&out, e))?;
                stats.files += 1;
            }
            other => {
                return Err(unsafe_member(&raw, format!("unsupported member type {other:?} (device files and FIFOs are never extracted)")))
            }
        }
    }
    for (raw, rel) in links {
        resolve_inside(dest, &rel)
            .map_err(|r| unsafe_member(&raw, format!("symlink leaves the destination: {r}")))?;
    }
    Ok(stats)
}

fn resolve_lexically(path: &Path) -> Result<(), String> {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or("it leaves the destination")?;
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    Ok(())
}

/// Creates a file that must not exist yet: `O_EXCL` never follows a symlink, so a link an
/// earlier member planted at this path cannot redirect the write. A member that repeats a
/// path replaces the earlier one.
fn create_new(path: &Path) -> io::Result<fs::File> {
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_existing(path)?;
            open()
        }
        r => r,
    }
}

/// The reading end of [`read_ahead`]: chunks another thread has read.
struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // the reading thread is done: end of stream
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `consume` on a reader fed by another thread that reads `inner` ahead: decompression
/// and writing files take about as long as each other, so overlapping them nearly halves an
/// unpack. When `consume` stops early, the reading thread stops at its next chunk.
fn read_ahead<R: Read + Send, T>(mut inner: R, consume: impl FnOnce(ChunkReader) -> T) -> T {
    const CHUNK: usize = 256 * 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    std::thread::scope(|s| {
        s.spawn(move || loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == CHUNK {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(filled);
            let at_end = filled < CHUNK;
            match result {
                Ok(()) => {
                    if filled > 0 && tx.send(Ok(chunk)).is_err() || at_end {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Ok(chunk));
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        });
        consume(ChunkReader {
            chunks: rx,
            current: Vec::new(),
            pos: 0,
        })
    })
}

fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    enum M<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// Builds a tar by hand so that member names the `tar` builder would refuse can be written.
    fn tar_of(members: &[M]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in members {
            let mut h = tar::Header::new_old();
            let (name, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match m {
                M::File(n, d) => (n, tar::EntryType::Regular, d, None),
                M::Dir(n) => (n, tar::EntryType::Directory, b"", None),
                M::Link(n, t) => (n, tar::EntryType::Symlink, b"", Some(t)),
                M::Hard(n, t) => (n, tar::EntryType::Link, b"", Some(t)),
                M::Fifo(n) => (n, tar::EntryType::Fifo, b"", None),
            };
            let bytes = h.as_old_mut();
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(t) = link {
                bytes.linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn unpack(members: &[M]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let tar = tar_of(members);
        let r = unpack_tar("test.tar", &tar[..], &dest, &|_| true);
        (outer, r)
    }

    fn outside_is_untouched(outer: &tempfile::TempDir) {
        let names: Vec<_> = fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dest"], "something was written outside dest");
    }

    #[test]
    fn extracts_a_normal_tree() {
        let (outer, r) = unpack(&[
            M::Dir("./usr/"),
            M::File("./usr/src/a.h", b"int a;\n"),
            M::Link("./usr/src/scripts", "../../lib/kbuild/scripts"),
            M::Link("./usr/src/b.h", "a.h"),
            M::Hard("./usr/src/c.h", "./usr/src/a.h"),
        ]);
        let stats = r.unwrap();
        assert_eq!((stats.files, stats.symlinks, stats.bytes), (2, 2, 7));
        let dest = outer.path().join("dest");
        assert_eq!(
            fs::read_to_string(dest.join("usr/src/b.h")).unwrap(),
            "int a;\n"
        );
        assert_eq!(
            fs::read_to_string(dest.join("usr/src/c.h")).unwrap(),
            "int a;\n"
        );
        outside_is_untouched(&outer);
    }

    #[test]
    fn refuses_escapes() {
        let cases: Vec<(Vec<M>, &str)> = vec![
            (vec![M::File("../evil", b"x")], "`..`"),
            (vec![M::File("./a/../../evil", b"x")], "`..`"),
            (vec![M::File("/tmp/evil", b"x")], "absolute path"),
            (vec![M::Link("./up", "../..")], "leaves the destination"),
            (vec![M::Link("./abs", "/etc")], "absolute path"),
            (
                vec![M::Link("./here", "."), M::File("./here/evil", b"x")],
                "passes through the symlink",
            ),
            // Lexically inside, physically outside: `x` is the root, so `x/..` is its parent.
            (
                vec![M::Link("./x", "."), M::Link("./y", "x/..")],
                "leaves the destination",
            ),
            // Order attack: `y` looks fine when written; the link that makes it escape comes later.
            (
                vec![M::Link("./y", "x/.."), M::Link("./x", ".")],
                "leaves the destination",
            ),
            (
                vec![M::Dir("./x/"), M::Link("./y", "x/.."), M::File("./z", b"")],
                "ok",
            ),
            (vec![M::Hard("./h", "../../etc/passwd")], "`..`"),
            (
                vec![M::Hard("./h", "missing")],
                "not a file extracted before",
            ),
            (vec![M::Fifo("./fifo")], "device files"),
        ];
        for (members, want) in cases {
            let (outer, r) = unpack(&members);
            if want == "ok" {
                r.unwrap();
            } else {
                let err = r.unwrap_err().to_string();
                assert!(
                    err.contains(want) && err.contains("test.tar"),
                    "want {want}: {err}"
                );
            }
            outside_is_untouched(&outer);
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let tar = tar_of(&[M::File("./a", &[7u8; 4000])]);
        let dest = tempfile::tempdir().unwrap();
        let err = unpack_tar("t.tar", &tar[..1500], dest.path(), &|_| true).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn keep_filters_members() {
        let tar = tar_of(&[M::File("./usr/src/a", b"1"), M::File("./lib/b", b"2")]);
        let dest = tempfile::tempdir().unwrap();
        let stats = unpack_tar("t", &tar[..], dest.path(), &|p| p.starts_with("usr/src")).unwrap();
        assert_eq!((stats.files, stats.skipped), (1, 1));
        assert!(!dest.path().join("lib").exists());
    }
}
