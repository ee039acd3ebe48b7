//! The kernel modules a guest loads before its workload (MD, the file systems counters.toml
//! names): found in the kernel's unpacked `modules/` tree, ordered dependencies first (from
//! each module's `.modinfo`), decompressed (Debian compresses them with xz since 6.12).
//! Built-in modules need nothing; a module the kernel's packages lack is reported with why,
//! and the counters that need it are not judged on that kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kernels::fetch::MODULES_BUILTIN;

/// A module as the guest loads it.
pub struct GuestModule {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a kernel offers for the modules a run wants.
pub struct Resolved {
    /// Dependencies first.
    pub load: Vec<GuestModule>,
    /// Wanted modules this kernel cannot have: name → why.
    pub absent: BTreeMap<String, String>,
}

/// Module names compare with `-` and `_` alike (`md-mod.ko` is module `md_mod`).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file name: `raid1.ko.xz` → `raid1`.
fn module_name(file: &str) -> Option<String> {
    [".ko", ".ko.xz", ".ko.zst"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .map(normalize)
}

/// The `depends=` of a module's `.modinfo` section (NUL-separated `key=value` strings).
pub fn modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|deps| deps.split(|&b| b == b','))
        .filter(|d| !d.is_empty())
        .map(|d| normalize(&String::from_utf8_lossy(d)))
        .collect()
}

/// A module file's ELF bytes: decompressed when its name says so, bounded (the largest
/// Debian module, btrfs, is under 4 MiB).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    const MAX: u64 = 64 << 20;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("decompressing {}", path.display()))?;
    if bytes.len() as u64 > MAX {
        bail!("{} is over {MAX} bytes unpacked", path.display());
    }
    Ok(bytes)
}

fn depends_of(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let elf =
        object::File::parse(bytes).with_context(|| format!("{} is not ELF", path.display()))?;
    let modinfo = elf
        .section_by_name(".modinfo")
        .with_context(|| format!("{} has no .modinfo", path.display()))?;
    Ok(modinfo_depends(modinfo.data()?))
}

fn walk(dir: &Path, found: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, found)?;
        } else if let Some(name) = module_name(&entry.file_name().to_string_lossy()) {
            found.insert(name, path);
        }
    }
    Ok(())
}

/// Resolves `wanted` against `modules_dir` (a kernel's unpacked `modules/`).
pub fn resolve(modules_dir: &Path, release: &str, wanted: &[String]) -> Result<Resolved> {
    let mut files = BTreeMap::new();
    if modules_dir.join("kernel").is_dir() {
        walk(&modules_dir.join("kernel"), &mut files)?;
    }
    let builtin: BTreeSet<String> = std::fs::read_to_string(modules_dir.join(MODULES_BUILTIN))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(l.rsplit('/').next()?))
        .collect();
    let mut out = Resolved {
        load: Vec::new(),
        absent: BTreeMap::new(),
    };
    let mut done = BTreeSet::new();
    for name in wanted {
        let name = normalize(name);
        if builtin.contains(&name) {
            continue;
        }
        if files.is_empty() {
            out.absent.insert(
                name,
                format!("the archive carries no modules for {release}"),
            );
            continue;
        }
        // Depth first, each module after what it depends on.
        let mut order = Vec::new();
        if let Err(why) = visit(&name, &files, &builtin, &mut done, &mut order) {
            out.absent.insert(name, why);
            continue;
        }
        out.load.extend(order);
    }
    Ok(out)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<GuestModule>,
) -> Result<(), String> {
    if builtin.contains(name) || !done.insert(name.to_string()) {
        return Ok(());
    }
    let path = files.get(name).ok_or_else(|| {
        format!("module {name} is not among this kernel's modules (or outside MODULE_TREES)")
    })?;
    let bytes = read_module(path).map_err(|e| format!("{e:#}"))?;
    for dep in depends_of(&bytes, path).map_err(|e| format!("{e:#}"))? {
        visit(&dep, files, builtin, done, order)?;
    }
    order.push(GuestModule {
        name: name.to_string(),
        bytes,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_are_read_and_normalized() {
        let info = b"license=GPL\0depends=md-mod,libcrc32c\0intree=Y\0name=raid1\0";
        assert_eq!(modinfo_depends(info), ["md_mod", "libcrc32c"]);
        assert!(modinfo_depends(b"depends=\0name=md_mod\0").is_empty());
    }

    #[test]
    fn module_names_come_from_file_names() {
        assert_eq!(module_name("md-mod.ko.xz").as_deref(), Some("md_mod"));
        assert_eq!(module_name("raid1.ko").as_deref(), Some("raid1"));
        assert_eq!(module_name("modules.builtin"), None);
    }

    #[test]
    fn builtin_and_packageless_kernels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MODULES_BUILTIN), "kernel/fs/ext4/ext4.ko\n").unwrap();
        let r = resolve(dir.path(), "7.1.0-cloud", &["ext4".into(), "xfs".into()]).unwrap();
        assert!(r.load.is_empty());
        assert_eq!(
            r.absent.get("xfs").map(String::as_str),
            Some("the archive carries no modules for 7.1.0-cloud")
        );
        assert!(!r.absent.contains_key("ext4"), "built in");
    }
}
