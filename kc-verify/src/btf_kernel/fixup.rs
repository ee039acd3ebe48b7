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
const VAR_ALLOCATED: u32 = 1;
const VAR_EXTERN: u32 = 2;

/// Size and alignment of a `.kconfig` extern's type (libbpf's `find_kcfg_type`: integers,
/// bools, tristate enums and char arrays), or why libbpf refuses it.
fn kcfg_layout(btf: &Btf, data: &[u8], mut id: u32) -> Result<(u32, u32), String> {
    for _ in 0..32 {
        let t = btf
            .get(id)
            .ok_or_else(|| format!("type #{id} does not exist"))?;
        match t.kind {
            Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag => {
                id = t.size_or_type;
            }
            Kind::Int | Kind::Enum | Kind::Enum64
                if t.size_or_type.is_power_of_two() && t.size_or_type <= 8 =>
            {
                return Ok((t.size_or_type, t.size_or_type));
            }
            Kind::Array => {
                let nelems = get(data, t.offset + 12 + 8);
                return Ok((nelems, 1));
            }
            _ => {
                return Err(format!(
                    "type #{id} ({:?}) cannot hold a Kconfig value",
                    t.kind
                ))
            }
        }
    }
    Err(format!("type #{id}: a chain of modifiers too long"))
}

/// libbpf's `bpf_object__collect_externs` for `.kconfig`: the externs sorted by alignment
/// (largest first), size and name, each at the next offset its alignment allows; the section
/// sized to their end, each variable made an allocated global.
fn layout_kconfig(btf: &Btf, sec: &crate::btf::Type, out: &mut [u8]) -> Result<(), String> {
    let mut externs = Vec::new();
    for (i, &(var_id, _)) in sec.members.iter().enumerate() {
        let var = btf
            .get(var_id)
            .filter(|t| t.kind == Kind::Var)
            .ok_or_else(|| format!("DATASEC .kconfig: entry #{i} is not a VAR"))?;
        let (size, align) = kcfg_layout(btf, out, var.size_or_type)
            .map_err(|e| format!("extern (kcfg) '{}' type is unsupported: {e}", btf.name(var)))?;
        externs.push((i, var, size, align));
    }
    let mut order: Vec<usize> = (0..externs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&externs[a], &externs[b]);
        y.3.cmp(&x.3)
            .then(x.2.cmp(&y.2))
            .then(btf.name(x.1).cmp(btf.name(y.1)))
    });
    let mut off = 0u32;
    for k in order {
        let (i, var, size, align) = externs[k];
        let at = off.div_ceil(align.max(1)) * align.max(1);
        put(out, sec.offset + 12 + 12 * i + 4, at);
        put(out, var.offset + 12, VAR_ALLOCATED);
        off = at + size;
    }
    put(out, sec.offset + 8, off);
    Ok(())
}

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
        // Extern sections are laid out from the externs, not from the ELF.
        if name == ".kconfig" {
            layout_kconfig(&btf, sec, &mut out)?;
        } else if sec.size_or_type == 0 {
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
