//! Checks of one eBPF object file: ELF layout, license, program sections, maps, BTF,
//! BTF.ext, relocations, and what its kind (legacy or CO-RE) demands.

use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex};
use serde::Serialize;

use crate::btf::{self, Btf, Kind};
use crate::btf_kernel;
use crate::libbpf::{self, ElfFacts};

pub const EM_BPF: u16 = 247;
const SHF_EXECINSTR: u64 = 0x4;

/// Program section prefixes libbpf knows (libbpf.c `section_defs`), and the exact names.
const PROGRAM_PREFIXES: &[&str] = &[
    "kprobe/",
    "kretprobe/",
    "uprobe",
    "uretprobe",
    "ksyscall/",
    "kretsyscall/",
    "usdt",
    "tracepoint/",
    "tp/",
    "raw_tracepoint/",
    "raw_tp/",
    "raw_tracepoint.w/",
    "raw_tp.w/",
    "tp_btf/",
    "fentry/",
    "fexit/",
    "fmod_ret/",
    "fentry.s/",
    "fexit.s/",
    "fmod_ret.s/",
    "lsm/",
    "lsm.s/",
    "lsm_cgroup/",
    "iter/",
    "iter.s/",
    "perf_event",
    "xdp",
    "tc",
    "classifier",
    "action",
    "socket",
    "sk_skb",
    "sk_msg",
    "sk_lookup",
    "sk_reuseport",
    "flow_dissector",
    "cgroup_skb/",
    "cgroup/",
    "sockops",
    "lwt_",
    "struct_ops",
    "syscall",
    "kprobe.multi/",
    "kretprobe.multi/",
    "netfilter",
];

/// Licenses the kernel treats as GPL-compatible (include/linux/license.h).
const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// Helpers that read kernel memory: bpf_probe_read, _str, _kernel, _kernel_str.
const KERNEL_READ_HELPERS: &[i32] = &[4, 45, 113, 115];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub section: String,
    /// Byte offset in the file.
    pub offset: u64,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "section {}, byte {}: {}",
            self.section, self.offset, self.message
        )
    }
}

/// What the file name says the object is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ObjectKind {
    /// `{p|r}kc_<collector>.<bucket>.o`
    Legacy {
        mode: char,
        collector: String,
        major: u32,
        minor: u32,
    },
    /// `<collector>.bpf.o`
    CoRe {
        collector: String,
    },
    Other,
}

impl ObjectKind {
    pub fn from_file_name(name: &str) -> Self {
        if let Some(collector) = name.strip_suffix(".bpf.o") {
            return ObjectKind::CoRe {
                collector: collector.to_string(),
            };
        }
        let parse = || -> Option<ObjectKind> {
            let stem = name.strip_suffix(".o")?;
            let mode = stem.chars().next().filter(|c| *c == 'p' || *c == 'r')?;
            let rest = stem[1..].strip_prefix("kc_")?;
            let (collector, bucket) = rest.split_once('.')?;
            let (major, minor) = bucket.split_once('.')?;
            Some(ObjectKind::Legacy {
                mode,
                collector: collector.to_string(),
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        };
        parse().unwrap_or(ObjectKind::Other)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub programs: Vec<String>,
    pub maps: Vec<String>,
    pub license: String,
    pub version_code: Option<u32>,
    pub btf_types: usize,
    pub func_info: usize,
    pub line_info: usize,
    pub core_relos: usize,
    /// Each function (programs and subprograms) with its first source line.
    pub functions: Vec<crate::btf::FuncSource>,
    /// Each counter of the collector's counter struct, with its source tags.
    pub counters: Vec<crate::sources::CounterSource>,
    /// Each map's BTF definition.
    pub map_defs: Vec<crate::maps::MapDef>,
    pub problems: Vec<Problem>,
}

impl Report {
    fn problem(&mut self, section: &str, offset: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            section: section.to_string(),
            offset,
            message: message.into(),
        });
    }
}

/// Verifies one object. Never panics on malformed input: every defect is a [`Problem`].
pub fn verify(file_name: &str, data: &[u8]) -> Report {
    with_aligned(data, |d| verify_aligned(file_name, d))
}

/// Runs `f` on `data`, copied to an 8-byte-aligned buffer if it is not: the `object` crate
/// reads ELF structures in place and needs that alignment.
/// An object's `.BTF` as the kernel receives it (after libbpf's open-time fix-ups).
pub fn btf_as_loaded(data: &[u8]) -> Result<Vec<u8>, String> {
    with_aligned(data, libbpf::btf_as_loaded_aligned)
}

fn with_aligned<R>(data: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if (data.as_ptr() as usize).is_multiple_of(8) {
        return f(data);
    }
    let mut words = vec![0u64; data.len().div_ceil(8)];
    // SAFETY: `words` owns at least `data.len()` initialized bytes, u8 has no alignment.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, data.len()) };
    bytes.copy_from_slice(data);
    f(bytes)
}

fn verify_aligned(file_name: &str, data: &[u8]) -> Report {
    let mut r = Report::default();
    let kind = ObjectKind::from_file_name(file_name);
    if data.is_empty() {
        r.problem("ELF header", 0, "the file is empty");
        return r;
    }
    if !data.starts_with(b"\x7fELF") {
        r.problem("ELF header", 0, "not an ELF file (no \\x7fELF magic)");
        return r;
    }
    if data.len() < 64 {
        r.problem(
            "ELF header",
            data.len() as u64,
            format!("the ELF header is cut: {} of 64 bytes", data.len()),
        );
        return r;
    }
    if data[4] != 2 {
        r.problem(
            "ELF header",
            4,
            format!("ELF class {} is not 64-bit", data[4]),
        );
        return r;
    }
    if data[5] != 1 {
        r.problem("ELF header", 5, "not little endian");
        return r;
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    if machine != EM_BPF {
        let what = match machine {
            62 => "x86-64".to_string(),
            183 => "aarch64".to_string(),
            m => format!("machine {m}"),
        };
        r.problem(
            "ELF header",
            18,
            format!("an {what} object, not BPF (e_machine {EM_BPF})"),
        );
        return r;
    }
    let elf = match ElfFile64::<Endianness>::parse(data) {
        Ok(f) => f,
        Err(e) => {
            r.problem("ELF header", 0, format!("malformed ELF: {e}"));
            return r;
        }
    };
    let endian = elf.endian();
    let headers = elf.elf_header();
    let shoff = headers.e_shoff(endian);

    // Section data first: every section must lie inside the file.
    let mut by_name: Vec<(String, SectionIndex, u64, &[u8], u64)> = Vec::new();
    for (i, section) in elf.sections().enumerate() {
        let header_at = shoff.saturating_add((i as u64).saturating_mul(64));
        let name = match section.name() {
            Ok(n) => n.to_string(),
            Err(e) => {
                r.problem(
                    &format!("#{i}"),
                    header_at,
                    format!("section name unreadable: {e}"),
                );
                continue;
            }
        };
        let flags = section.elf_section_header().sh_flags(endian);
        let file_off = section.file_range().map(|(o, _)| o).unwrap_or(0);
        match section.data() {
            Ok(d) => by_name.push((name, section.index(), file_off, d, flags)),
            Err(_) => r.problem(
                &name,
                header_at,
                format!(
                    "its data [{file_off}, +{}) lies past the file's {} bytes",
                    section.size(),
                    data.len()
                ),
            ),
        }
    }
    if !r.problems.is_empty() {
        return r;
    }
    let find = |n: &str| by_name.iter().find(|(name, ..)| name == n);

    // License.
    match find("license") {
        None => r.problem(
            "license",
            0,
            "no license section: the kernel refuses GPL-only helpers",
        ),
        Some((_, _, off, d, _)) => match d.iter().position(|&b| b == 0) {
            None => r.problem("license", *off, "the license is not NUL-terminated"),
            Some(end) => r.license = String::from_utf8_lossy(&d[..end]).into_owned(),
        },
    }

    // Programs, and the helpers they call.
    let mut helpers = Vec::new();
    let mut tracing = false;
    for (name, _, off, d, flags) in &by_name {
        if flags & SHF_EXECINSTR == 0 || d.is_empty() {
            continue;
        }
        if d.len() % 8 != 0 {
            r.problem(
                name,
                *off,
                format!(
                    "{} bytes is not a whole number of 8-byte instructions",
                    d.len()
                ),
            );
            continue;
        }
        for insn in d.chunks_exact(8) {
            if insn[0] == 0x85 && insn[1] >> 4 == 0 {
                helpers.push(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            }
        }
        if name == ".text" {
            continue; // subprograms
        }
        if !PROGRAM_PREFIXES.iter().any(|p| name.starts_with(p)) {
            r.problem(
                name,
                *off,
                format!("executable section {name} is not a program type libbpf knows"),
            );
        }
        tracing |= [
            "kprobe",
            "kretprobe",
            "tracepoint",
            "tp/",
            "raw_t",
            "tp_btf",
            "fentry",
            "fexit",
            "uprobe",
            "ksyscall",
        ]
        .iter()
        .any(|p| name.starts_with(p));
        r.programs.push(name.clone());
    }
    if tracing && !r.license.is_empty() && !GPL_COMPATIBLE.contains(&r.license.as_str()) {
        r.problem(
            "license",
            find("license").map_or(0, |s| s.2),
            format!(
                "license {:?} is not GPL-compatible, and tracing programs call GPL-only helpers",
                r.license
            ),
        );
    }
    // Program names and their sections agree on the attach family; and kc-loader can hold
    // them all (it refuses an object over its limits rather than drop programs).
    let (mut programs, mut events) = (0, std::collections::BTreeSet::new());
    for sym in elf
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text)
    {
        let Some(section) = sym
            .section_index()
            .and_then(|i| elf.section_by_index(i).ok())
            .and_then(|s| s.name().ok().map(str::to_string))
        else {
            continue;
        };
        if section == ".text" {
            continue;
        }
        programs += 1;
        events.extend(crate::families::event_of(sym.name().unwrap_or("")));
        if let Some(problem) = crate::families::name_problem(sym.name().unwrap_or(""), &section) {
            let at = find(&section).map_or(0, |s| s.2);
            r.problem(&section, at, problem);
        }
    }
    for problem in crate::families::over_loader_limits(programs, events.len()) {
        r.problem("(programs)", 0, problem);
    }

    // BTF and BTF.ext.
    let btf = match find(".BTF") {
        None => None,
        Some((_, _, off, d, _)) => match Btf::parse(d) {
            Ok(b) => Some(b),
            Err(e) => {
                r.problem(".BTF", off + e.offset as u64, e.message);
                None
            }
        },
    };
    // Judged as the kernel will receive it: after libbpf's open-time fix-ups.
    let mut loaded = None;
    if let (Some(_), Some((_, _, off, d, _))) = (&btf, find(".BTF")) {
        match btf_kernel::libbpf_fixup(d, &ElfFacts(&elf)) {
            Err(e) => r.problem(".BTF", *off, format!("libbpf cannot open it: {e}")),
            Ok(fixed) => {
                if let Err(f) = btf_kernel::check(&fixed) {
                    r.problem(".BTF", *off, format!("the kernel would refuse it: {f}"));
                }
                loaded = Some(fixed);
            }
        }
    }
    if let Some(b) = &btf {
        r.btf_types = b.types.len();
        if let Some((_, _, off, d, _)) = find(".BTF.ext") {
            match btf::parse_ext(d, b) {
                Ok(ext) => {
                    r.func_info = ext.func_info;
                    r.line_info = ext.line_info;
                    r.core_relos = ext.core_relos;
                    r.functions = ext.functions;
                }
                Err(e) => r.problem(".BTF.ext", off + e.offset as u64, e.message),
            }
        }
    }

    // What libbpf's open refuses. Indexed by section index: the null section 0 included.
    let null = libbpf::Sec {
        name: String::new(),
        kind: 0,
        flags: 0,
        link: 0,
        info: 0,
        entsize: 0,
        data: &[],
        size: 0,
        file_offset: 0,
    };
    let secs: Vec<libbpf::Sec> = std::iter::once(null)
        .chain(elf.sections().filter(|s| s.index().0 != 0).map(|s| {
            let h = s.elf_section_header();
            libbpf::Sec {
                name: s.name().unwrap_or("?").to_string(),
                kind: h.sh_type(endian),
                flags: h.sh_flags(endian),
                link: h.sh_link(endian),
                info: h.sh_info(endian),
                entsize: h.sh_entsize(endian),
                data: s.data().unwrap_or(&[]),
                size: s.size(),
                file_offset: s.file_range().map_or(0, |(o, _)| o),
            }
        }))
        .collect();
    let e_type = headers.e_type(endian);
    // Map definitions are read from the BTF libbpf fixed up (a hidden map symbol makes its
    // VAR static there, which libbpf then refuses).
    let loaded_btf = loaded.as_deref().and_then(|d| Btf::parse(d).ok());
    if let Some(b) = loaded_btf.as_ref().or(btf.as_ref()) {
        r.map_defs = crate::maps::map_defs(b);
    }
    for (section, offset, message) in
        libbpf::open_refusals(&data[..16], e_type, &secs, loaded_btf.as_ref())
    {
        r.problem(
            &section,
            offset,
            format!("libbpf cannot open it: {message}"),
        );
    }

    // Maps: every symbol of `.maps` must be a VAR of BTF's `.maps` DATASEC.
    if let Some((_, maps_index, maps_off, _, _)) = find(".maps") {
        let names: Vec<String> = elf
            .symbols()
            .filter(|s| s.section_index() == Some(*maps_index))
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect();
        match btf
            .as_ref()
            .and_then(|b| b.datasec(".maps").map(|d| (b, d)))
        {
            None => r.problem(
                ".maps",
                *maps_off,
                "maps are not described by BTF (no .maps DATASEC)",
            ),
            Some((b, sec)) => {
                let described: Vec<&str> = sec
                    .members
                    .iter()
                    .filter_map(|(id, _)| b.get(*id))
                    .filter(|t| t.kind == Kind::Var)
                    .map(|t| b.name(t))
                    .collect();
                for n in &names {
                    if !described.contains(&n.as_str()) {
                        r.problem(
                            ".maps",
                            *maps_off,
                            format!("map {n} has no BTF description"),
                        );
                    }
                }
            }
        }
        r.maps = names;
    }

    // Every counter names the events that feed it, and this object has programs for them;
    // an object without programs must say, counter by counter, why it observes nothing.
    let collector = r
        .maps
        .iter()
        .find_map(|m| m.strip_suffix("_counters"))
        .map(str::to_string);
    let mut says_why = false;
    if let (Some(b), Some(collector)) = (&btf, collector.as_deref()) {
        let at = find(".BTF").map_or(0, |s| s.2);
        match crate::sources::counters(b, collector) {
            Err(problem) => r.problem(".BTF", at, problem),
            Ok(set) => {
                let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
                for problem in crate::sources::problems(&set, collector, &events) {
                    r.problem(".BTF", at, problem);
                }
                says_why = crate::sources::observes_nothing(&set);
                r.counters = set.counters;
            }
        }
    }
    if r.programs.is_empty() && !says_why {
        r.problem("(programs)", 0, "no program section");
    }

    // Relocations: every target must be a symbol this object defines, or an extern its BTF
    // declares in `.kconfig` or `.ksyms` (libbpf resolves those at load).
    let externs: Vec<&str> = btf
        .as_ref()
        .map(|b| {
            [".kconfig", ".ksyms"]
                .iter()
                .filter_map(|s| b.datasec(s))
                .flat_map(|sec| sec.members.iter())
                .filter_map(|&(id, _)| b.get(id).map(|t| b.name(t)))
                .collect()
        })
        .unwrap_or_default();
    for section in elf.sections() {
        let name = section.name().unwrap_or("?").to_string();
        for (offset, rel) in section.relocations() {
            if let RelocationTarget::Symbol(idx) = rel.target() {
                match elf.symbol_by_index(idx) {
                    Ok(sym)
                        if sym.is_undefined()
                            && !sym.name().unwrap_or("").is_empty()
                            && !externs.contains(&sym.name().unwrap_or("")) =>
                    {
                        let at = section
                            .file_range()
                            .map_or(0, |(o, _)| o)
                            .saturating_add(offset);
                        r.problem(
                            &name,
                            at,
                            format!(
                                "relocation against the undefined symbol {}",
                                sym.name().unwrap_or("?")
                            ),
                        );
                    }
                    Ok(_) => {}
                    Err(e) => r.problem(
                        &name,
                        section
                            .file_range()
                            .map_or(0, |(o, _)| o)
                            .saturating_add(offset),
                        format!("relocation symbol #{}: {e}", idx.0),
                    ),
                }
            }
        }
    }

    // What the kind demands.
    match &kind {
        ObjectKind::Legacy { major, minor, .. } => match find("version") {
            None => r.problem(
                "version",
                0,
                "a legacy object has no version section (LINUX_VERSION_CODE)",
            ),
            Some((_, _, off, d, _)) if d.len() != 4 => r.problem(
                "version",
                *off,
                format!("version section of {} bytes, not 4", d.len()),
            ),
            Some((_, _, off, d, _)) => {
                let code = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                r.version_code = Some(code);
                if (code >> 16, (code >> 8) & 0xff) != (*major, *minor) {
                    r.problem("version", *off, format!("LINUX_VERSION_CODE {code:#08x} is kernel {}.{}, the file name says bucket {major}.{minor}", code >> 16, (code >> 8) & 0xff));
                }
            }
        },
        ObjectKind::CoRe { .. } => {
            if btf.is_none() && find(".BTF").is_none() {
                r.problem(".BTF", 0, "a CO-RE object has no .BTF section");
            }
            if find(".BTF.ext").is_none() {
                r.problem(".BTF.ext", 0, "a CO-RE object has no .BTF.ext section");
            } else if r.core_relos == 0 && helpers.iter().any(|h| KERNEL_READ_HELPERS.contains(h)) {
                let off = find(".BTF.ext").map_or(0, |s| s.2);
                r.problem(".BTF.ext", off, "reads kernel memory (bpf_probe_read*) with no CO-RE relocation: it would read fixed offsets");
            }
        }
        ObjectKind::Other => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_names() {
        assert_eq!(
            ObjectKind::from_file_name("pkc_vfs.6.12.o"),
            ObjectKind::Legacy {
                mode: 'p',
                collector: "vfs".into(),
                major: 6,
                minor: 12
            }
        );
        assert_eq!(
            ObjectKind::from_file_name("vfs.bpf.o"),
            ObjectKind::CoRe {
                collector: "vfs".into()
            }
        );
        assert_eq!(
            ObjectKind::from_file_name("xkc_vfs.6.1.o"),
            ObjectKind::Other
        );
        assert_eq!(
            ObjectKind::from_file_name("pkc_vfs.six.o"),
            ObjectKind::Other
        );
    }

    #[test]
    fn non_objects() {
        assert!(verify("a.o", b"").problems[0].message.contains("empty"));
        assert!(verify("a.o", b"hello").problems[0]
            .message
            .contains("not an ELF"));
        let mut x86 = vec![0u8; 64];
        x86[..4].copy_from_slice(b"\x7fELF");
        x86[4] = 2;
        x86[5] = 1;
        x86[18] = 62;
        let p = &verify("a.o", &x86).problems[0];
        assert!(p.message.contains("x86-64") && p.offset == 18, "{p}");
        let mut short = x86.clone();
        short.truncate(30);
        assert!(verify("a.o", &short).problems[0].message.contains("cut"));
    }
}
