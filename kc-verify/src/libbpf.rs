//! What `bpf_object__open` (libbpf 1.x) refuses in an object's ELF, checked without libbpf:
//! the object type and byte order, the symbol table and its strings, program symbols
//! (inside their section, whole instructions, not static outside `.text`), the relocations
//! of program sections (a valid symbol, on an instruction of the section, and of a kind
//! libbpf can record: a BPF-to-BPF call into `.text`, or a 64-bit load of a map, a global
//! data section or a subprogram), and `.maps` definitions made of fields libbpf knows.
//!
//! The messages follow libbpf's, so a reader can match them with what libbpf would print.

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use crate::btf::{Btf, Kind};
use crate::btf_kernel;

const ET_REL: u16 = 1;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHF_EXECINSTR: u64 = 0x4;
const STT_SECTION: u8 = 3;
const STT_FUNC: u8 = 2;
const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;
const INSN: u64 = 8;

/// One section as libbpf sees it.
pub struct Sec<'a> {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub link: u32,
    pub info: u32,
    pub entsize: u64,
    /// Bytes in the file (empty for NOBITS), and the size the header states.
    pub data: &'a [u8],
    pub size: u64,
    /// Where the section's data starts in the file, for messages.
    pub file_offset: u64,
}

/// Sections libbpf skips before looking at their name: string tables, LLVM's address
/// significance table, an empty `.text`, DWARF and the relocations of DWARF and BTF.
fn ignored(sec: &Sec) -> bool {
    const SHT_LLVM_ADDRSIG: u32 = 0x6fff_4c03;
    let rel_of = sec.name.strip_prefix(".rel").unwrap_or("");
    sec.kind == SHT_STRTAB
        || sec.kind == SHT_LLVM_ADDRSIG
        || (sec.kind == SHT_PROGBITS && sec.size == 0 && sec.name == ".text")
        || sec.name.starts_with(".debug_")
        || rel_of.starts_with(".debug_")
        || rel_of == ".BTF"
        || rel_of == ".BTF.ext"
}

/// A symbol-table entry.
#[derive(Clone, Copy)]
struct Sym {
    name: u32,
    info: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

impl Sym {
    fn kind(self) -> u8 {
        self.info & 0xf
    }
    fn bind(self) -> u8 {
        self.info >> 4
    }
}

fn le(d: &[u8], at: usize, n: usize) -> u64 {
    (0..n).fold(0, |v, i| v | (d[at + i] as u64) << (8 * i))
}

/// A refusal: the section it concerns, the file offset, and libbpf's reason.
pub type Refusal = (String, u64, String);

/// The object's refusals by libbpf's open, in the order libbpf meets them (it stops at the
/// first; we report the first of each section).
pub fn open_refusals(ident: &[u8], e_type: u16, secs: &[Sec], btf: Option<&Btf>) -> Vec<Refusal> {
    let mut out = Vec::new();
    if e_type != ET_REL {
        out.push((
            "ELF header".into(),
            16,
            format!("e_type {e_type} is not ET_REL: not a valid eBPF object file"),
        ));
    }
    if ident.get(4) != Some(&2) || ident.get(5) != Some(&1) {
        out.push((
            "ELF header".into(),
            4,
            "not a 64-bit little-endian object: endianness mismatch".into(),
        ));
    }
    // libelf hands out a typed section's data only in whole entries.
    for sec in secs {
        let entry = match sec.kind {
            SHT_SYMTAB | 4 | 11 => 24, // SYMTAB, RELA, DYNSYM
            SHT_REL | 6 => 16,         // REL, DYNAMIC
            14..=16 => 8,              // INIT_ARRAY, FINI_ARRAY, PREINIT_ARRAY
            5 | 17 | 18 => 4,          // HASH, GROUP, SYMTAB_SHNDX
            _ => continue,
        };
        if sec.size % entry != 0 {
            out.push((sec.name.clone(), sec.file_offset, format!("failed to get section data: {} bytes is not a whole number of {entry}-byte entries for its type {}", sec.size, sec.kind)));
            return out;
        }
        // libbpf reads symbols and relocations by sh_entsize: it must be the entry's size.
        if matches!(sec.kind, SHT_SYMTAB | SHT_REL) && sec.entsize != entry {
            out.push((
                sec.name.clone(),
                sec.file_offset,
                format!("entries of {} bytes, not {entry} (sh_entsize)", sec.entsize),
            ));
            return out;
        }
    }
    for sec in secs
        .iter()
        .filter(|s| s.name == ".BTF" || s.name == ".BTF.ext")
    {
        if sec.kind != SHT_PROGBITS {
            out.push((
                sec.name.clone(),
                sec.file_offset,
                format!("section type {} is not PROGBITS", sec.kind),
            ));
            return out;
        }
    }
    // libbpf takes the last section of each of these names: a second one is ambiguous at
    // best (relocations against the first then fail).
    for special in [".maps", ".BTF", ".BTF.ext", "license", "version", ".text"] {
        let same: Vec<&Sec> = secs
            .iter()
            .filter(|s| s.name == special && !ignored(s))
            .collect();
        if let [_, second, ..] = same.as_slice() {
            out.push((
                second.name.clone(),
                second.file_offset,
                format!("more than one section named {special}"),
            ));
            return out;
        }
    }
    if let Some(sec) = secs.iter().find(|s| s.name == "maps" && !ignored(s)) {
        out.push((
            sec.name.clone(),
            sec.file_offset,
            "legacy map definitions in 'maps' section are not supported by libbpf v1.0+".into(),
        ));
        return out;
    }
    let symtabs: Vec<usize> = (0..secs.len())
        .filter(|&i| secs[i].kind == SHT_SYMTAB)
        .collect();
    let symtab = match symtabs.as_slice() {
        [] => {
            out.push((
                "(sections)".into(),
                0,
                "couldn't find symbol table, stripped object file?".into(),
            ));
            return out;
        }
        [one] => &secs[*one],
        [_, second, ..] => {
            out.push((
                secs[*second].name.clone(),
                secs[*second].file_offset,
                "multiple symbol tables".into(),
            ));
            return out;
        }
    };
    let strtab = secs
        .get(symtab.link as usize)
        .filter(|s| symtab.link != 0 && s.kind == SHT_STRTAB);
    let Some(strtab) = strtab else {
        out.push((
            symtab.name.clone(),
            symtab.file_offset,
            format!("symbol strings section {} missing or invalid", symtab.link),
        ));
        return out;
    };
    let syms: Vec<Sym> = symtab
        .data
        .chunks_exact(24)
        .map(|e| Sym {
            name: le(e, 0, 4) as u32,
            info: e[4],
            shndx: le(e, 6, 2) as u16,
            value: le(e, 8, 8),
            size: le(e, 16, 8),
        })
        .collect();
    let sym_name = |s: &Sym| -> Option<String> {
        let rest = strtab.data.get(s.name as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let text = secs.iter().position(|s| s.name == ".text");
    let shnum = secs.len();

    // Programs: every function symbol of an executable section.
    for (idx, sec) in secs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.flags & SHF_EXECINSTR != 0 && s.size > 0)
    {
        for sym in syms
            .iter()
            .filter(|s| s.shndx as usize == idx && s.kind() == STT_FUNC)
        {
            let at = sec.file_offset;
            let Some(name) = sym_name(sym) else {
                out.push((
                    sec.name.clone(),
                    at,
                    format!("failed to get symbol name for offset {}", sym.value),
                ));
                break;
            };
            let refusal = if sym
                .value
                .checked_add(sym.size)
                .is_none_or(|end| end > sec.size)
            {
                Some(format!(
                    "program at offset {} crosses section boundary",
                    sym.value
                ))
            } else if sym.value % INSN != 0 || sym.size % INSN != 0 || sym.size == 0 {
                Some(format!(
                    "corrupted program '{name}', offset {}, size {}",
                    sym.value, sym.size
                ))
            } else if Some(idx) != text && sym.bind() == STB_LOCAL {
                Some(format!("program '{name}' is static and not supported"))
            } else {
                None
            };
            if let Some(r) = refusal {
                out.push((sec.name.clone(), at, r));
                break;
            }
        }
    }

    // Relocations of program sections.
    for rel in secs.iter().filter(|s| s.kind == SHT_REL) {
        let target = rel.info as usize;
        if target >= shnum {
            out.push((
                rel.name.clone(),
                rel.file_offset,
                format!("relocations for section {target}, which does not exist"),
            ));
            continue;
        }
        let Some(prog) = secs.get(target).filter(|s| s.flags & SHF_EXECINSTR != 0) else {
            continue; // libbpf skips relocations of data and BTF sections
        };
        if let Some(r) = relocation_refusal(rel, prog, &syms, secs, text, &sym_name) {
            out.push((rel.name.clone(), rel.file_offset, r));
        }
    }

    if let Some(btf) = btf {
        if let Some(r) = maps_refusal(btf) {
            out.push((
                ".maps".into(),
                secs.iter()
                    .find(|s| s.name == ".maps")
                    .map_or(0, |s| s.file_offset),
                r,
            ));
        }
    }
    out
}

fn relocation_refusal(
    rel: &Sec,
    prog: &Sec,
    syms: &[Sym],
    secs: &[Sec],
    text: Option<usize>,
    sym_name: &dyn Fn(&Sym) -> Option<String>,
) -> Option<String> {
    if !rel.data.len().is_multiple_of(16) {
        return Some("failed to get relo: entries are 16 bytes".into());
    }
    for (i, e) in rel.data.chunks_exact(16).enumerate() {
        let (offset, info) = (le(e, 0, 8), le(e, 8, 8));
        let sym_idx = (info >> 32) as usize;
        let Some(sym) = syms.get(sym_idx) else {
            return Some(format!("symbol #{sym_idx} not found for relo #{i}"));
        };
        if sym.shndx as usize >= secs.len() {
            return Some(format!(
                "invalid section index {} for symbol #{sym_idx}",
                sym.shndx
            ));
        }
        if offset % INSN != 0 || offset >= prog.size {
            return Some(format!("invalid offset {offset:#x} for relo #{i}"));
        }
        let Some(insn) = prog.data.get(offset as usize..offset as usize + 8) else {
            return Some(format!("invalid offset {offset:#x} for relo #{i}"));
        };
        let name = if sym.kind() == STT_SECTION && sym.name == 0 {
            secs.get(sym.shndx as usize).map(|s| s.name.clone())
        } else {
            sym_name(sym)
        }
        .unwrap_or_else(|| "<?".into());
        let insn_no = offset / INSN;
        let (code, src_reg) = (insn[0], insn[1] >> 4);
        let shndx = sym.shndx as usize;
        // A BPF-to-BPF call: into .text, at an instruction.
        if code == 0x85 {
            if src_reg != 1 {
                return Some(format!("incorrect bpf_call opcode at insns[{insn_no}]"));
            }
            if shndx == 0 || Some(shndx) != text {
                let in_sec = secs.get(shndx).map_or("?", |s| s.name.as_str());
                return Some(format!(
                    "bad call relo against '{name}' in section '{in_sec}'"
                ));
            }
            if sym.value % INSN != 0 {
                return Some(format!(
                    "bad call relo against '{name}' at offset {}",
                    sym.value
                ));
            }
            continue;
        }
        if code != 0x18 {
            return Some(format!(
                "invalid relo against '{name}' for insns[{insn_no}].code {code:#x}"
            ));
        }
        if shndx == 0 {
            let named = sym_name(sym).is_some_and(|n| !n.is_empty());
            if named && matches!(sym.bind(), STB_GLOBAL | 2) {
                continue; // an extern (.kconfig, .ksyms): verify reports undefined symbols itself
            }
            return Some(format!("invalid relo against '{name}' in special section 0x0; forgot to initialize global var?"));
        }
        let subprog = Some(shndx) == text
            && ((sym.bind() == STB_LOCAL && sym.kind() == STT_SECTION)
                || (sym.bind() == STB_GLOBAL && sym.kind() == STT_FUNC));
        if subprog {
            if sym.value % INSN != 0 {
                return Some(format!(
                    "bad subprog addr relo against '{name}' at offset {}",
                    sym.value
                ));
            }
            continue;
        }
        let sec = &secs[shndx];
        if sec.name == ".maps" && !ignored(sec) {
            // A map is a symbol of .maps at exactly this offset.
            let is_map = syms.iter().any(|s| {
                s.shndx as usize == shndx && s.value == sym.value && s.kind() != STT_SECTION
            });
            if !is_map {
                return Some(format!(
                    "map relo failed to find map for section '.maps', off {}",
                    sym.value
                ));
            }
            continue;
        }
        let data_sec = [".data", ".rodata", ".bss"]
            .iter()
            .any(|p| sec.name == *p || sec.name.starts_with(&format!("{p}.")));
        // libbpf makes a map of a data section only when it holds bytes.
        let holds_bytes = match sec.kind {
            SHT_PROGBITS => !sec.data.is_empty(),
            SHT_NOBITS => sec.name.starts_with(".bss") && sec.size > 0,
            _ => false,
        };
        if !data_sec || ignored(sec) || !holds_bytes {
            return Some(format!(
                "bad map relo against '{name}' in section '{}'",
                sec.name
            ));
        }
    }
    None
}

/// The attributes a BTF map definition may have (libbpf's `parse_btf_map_def`).
const MAP_FIELDS: &[&str] = &[
    "type",
    "max_entries",
    "map_flags",
    "numa_node",
    "key_size",
    "key",
    "value_size",
    "value",
    "values",
    "pinning",
    "map_extra",
];

/// Each `.maps` variable is a struct of known fields: integers as `int (*name)[N]`, `key`
/// and `value` as pointers.
fn maps_refusal(btf: &Btf) -> Option<String> {
    let sec = btf.datasec(".maps")?;
    let skip = |mut id: u32| {
        for _ in 0..32 {
            match btf.get(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        Kind::Typedef
                            | Kind::Volatile
                            | Kind::Const
                            | Kind::Restrict
                            | Kind::TypeTag
                    ) =>
                {
                    id = t.size_or_type
                }
                Some(t) => return Some(t),
                None => return None,
            }
        }
        None
    };
    for &(var_id, _) in &sec.members {
        let var = btf.get(var_id)?;
        let map = btf.name(var);
        if var.kind != Kind::Var {
            return Some(format!("map in .maps: type [{var_id}] is not a VAR"));
        }
        if var.linkage != 1 {
            return Some(format!(
                "map '{map}': unsupported map linkage (only global maps)"
            ));
        }
        let Some(def) = skip(var.size_or_type).filter(|t| t.kind == Kind::Struct) else {
            return Some(format!("map '{map}': unexpected def kind"));
        };
        for (i, &m_type) in def.refs.iter().enumerate() {
            let field = def
                .member_names
                .get(i)
                .map_or("", |&n| btf.string(n).unwrap_or(""));
            if !MAP_FIELDS.contains(&field) {
                return Some(format!("map '{map}': unknown field '{field}'"));
            }
            let Some(ptr) = skip(m_type).filter(|t| t.kind == Kind::Ptr) else {
                return Some(format!("map '{map}': attr '{field}': expected PTR"));
            };
            if !matches!(field, "key" | "value" | "values")
                && skip(ptr.size_or_type).is_none_or(|t| t.kind != Kind::Array)
            {
                return Some(format!("map '{map}': attr '{field}': expected ARRAY"));
            }
            if matches!(field, "key" | "value") && !sized(btf, ptr.size_or_type, 0) {
                return Some(format!(
                    "map '{map}': can't determine {field} size for type [{}]",
                    ptr.size_or_type
                ));
            }
        }
    }
    None
}

/// Whether type `id` has a size (libbpf's `btf__resolve_size` succeeds): not void, FWD, FUNC
/// or FUNC_PROTO, through modifiers and arrays.
fn sized(btf: &Btf, id: u32, depth: usize) -> bool {
    match btf.get(id) {
        _ if depth > 32 => false,
        None => false,
        Some(t) => match t.kind {
            Kind::Int
            | Kind::Ptr
            | Kind::Struct
            | Kind::Union
            | Kind::Enum
            | Kind::Enum64
            | Kind::Float => true,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                sized(btf, t.size_or_type, depth + 1)
            }
            Kind::Array => t
                .refs
                .first()
                .is_some_and(|&elem| sized(btf, elem, depth + 1)),
            _ => false,
        },
    }
}

/// The ELF facts libbpf's open reads to fix up `.BTF`.
pub(crate) struct ElfFacts<'a, 'd>(pub(crate) &'a ElfFile64<'d, Endianness>);

impl btf_kernel::ElfLayout for ElfFacts<'_, '_> {
    fn section_size(&self, name: &str) -> Option<u64> {
        self.0.section_by_name(name).map(|s| s.size())
    }
    fn data_symbol(&self, name: &str) -> Option<(u64, bool)> {
        // libbpf's find_elf_var_sym: a global or weak STT_OBJECT of that name.
        let raw = |s: &object::read::elf::ElfSymbol64<'_, '_, Endianness>| match s.flags() {
            object::SymbolFlags::Elf { st_info, st_other } => (st_info, st_other),
            _ => (0, 0),
        };
        self.0
            .symbols()
            .filter(|s| raw(s).0 & 0xf == 1 && matches!(raw(s).0 >> 4, 1 | 2))
            .find(|s| s.name() == Ok(name))
            .map(|s| {
                // STV_INTERNAL (1) and STV_HIDDEN (2) make libbpf mark the VAR static.
                (s.address(), matches!(raw(&s).1 & 3, 1 | 2))
            })
    }
}

pub(crate) fn btf_as_loaded_aligned(data: &[u8]) -> Result<Vec<u8>, String> {
    let elf = ElfFile64::<Endianness>::parse(data).map_err(|e| format!("malformed ELF: {e}"))?;
    let btf = elf.section_by_name(".BTF").ok_or("no .BTF section")?;
    let raw = btf.data().map_err(|e| e.to_string())?;
    btf_kernel::libbpf_fixup(raw, &ElfFacts(&elf))
}
