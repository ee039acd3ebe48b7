//! A reader of BTF (`.BTF`) and BTF.ext (`.BTF.ext`) as the kernel defines them
//! (Documentation/bpf/btf.rst). It checks every bound and every reference; malformed input
//! is an error with the byte offset inside the section, never a panic.

use serde::Serialize;
use thiserror::Error;

pub const BTF_MAGIC: u16 = 0xeb9f;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("byte {offset}: {message}")]
pub struct BtfError {
    /// Offset inside the section.
    pub offset: usize,
    pub message: String,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError {
        offset,
        message: message.into(),
    })
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, BtfError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_le_bytes([s[0], s[1]])),
        None => err(
            off,
            format!("2 bytes needed, the section ends at {}", b.len()),
        ),
    }
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    match b.get(off..off.saturating_add(4)) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => err(
            off,
            format!("4 bytes needed, the section ends at {}", b.len()),
        ),
    }
}

/// BTF kinds (include/uapi/linux/btf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Int = 1,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_u32(k: u32) -> Option<Self> {
        use Kind::*;
        Some(match k {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes that follow the 12-byte common header: fixed, and per vlen item.
    fn trailing(self) -> (usize, usize) {
        use Kind::*;
        match self {
            Int => (4, 0),
            Array => (12, 0),
            Struct | Union => (0, 12),
            Enum => (0, 8),
            FuncProto => (0, 8),
            Var => (4, 0),
            Datasec => (0, 12),
            DeclTag => (4, 0),
            Enum64 => (0, 12),
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => (0, 0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub kind: Kind,
    pub name_off: u32,
    pub vlen: u16,
    /// `size` or `type` of the common header.
    pub size_or_type: u32,
    /// Offset of the record inside the type section.
    pub offset: usize,
    /// Type ids this record refers to (members, params, array element and index, ...).
    pub refs: Vec<u32>,
    /// For DATASEC: (var type id) of each entry.
    pub members: Vec<(u32, u32)>,
    /// For STRUCT and UNION: each member's name offset (their types are in `refs`).
    pub member_names: Vec<u32>,
    /// For VAR: its linkage (0 static, 1 global, 2 extern).
    pub linkage: u32,
    /// For DECL_TAG: the member (or parameter) it tags, -1 for the type itself.
    pub component_idx: i32,
    /// For ARRAY: its number of elements.
    pub nelems: u32,
}

#[derive(Debug, Clone)]
pub struct Btf<'a> {
    pub flags: u8,
    pub types: Vec<Type>,
    strings: &'a [u8],
}

impl<'a> Btf<'a> {
    /// Parses and checks a `.BTF` section.
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = u16_at(data, 0)?;
        if magic != BTF_MAGIC {
            return err(
                0,
                format!("bad BTF magic {magic:#06x} (expected {BTF_MAGIC:#06x}, little endian)"),
            );
        }
        if data.len() < 24 {
            return err(
                data.len(),
                format!("the BTF header is cut: {} of 24 bytes", data.len()),
            );
        }
        let version = data[2];
        if version != 1 {
            return err(2, format!("BTF version {version}, only 1 exists"));
        }
        let flags = data[3];
        let hdr_len = u32_at(data, 4)? as usize;
        if hdr_len < 24 {
            return err(
                4,
                format!("header length {hdr_len} is shorter than the 24-byte BTF header"),
            );
        }
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let body = data.get(hdr_len..).ok_or(BtfError {
            offset: 4,
            message: format!(
                "header length {hdr_len} is past the section's {} bytes",
                data.len()
            ),
        })?;
        let range =
            |off: usize, len: usize, what: &str, field: usize| -> Result<&'a [u8], BtfError> {
                match off.checked_add(len).filter(|&end| end <= body.len()) {
                    Some(end) => Ok(&data[hdr_len + off..hdr_len + end]),
                    None => err(
                        field,
                        format!(
                            "{what} [{off}, {off}+{len}) lies past the {} bytes after the header",
                            body.len()
                        ),
                    ),
                }
            };
        let type_data = range(type_off, type_len, "type section", 8)?;
        let strings = range(str_off, str_len, "string section", 16)?;
        if str_len > 0 && strings[0] != 0 {
            return err(
                hdr_len + str_off,
                "the string section does not start with the empty string",
            );
        }
        if str_len > 0 && strings[str_len - 1] != 0 {
            return err(
                hdr_len + str_off + str_len - 1,
                "the string section does not end with NUL",
            );
        }
        let base = hdr_len + type_off;
        let mut types = Vec::new();
        let mut off = 0;
        while off < type_data.len() {
            let at = base + off;
            let rec = |o: usize| {
                u32_at(type_data, off + o).map_err(|e| BtfError {
                    offset: base + e.offset,
                    message: format!("type record #{} cut: {}", types.len() + 1, e.message),
                })
            };
            let name_off = rec(0)?;
            let info = rec(4)?;
            let size_or_type = rec(8)?;
            let kind_raw = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as u16;
            let Some(kind) = Kind::from_u32(kind_raw) else {
                return err(
                    at + 4,
                    format!("type #{} has unknown kind {kind_raw}", types.len() + 1),
                );
            };
            let (fixed, per_item) = kind.trailing();
            let len = 12 + fixed + per_item * vlen as usize;
            if off + len > type_data.len() {
                return err(at, format!("type #{} ({kind:?}, vlen {vlen}) needs {len} bytes, {} remain in the type section", types.len() + 1, type_data.len() - off));
            }
            let mut refs = Vec::new();
            let mut members = Vec::new();
            let mut member_names = Vec::new();
            let item = |i: usize, o: usize| {
                u32_at(type_data, off + 12 + fixed + i * per_item + o)
                    .expect("bounds checked above")
            };
            let mut names = vec![(name_off, at)];
            match kind {
                Kind::Ptr
                | Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::Func
                | Kind::Var
                | Kind::DeclTag
                | Kind::TypeTag => refs.push(size_or_type),
                Kind::Array => {
                    refs.push(u32_at(type_data, off + 12).expect("checked"));
                    refs.push(u32_at(type_data, off + 16).expect("checked"));
                }
                Kind::FuncProto => refs.push(size_or_type),
                _ => {}
            }
            for i in 0..vlen as usize {
                match kind {
                    Kind::Struct | Kind::Union => {
                        names.push((item(i, 0), at + 12 + i * 12));
                        member_names.push(item(i, 0));
                        refs.push(item(i, 4));
                    }
                    Kind::Enum | Kind::Enum64 => names.push((item(i, 0), at + 12 + i * per_item)),
                    Kind::FuncProto => {
                        names.push((item(i, 0), at + 12 + i * 8));
                        refs.push(item(i, 4));
                    }
                    Kind::Datasec => {
                        refs.push(item(i, 0));
                        members.push((item(i, 0), item(i, 4)));
                    }
                    _ => {}
                }
            }
            for (n, where_) in names {
                if n as usize >= strings.len().max(1) && !(n == 0 && strings.is_empty()) {
                    return err(where_, format!("type #{} ({kind:?}): name offset {n} is past the {}-byte string section", types.len() + 1, strings.len()));
                }
            }
            types.push(Type {
                kind,
                name_off,
                vlen,
                size_or_type,
                offset: at,
                refs,
                members,
                member_names,
                linkage: if kind == Kind::Var {
                    u32_at(type_data, off + 12).expect("bounds checked above")
                } else {
                    0
                },
                component_idx: if kind == Kind::DeclTag {
                    u32_at(type_data, off + 12).expect("bounds checked above") as i32
                } else {
                    -1
                },
                nelems: if kind == Kind::Array {
                    u32_at(type_data, off + 20).expect("bounds checked above")
                } else {
                    0
                },
            });
            off += len;
        }
        let count = types.len() as u32;
        for (i, t) in types.iter().enumerate() {
            if let Some(bad) = t.refs.iter().find(|&&r| r > count) {
                return err(
                    t.offset,
                    format!(
                        "type #{} ({:?}) refers to type {bad}, but only {count} types exist",
                        i + 1,
                        t.kind
                    ),
                );
            }
        }
        Ok(Btf {
            flags,
            types,
            strings,
        })
    }

    /// The string at `off` of the string section.
    pub fn string(&self, off: u32) -> Option<&'a str> {
        let s = self.strings.get(off as usize..)?;
        let end = s.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&s[..end]).ok()
    }

    pub fn name(&self, t: &Type) -> &'a str {
        self.string(t.name_off).unwrap_or("")
    }

    /// Type by id (1-based; 0 is void).
    pub fn get(&self, id: u32) -> Option<&Type> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// Type `id` with its typedefs and qualifiers looked through (at most 32 deep).
    pub fn resolve(&self, mut id: u32) -> Option<(u32, &Type)> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                    id = t.size_or_type
                }
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// The size in bytes of type `id`, where it has one (not void, FUNC, FWD).
    pub fn size_of(&self, id: u32) -> Option<u32> {
        self.size_at(id, 0)
    }

    fn size_at(&self, id: u32, depth: usize) -> Option<u32> {
        if depth > 32 {
            return None;
        }
        let (_, t) = self.resolve(id)?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            Kind::Array => self
                .size_at(*t.refs.first()?, depth + 1)?
                .checked_mul(t.nelems),
            _ => None,
        }
    }

    /// A type's name as C spells it where it has one (`struct kc_ctrl`, `__u32`), else its kind.
    pub fn type_name(&self, id: u32) -> String {
        let Some(t) = self.get(id) else {
            return "void".into();
        };
        let name = self.name(t);
        match t.kind {
            Kind::Struct if !name.is_empty() => format!("struct {name}"),
            Kind::Union if !name.is_empty() => format!("union {name}"),
            Kind::Enum | Kind::Enum64 if !name.is_empty() => format!("enum {name}"),
            Kind::Array => format!(
                "{}[{}]",
                self.type_name(t.refs.first().copied().unwrap_or(0)),
                t.nelems
            ),
            _ if !name.is_empty() => name.to_string(),
            k => format!("{k:?}").to_lowercase(),
        }
    }

    /// The id of the struct named `name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        let at = self
            .types
            .iter()
            .position(|t| t.kind == Kind::Struct && self.name(t) == name)?;
        Some(at as u32 + 1)
    }

    pub fn datasec(&self, name: &str) -> Option<&Type> {
        self.types
            .iter()
            .find(|t| t.kind == Kind::Datasec && self.name(t) == name)
    }

    pub fn strings_len(&self) -> usize {
        self.strings.len()
    }
}

/// Counts of a `.BTF.ext` section, and where each function's code comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BtfExt {
    pub func_info: usize,
    pub line_info: usize,
    pub core_relos: usize,
    /// Each function (program or subprogram) and its first line, in record order.
    pub functions: Vec<FuncSource>,
}

/// A function of an object and the source line of its first instruction (its line_info): for
/// a program a macro writes, the line of the macro's call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FuncSource {
    pub section: String,
    pub name: String,
    pub file: String,
    pub line: u32,
}

/// (minimum record size, name) of the three `.BTF.ext` subsections.
const EXT_PARTS: [(usize, &str); 3] = [
    (8, "func_info"),
    (16, "line_info"),
    (16, "CO-RE relocation"),
];

/// Parses and checks a `.BTF.ext` section against its `.BTF`.
pub fn parse_ext(data: &[u8], btf: &Btf) -> Result<BtfExt, BtfError> {
    let magic = u16_at(data, 0)?;
    if magic != BTF_MAGIC {
        return err(0, format!("bad BTF.ext magic {magic:#06x}"));
    }
    if data.len() < 24 {
        return err(
            data.len(),
            format!("the BTF.ext header is cut: {} of 24 bytes", data.len()),
        );
    }
    if data[2] != 1 {
        return err(2, "BTF.ext version is not 1");
    }
    if data[3] != 0 {
        return err(
            3,
            format!(
                "BTF.ext flags {:#x}: no flags exist (libbpf refuses it)",
                data[3]
            ),
        );
    }
    let hdr_len = u32_at(data, 4)? as usize;
    if hdr_len < 24 {
        return err(
            4,
            format!("BTF.ext header length {hdr_len} is shorter than 24 bytes"),
        );
    }
    if hdr_len > data.len() {
        return err(
            4,
            format!(
                "BTF.ext header length {hdr_len} is past the section's {} bytes",
                data.len()
            ),
        );
    }
    let mut counts = [0usize; 3];
    // (section, instruction offset) of each function, in func_info's order.
    let mut functions: Vec<(u32, FuncSource)> = Vec::new();
    for (part, (min_rec, what)) in EXT_PARTS.iter().enumerate() {
        let field = 8 + part * 8;
        if field + 8 > hdr_len {
            break; // older headers have no CO-RE part
        }
        let off = u32_at(data, field)? as usize;
        let len = u32_at(data, field + 4)? as usize;
        if len == 0 {
            continue;
        }
        let start = hdr_len
            .checked_add(off)
            .filter(|s| s.checked_add(len).is_some_and(|e| e <= data.len()));
        let Some(start) = start else {
            return err(
                field,
                format!(
                    "{what} [{off}, {off}+{len}) lies past the section's {} bytes",
                    data.len()
                ),
            );
        };
        let end = start + len;
        let rec_size = u32_at(data, start)? as usize;
        if rec_size < *min_rec {
            return err(
                start,
                format!("{what} record size {rec_size} is smaller than the minimum {min_rec}"),
            );
        }
        let mut at = start + 4;
        while at < end {
            let sec_name = u32_at(data, at)?;
            let n = u32_at(data, at + 4)? as usize;
            if btf.string(sec_name).is_none() {
                return err(
                    at,
                    format!("{what}: section name offset {sec_name} is not a string of the BTF"),
                );
            }
            let body = n
                .checked_mul(rec_size)
                .and_then(|b| b.checked_add(at + 8))
                .filter(|&e| e <= end);
            let Some(body_end) = body else {
                return err(at + 4, format!("{what}: {n} records of {rec_size} bytes run past the subsection's end at {end}"));
            };
            for r in 0..n {
                let rec = at + 8 + r * rec_size;
                match part {
                    0 => {
                        let id = u32_at(data, rec + 4)?;
                        match btf.get(id) {
                            Some(t) if t.kind == Kind::Func => functions.push((
                                u32_at(data, rec)?,
                                FuncSource {
                                    section: btf.string(sec_name).unwrap_or("").to_string(),
                                    name: btf.name(t).to_string(),
                                    ..FuncSource::default()
                                },
                            )),
                            _ => {
                                return err(
                                    rec + 4,
                                    format!("func_info #{r}: type {id} is not a FUNC"),
                                )
                            }
                        }
                    }
                    1 => {
                        let file = u32_at(data, rec + 4)?;
                        let Some(file) = btf.string(file) else {
                            return err(
                                rec + 4,
                                format!("line_info #{r}: file name offset {file} is not a string"),
                            );
                        };
                        let (insn, section) = (u32_at(data, rec)?, btf.string(sec_name));
                        let line = u32_at(data, rec + 12)? >> 10;
                        if let Some((_, f)) = functions.iter_mut().find(|(off, f)| {
                            *off == insn && f.file.is_empty() && Some(f.section.as_str()) == section
                        }) {
                            f.file = file.to_string();
                            f.line = line;
                        }
                    }
                    _ => {
                        let id = u32_at(data, rec + 4)?;
                        let access = u32_at(data, rec + 8)?;
                        if btf.get(id).is_none() {
                            return err(
                                rec + 4,
                                format!("CO-RE relocation #{r}: type {id} does not exist"),
                            );
                        }
                        if btf.string(access).is_none() {
                            return err(rec + 8, format!("CO-RE relocation #{r}: access string offset {access} is not a string"));
                        }
                    }
                }
            }
            counts[part] += n;
            at = body_end;
        }
    }
    Ok(BtfExt {
        functions: functions.into_iter().map(|(_, f)| f).collect(),
        func_info: counts[0],
        line_info: counts[1],
        core_relos: counts[2],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A type record: name offset, kind, vlen, kflag, size/type, trailing words.
    pub type Record<'a> = (u32, u8, u16, bool, u32, &'a [u32]);

    /// A BTF of `types` over `strings`, with a 24-byte header.
    pub fn build(strings: &[u8], types: &[Record]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(name, kind, vlen, kflag, st, extra) in types {
            let info = ((kflag as u32) << 31) | ((kind as u32) << 24) | vlen as u32;
            for w in [name, info, st].iter().chain(extra) {
                t.extend(w.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend(BTF_MAGIC.to_le_bytes());
        b.extend([1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(t);
        b.extend(strings);
        b
    }

    /// A small BTF: int, a struct using it, a pointer, FUNC_PROTO, FUNC, VAR and a DATASEC.
    pub fn sample() -> Vec<u8> {
        build(
            b"\0int\0s\0a\0f\0v\0.maps\0",
            &[
                (1, 1, 0, false, 4, &[32]),        // [1] int
                (5, 4, 1, false, 4, &[7, 1, 0]),   // [2] struct s { int a; }
                (0, 2, 0, false, 2, &[]),          // [3] ptr -> s
                (0, 13, 1, false, 1, &[7, 3]),     // [4] func_proto int (s *a)
                (9, 12, 0, false, 4, &[]),         // [5] func f
                (11, 14, 0, false, 1, &[1]),       // [6] var v
                (13, 15, 1, false, 0, &[6, 0, 4]), // [7] datasec .maps
            ],
        )
    }

    #[test]
    fn parses_every_kind_used() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.types.len(), 7);
        assert_eq!(btf.name(&btf.types[1]), "s");
        assert_eq!(btf.datasec(".maps").unwrap().members, [(6, 0)]);
    }

    #[test]
    fn truncation_at_every_length_is_an_error_not_a_panic() {
        let data = sample();
        for cut in 0..data.len() {
            assert!(Btf::parse(&data[..cut]).is_err(), "cut at {cut} parsed");
        }
    }

    #[test]
    fn malformed_headers_and_records() {
        let good = sample();
        let set = |at: usize, v: u32| {
            let mut d = good.clone();
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
            d
        };
        let cases = [
            (set(12, 10_000), "type section"),   // type_len past the end
            (set(20, 10_000), "string section"), // str_len past the end
            (set(24 + 4, (4 << 24) | 60_000), "vlen 60000"), // absurd vlen
            (set(24, 9_999), "name offset 9999"), // name past the strings
            (set(24 + 4, 31 << 24), "unknown kind 31"),
            (set(24 + 16 + 12 + 4, 99), "refers to type 99"), // struct member type
            (set(4, 8), "shorter than the 24-byte"),
        ];
        for (data, want) in cases {
            let e = Btf::parse(&data).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(Btf::parse(&bad_magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
    }

    fn ext(rec_size: u32, recs: &[[u32; 4]], sec_name: u32) -> Vec<u8> {
        let mut core = Vec::new();
        core.extend(rec_size.to_le_bytes());
        core.extend(sec_name.to_le_bytes());
        core.extend((recs.len() as u32).to_le_bytes());
        for r in recs {
            for v in r {
                core.extend(v.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend(BTF_MAGIC.to_le_bytes());
        b.extend([1, 0]);
        for v in [32u32, 0, 0, 0, 0, 0, core.len() as u32] {
            b.extend(v.to_le_bytes());
        }
        b.extend(core);
        b
    }

    #[test]
    fn btf_ext_core_relocations() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let good = ext(16, &[[0, 2, 7, 0]], 13);
        assert_eq!(parse_ext(&good, &btf).unwrap().core_relos, 1);
        let small = ext(8, &[[0, 2, 7, 0]], 13);
        assert!(parse_ext(&small, &btf)
            .unwrap_err()
            .to_string()
            .contains("smaller than the minimum 16"));
        let bad_type = ext(16, &[[0, 70, 7, 0]], 13);
        assert!(parse_ext(&bad_type, &btf)
            .unwrap_err()
            .to_string()
            .contains("type 70 does not exist"));
        let bad_name = ext(16, &[[0, 2, 7, 0]], 500);
        assert!(parse_ext(&bad_name, &btf)
            .unwrap_err()
            .to_string()
            .contains("section name offset 500"));
        for cut in 0..good.len() {
            let _ = parse_ext(&good[..cut], &btf); // never panics
        }
    }
}
