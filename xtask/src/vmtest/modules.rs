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

/// The values of `key` in a module's `.modinfo` section (NUL-separated `key=value` strings).
fn modinfo_values<'a>(modinfo: &'a [u8], key: &'a str) -> impl Iterator<Item = String> + 'a {
    modinfo.split(|&b| b == 0).filter_map(move |kv| {
        let v = kv.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(v).into_owned())
    })
}

/// A module's hard dependencies (`depends=a,b`).
pub fn modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo_values(modinfo, "depends")
        .flat_map(|deps| deps.split(',').map(normalize).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .collect()
}

/// A module's soft dependencies (`softdep=pre: a b post: c`): names or aliases it works
/// without but should have (btrfs asks for `crypto-crc32c` this way).
pub fn modinfo_softdeps(modinfo: &[u8]) -> Vec<String> {
    modinfo_values(modinfo, "softdep")
        .flat_map(|s| {
            s.split_whitespace()
                .filter(|w| !w.ends_with(':'))
                .map(normalize)
                .collect::<Vec<_>>()
        })
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

fn modinfo_of(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    use object::{Object, ObjectSection};
    let elf =
        object::File::parse(bytes).with_context(|| format!("{} is not ELF", path.display()))?;
    let modinfo = elf
        .section_by_name(".modinfo")
        .with_context(|| format!("{} has no .modinfo", path.display()))?;
    Ok(modinfo.data()?.to_vec())
}

/// Where aliases that soft dependencies name are looked for: the crypto and library modules.
const ALIAS_TREES: [&str; 3] = ["crypto", "arch", "lib"];

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

/// One kernel's modules: files by module name, the built-in ones, and (read when a soft
/// dependency first needs it) the aliases of the crypto and library modules.
struct Tree {
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
    aliases: Option<BTreeMap<String, String>>,
}

impl Tree {
    fn read(modules_dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        if modules_dir.join("kernel").is_dir() {
            walk(&modules_dir.join("kernel"), &mut files)?;
        }
        let builtin = std::fs::read_to_string(modules_dir.join(MODULES_BUILTIN))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(l.rsplit('/').next()?))
            .collect();
        Ok(Tree {
            files,
            builtin,
            aliases: None,
        })
    }

    /// The module a soft dependency names, by file name or alias.
    fn soft_target(&mut self, name: &str) -> Option<String> {
        if self.files.contains_key(name) || self.builtin.contains(name) {
            return Some(name.to_string());
        }
        let files = &self.files;
        let aliases = self.aliases.get_or_insert_with(|| {
            let mut a = BTreeMap::new();
            for (module, path) in files {
                let in_tree = ALIAS_TREES.iter().any(|t| {
                    path.components()
                        .any(|c| c.as_os_str() == std::ffi::OsStr::new(t))
                });
                let info = in_tree
                    .then(|| read_module(path).and_then(|b| modinfo_of(&b, path)).ok())
                    .flatten();
                for alias in info.iter().flat_map(|i| modinfo_values(i, "alias")) {
                    a.entry(normalize(&alias)).or_insert_with(|| module.clone());
                }
            }
            a
        });
        aliases.get(name).cloned()
    }

    /// `name` after everything it depends on, into `order`.
    fn visit(
        &mut self,
        name: &str,
        done: &mut BTreeSet<String>,
        order: &mut Vec<GuestModule>,
    ) -> Result<(), String> {
        if self.builtin.contains(name) || !done.insert(name.to_string()) {
            return Ok(());
        }
        // A module that cannot be loaded is not done: a later hard dependency on it must fail
        // too, not pass as already loaded.
        let loaded = self.visit_unmarked(name, done, order);
        if loaded.is_err() {
            done.remove(name);
        }
        loaded
    }

    fn visit_unmarked(
        &mut self,
        name: &str,
        done: &mut BTreeSet<String>,
        order: &mut Vec<GuestModule>,
    ) -> Result<(), String> {
        let path = self.files.get(name).cloned().ok_or_else(|| {
            format!("module {name} is not among this kernel's modules (or outside MODULE_TREES)")
        })?;
        let bytes = read_module(&path).map_err(|e| format!("{e:#}"))?;
        let info = modinfo_of(&bytes, &path).map_err(|e| format!("{e:#}"))?;
        for dep in modinfo_depends(&info) {
            self.visit(&dep, done, order)?;
        }
        // Soft: one this kernel lacks is left out, as modprobe does.
        for soft in modinfo_softdeps(&info) {
            if let Some(target) = self.soft_target(&soft) {
                let _ = self.visit(&target, done, order);
            }
        }
        order.push(GuestModule {
            name: name.to_string(),
            bytes,
        });
        Ok(())
    }
}

/// Resolves `wanted` against `modules_dir` (a kernel's unpacked `modules/`).
pub fn resolve(modules_dir: &Path, release: &str, wanted: &[String]) -> Result<Resolved> {
    let mut tree = Tree::read(modules_dir)?;
    let mut out = Resolved {
        load: Vec::new(),
        absent: BTreeMap::new(),
    };
    let mut done = BTreeSet::new();
    for name in wanted {
        let name = normalize(name);
        if tree.builtin.contains(&name) {
            continue;
        }
        if tree.files.is_empty() {
            out.absent.insert(
                name,
                format!("the archive carries no modules for {release}"),
            );
            continue;
        }
        // Depth first, each module after what it depends on.
        let mut order = Vec::new();
        if let Err(why) = tree.visit(&name, &mut done, &mut order) {
            out.absent.insert(name, why);
            continue;
        }
        out.load.extend(order);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_are_read_and_normalized() {
        let info = b"license=GPL\0depends=md-mod,libcrc32c\0intree=Y\0name=raid1\0";
        assert_eq!(modinfo_depends(info), ["md_mod", "libcrc32c"]);
        assert!(modinfo_depends(b"depends=\0name=md_mod\0").is_empty());
        let btrfs =
            b"softdep=pre: crypto-crc32c\0softdep=pre: blake2b-256 post: xxhash64\0depends=xor\0";
        assert_eq!(
            modinfo_softdeps(btrfs),
            ["crypto_crc32c", "blake2b_256", "xxhash64"]
        );
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
