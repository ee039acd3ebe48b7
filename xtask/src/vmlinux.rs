//! `cargo xtask vmlinux`: regenerates an architecture's `vmlinux.h` from a kernel's BTF:
//! amd64's (`co-re/vmlinux.h`) from a BTF file such as this host's, another architecture's
//! (`co-re/<arch>/vmlinux.h`) from the BTF inside one of its locked kernel images.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::Arch;
use xshell::cmd;

use crate::compile::flags::vmlinux_header;
use crate::compile::toolchain::Toolchain;
use crate::kernels::{self, fetch::Fetcher};
use crate::{atomic, paths, process};

#[derive(Debug, Args)]
pub struct VmlinuxOptions {
    /// The architecture whose vmlinux.h to write
    #[arg(long, default_value = "amd64")]
    pub arch: Arch,
    /// A BTF file: /sys/kernel/btf/vmlinux, or a vmlinux with a .BTF section (amd64's default:
    /// this host's)
    #[arg(long, conflicts_with = "image")]
    pub btf: Option<PathBuf>,
    /// A kernel image (`vmlinuz`, an uncompressed arm64 `Image`) whose BTF to read; default
    /// for another architecture than amd64: its newest locked kernel's
    #[arg(long)]
    pub image: Option<PathBuf>,
}

/// BTF's header: magic 0xeb9f, version 1, then its own length and where types and strings are.
const BTF_MAGIC_V1: [u8; 4] = [0x9f, 0xeb, 0x01, 0x00];
const BTF_HEADER_LEN: usize = 24;

/// The kernel's BTF inside a raw kernel image (the `.BTF` section's bytes, copied as they
/// are into the image): the largest well-formed BTF blob found, header through strings.
/// A candidate must say version 1 with a 24-byte header, types first and strings right
/// after them, both non-empty, within the image, the strings starting and ending with NUL.
pub fn btf_in_kernel_image(image: &[u8]) -> Option<&[u8]> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let mut best: Option<&[u8]> = None;
    let mut from = 0;
    while let Some(pos) = image[from..]
        .windows(BTF_MAGIC_V1.len())
        .position(|w| w == BTF_MAGIC_V1)
    {
        let at = from + pos;
        from = at + 1;
        let (Some(hdr), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) = (
            u32_at(at + 4),
            u32_at(at + 8),
            u32_at(at + 12),
            u32_at(at + 16),
            u32_at(at + 20),
        ) else {
            continue;
        };
        if hdr != BTF_HEADER_LEN || type_off != 0 || str_off != type_len {
            continue;
        }
        if type_len == 0 || str_len == 0 {
            continue;
        }
        let end = at + BTF_HEADER_LEN + str_off + str_len;
        let Some(blob) = image.get(at..end) else {
            continue;
        };
        let strings = &blob[BTF_HEADER_LEN + str_off..];
        if strings.first() != Some(&0) || strings.last() != Some(&0) {
            continue;
        }
        if best.is_none_or(|b| b.len() < blob.len()) {
            best = Some(blob);
        }
    }
    best
}

/// `bpftool btf dump file BTF format c` into the architecture's vmlinux.h, through a
/// temporary file.
pub fn run(o: VmlinuxOptions) -> Result<()> {
    let bpftool = Toolchain::detect()?.bpftool;
    let scratch = tempfile::tempdir()?;
    let (btf, from) = match (&o.btf, &o.image, o.arch) {
        (Some(btf), _, _) => (btf.clone(), btf.display().to_string()),
        (None, None, Arch::Amd64) => {
            let host = PathBuf::from("/sys/kernel/btf/vmlinux");
            (host.clone(), host.display().to_string())
        }
        (None, image, arch) => {
            let image = match image {
                Some(i) => i.clone(),
                None => newest_locked_image(arch)?,
            };
            let bytes = std::fs::read(&image)
                .with_context(|| format!("reading the kernel image {}", image.display()))?;
            let Some(btf) = btf_in_kernel_image(&bytes) else {
                bail!(
                    "{} holds no BTF (a kernel built without CONFIG_DEBUG_INFO_BTF, or a compressed image: give the uncompressed one)",
                    image.display()
                );
            };
            let file = scratch.path().join("vmlinux.btf");
            std::fs::write(&file, btf)?;
            (file, format!("the BTF in {}", image.display()))
        }
    };
    let sh = process::shell();
    let header = process::output(cmd!(sh, "{bpftool} btf dump file {btf} format c"))?.stdout;
    if header.is_empty() {
        bail!("bpftool printed nothing for {from}");
    }
    let path = paths::project_root().join(vmlinux_header(o.arch));
    std::fs::create_dir_all(path.parent().expect("under co-re/"))?;
    atomic::write(&path, &header)?;
    eprintln!(
        "wrote {} ({} bytes) from {from}",
        path.display(),
        header.len()
    );
    Ok(())
}

/// The image of the architecture's newest locked kernel, fetched into the cache.
fn newest_locked_image(arch: Arch) -> Result<PathBuf> {
    let (_, lock) = kernels::load_checked_lock()?;
    let newest = lock
        .kernels(arch)
        .iter()
        .max_by_key(|k| k.series)
        .with_context(|| format!("kernels.lock pins no {arch} kernel: add [arch.{arch}] to kernels.toml and run `cargo xtask kernels lock --arch {arch}`"))?;
    eprintln!("vmlinux: {arch} types from {}", newest.release);
    Fetcher::new(paths::cache_dir()).image(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut b = BTF_MAGIC_V1.to_vec();
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    #[test]
    fn the_btf_blob_is_found_inside_an_image() {
        let real = blob(&[7; 64], b"\0int\0long\0");
        let small = blob(&[1; 8], b"\0x\0");
        let mut image = vec![0xaa; 100];
        image.extend(&small);
        image.extend([0x55; 33]);
        image.extend(&real);
        image.extend([0; 10]);
        assert_eq!(
            btf_in_kernel_image(&image),
            Some(real.as_slice()),
            "the largest"
        );
    }

    #[test]
    fn malformed_candidates_are_passed_over() {
        let good = blob(&[7; 16], b"\0a\0");
        // Strings that run past the image's end.
        let cut = &good[..good.len() - 1];
        assert_eq!(btf_in_kernel_image(cut), None);
        // A version-1 magic with a nonsense header, and strings not NUL-delimited.
        let mut bad_header = good.clone();
        bad_header[4] = 99;
        assert_eq!(btf_in_kernel_image(&bad_header), None);
        assert_eq!(btf_in_kernel_image(&blob(&[7; 16], b"abc")), None);
        assert_eq!(btf_in_kernel_image(&blob(&[], b"\0a\0")), None);
        assert_eq!(btf_in_kernel_image(&[0x9f, 0xeb, 0x01]), None);
        assert_eq!(btf_in_kernel_image(b""), None);
    }
}
