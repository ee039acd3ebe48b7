//! What libbpf does to an object's `.BTF` at open, before the kernel sees it
//! (`btf_fixup_datasec`): clang leaves each DATASEC's size at 0 and its variables' offsets
//! unset, and libbpf fills them from the ELF (section size, symbol value), marks hidden
//! globals static, and sorts the entries by offset. [`super::check`] then judges the result,
//! so an object is held to exactly what the kernel will receive.

use crate::btf::{Btf, Kind};

/// The ELF facts libbpf reads.
pub trait ElfLayout {
    /// Size of the section called `name`.
    fn section_size(&self, name: &str) -> Option<u64>;
    /// Value of the global or weak data symbol `name`, and whether its visibility is hidden
    /// or internal.
    fn data_symbol(&self, name: &str) -> Option<(u64, bool)>;
}

const VAR_STATIC: u32 = 0;
const VAR_EXTERN: u32 = 2;

fn put(data: &mut [u8], at: usize, v: u32) {
    data[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// The BTF as libbpf hands it to the kernel; an error is what makes libbpf's open fail.
pub fn libbpf_fixup(data: &[u8], elf: &dyn ElfLayout) -> Result<Vec<u8>, String> {
    let btf = Btf::parse(data).map_err(|e| format!("byte {}: {}", e.offset, e.message))?;
    let mut out = data.to_vec();
    for sec in btf.types.iter().filter(|t| t.kind == Kind::Datasec) {
        let name = btf.name(sec);
        // Extern sections (.kconfig, .ksyms) are laid out by libbpf itself, already sized.
        if sec.size_or_type == 0 {
            let size = elf
                .section_size(name)
                .filter(|&s| s != 0)
                .ok_or_else(|| format!("DATASEC {name}: no ELF section of that name gives its size (libbpf: failed to determine size from ELF)"))?;
            let size = u32::try_from(size)
                .map_err(|_| format!("DATASEC {name}: section of {size} bytes"))?;
            put(&mut out, sec.offset + 8, size);
            for (i, &(var_id, _)) in sec.members.iter().enumerate() {
                let var = btf
                    .get(var_id)
                    .filter(|t| t.kind == Kind::Var)
                    .ok_or_else(|| format!("DATASEC {name}: entry #{i} is not a VAR"))?;
                let linkage_at = var.offset + 12;
                let linkage = get(&out, linkage_at);
                if linkage == VAR_STATIC || linkage == VAR_EXTERN {
                    continue;
                }
                let var_name = btf.name(var);
                let (value, hidden) = elf.data_symbol(var_name).ok_or_else(|| {
                    format!("DATASEC {name}: no ELF symbol for its variable {var_name}")
                })?;
                let value = u32::try_from(value)
                    .map_err(|_| format!("{var_name}: symbol value {value}"))?;
                put(&mut out, sec.offset + 12 + 12 * i + 4, value);
                if hidden {
                    put(&mut out, linkage_at, VAR_STATIC);
                }
            }
        }
        // Sorted by offset, as libbpf's qsort leaves them (equal offsets keep their order).
        let base = sec.offset + 12;
        let mut entries: Vec<[u8; 12]> = (0..sec.members.len())
            .map(|i| {
                out[base + 12 * i..base + 12 * i + 12]
                    .try_into()
                    .expect("12 bytes")
            })
            .collect();
        entries.sort_by_key(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
        for (i, e) in entries.iter().enumerate() {
            out[base + 12 * i..base + 12 * i + 12].copy_from_slice(e);
        }
    }
    Ok(out)
}
