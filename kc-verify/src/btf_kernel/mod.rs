//! The kernel's BTF loader rules (`BPF_BTF_LOAD`, kernel/bpf/btf.c), applied before the
//! kernel sees the BTF: header and section layout, each kind's metadata check, then type
//! resolution with the same depth-first walk, loop detection and size computation, member
//! placement, FUNC_PROTO, FUNC, VAR, DATASEC and DECL_TAG checks, and the type-tag ordering.
//!
//! The walk mirrors the kernel's on purpose (its resolve modes, its 32-deep stack, its u32
//! arithmetic): what the kernel rejects because of how it walks, we must reject too. A finding
//! names the type id, its kind and name, and the kernel's own words for the rule.
//!
//! Input is BTF as the kernel receives it: for an object file, after libbpf's open-time
//! fix-ups (DATASEC sizes and VAR offsets filled in from the ELF), which
//! [`libbpf_fixup`] applies before [`check`].

use std::fmt;

const INT: u8 = 1;
const PTR: u8 = 2;
const ARRAY: u8 = 3;
const STRUCT: u8 = 4;
const UNION: u8 = 5;
const ENUM: u8 = 6;
const FWD: u8 = 7;
const TYPEDEF: u8 = 8;
const VOLATILE: u8 = 9;
const CONST: u8 = 10;
const RESTRICT: u8 = 11;
const FUNC: u8 = 12;
const FUNC_PROTO: u8 = 13;
const VAR: u8 = 14;
const DATASEC: u8 = 15;
const FLOAT: u8 = 16;
const DECL_TAG: u8 = 17;
const TYPE_TAG: u8 = 18;
const ENUM64: u8 = 19;
const KIND_MAX: u8 = ENUM64;

const KIND_NAMES: [&str; 20] = [
    "UNKNOWN",
    "INT",
    "PTR",
    "ARRAY",
    "STRUCT",
    "UNION",
    "ENUM",
    "FWD",
    "TYPEDEF",
    "VOLATILE",
    "CONST",
    "RESTRICT",
    "FUNC",
    "FUNC_PROTO",
    "VAR",
    "DATASEC",
    "FLOAT",
    "DECL_TAG",
    "TYPE_TAG",
    "ENUM64",
];

const INFO_MASK: u32 = 0x9f00_ffff;
const INT_MASK: u32 = 0x0fff_ffff;
const MAX_TYPE: u32 = 0x000f_ffff;
const MAX_NAME_OFFSET: u32 = 0x00ff_ffff;
const MAX_SIZE: usize = 16 << 20;
const HEADER: usize = 24;
const MAX_RESOLVE_DEPTH: usize = 32;
/// The kernel's KSYM_NAME_LEN: longer names are refused.
const NAME_LIMIT: usize = 512;
/// `sizeof(void *)` of the 64-bit targets we build for.
const PTR_SIZE: u32 = 8;

/// A rule the kernel's BTF loader would refuse this BTF by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The type the rule concerns (0 for the header and sections).
    pub type_id: u32,
    pub kind: &'static str,
    pub name: String,
    /// The kernel's words.
    pub rule: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.type_id == 0 {
            write!(f, "BTF: {}", self.rule)
        } else {
            let name = if self.name.is_empty() {
                "(anon)"
            } else {
                &self.name
            };
            write!(
                f,
                "BTF type [{}] {} {name}: {}",
                self.type_id, self.kind, self.rule
            )
        }
    }
}

/// Checks `data` as `BPF_BTF_LOAD` would; `Ok` when the kernel would accept it.
pub fn check(data: &[u8]) -> Result<(), Finding> {
    let hdr = parse_header(data)?;
    let mut env = Env::new(data, hdr)?;
    env.check_all_metas()?;
    env.check_all_types()?;
    env.check_type_tags()
}

fn header_finding(rule: impl Into<String>) -> Finding {
    Finding {
        type_id: 0,
        kind: "header",
        name: String::new(),
        rule: rule.into(),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[derive(Debug, Clone, Copy)]
struct Header {
    hdr_len: usize,
    type_off: u32,
    type_len: u32,
    str_off: u32,
    str_len: u32,
}

fn parse_header(data: &[u8]) -> Result<Header, Finding> {
    if data.len() > MAX_SIZE {
        return Err(header_finding(format!(
            "larger than the {MAX_SIZE}-byte limit"
        )));
    }
    if data.len() < 8 {
        return Err(header_finding("hdr_len not found"));
    }
    let hdr_len = le32(data, 4) as usize;
    if data.len() < hdr_len {
        return Err(header_finding("btf_header not found"));
    }
    if hdr_len > HEADER && data[HEADER..hdr_len].iter().any(|&b| b != 0) {
        return Err(header_finding("Unsupported btf_header"));
    }
    // A shorter header leaves the fields it does not reach at zero.
    let mut h = [0u8; HEADER];
    let copy = hdr_len.min(HEADER);
    h[..copy].copy_from_slice(&data[..copy]);
    if u16::from_le_bytes([h[0], h[1]]) != 0xeb9f {
        return Err(header_finding("Invalid magic"));
    }
    if h[2] != 1 {
        return Err(header_finding("Unsupported version"));
    }
    if h[3] != 0 {
        return Err(header_finding("Unsupported flags"));
    }
    if data.len() == hdr_len {
        return Err(header_finding("No data"));
    }
    let hdr = Header {
        hdr_len,
        type_off: le32(&h, 8),
        type_len: le32(&h, 12),
        str_off: le32(&h, 16),
        str_len: le32(&h, 20),
    };
    check_sections(&hdr, (data.len() - hdr_len) as u32)?;
    Ok(hdr)
}

/// The type and string sections must tile what follows the header: no gap, no overlap,
/// nothing else.
fn check_sections(h: &Header, expected_total: u32) -> Result<(), Finding> {
    let mut secs = [(h.type_off, h.type_len), (h.str_off, h.str_len)];
    // The kernel's comparator: differences read as signed 32-bit values.
    let cmp = |x: &(u32, u32), y: &(u32, u32)| {
        let by_off = x.0.wrapping_sub(y.0) as i32;
        let d = if by_off != 0 {
            by_off
        } else {
            x.1.wrapping_sub(y.1) as i32
        };
        d.cmp(&0)
    };
    secs.sort_by(cmp);
    let mut total = 0u32;
    for (off, len) in secs {
        if expected_total < off {
            return Err(header_finding("Invalid section offset"));
        }
        if total < off {
            return Err(header_finding("Unsupported section found"));
        }
        if total > off {
            return Err(header_finding("Section overlap found"));
        }
        if expected_total - total < len {
            return Err(header_finding("Total section length too long"));
        }
        total += len;
    }
    if expected_total != total {
        return Err(header_finding("Unsupported section found"));
    }
    Ok(())
}

/// The kernel's `ctype` classes (Latin-1 letters count as letters there).
fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 0xc0 && c != 0xd7 && c != 0xf7)
}

fn is_print(c: u8) -> bool {
    (0x20..=0x7e).contains(&c) || c >= 0xa0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tbd,
    Ptr,
    StructOrArray,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    NotVisited,
    Visited,
    Resolved,
}

/// Why a resolve step stopped.
enum Stop {
    /// The stack is full (`-E2BIG`).
    Depth,
    /// A type was met again while being resolved (`-EEXIST`).
    Loop,
    Rule(Finding),
}

impl From<Finding> for Stop {
    fn from(f: Finding) -> Self {
        Stop::Rule(f)
    }
}

struct Vertex {
    id: u32,
    next_member: u16,
}

struct Env<'a> {
    data: &'a [u8],
    strings: &'a [u8],
    /// Byte offset of each type record in `data`; index 0 is void.
    at: Vec<usize>,
    visit: Vec<Visit>,
    resolved_ids: Vec<u32>,
    resolved_sizes: Vec<u32>,
    stack: Vec<Vertex>,
    mode: Mode,
}

impl<'a> Env<'a> {
    fn new(data: &'a [u8], h: Header) -> Result<Self, Finding> {
        let body = &data[h.hdr_len..];
        let str_start = h.str_off as usize;
        let strings = &body[str_start..str_start + h.str_len as usize];
        if str_start + strings.len() != body.len() {
            return Err(header_finding("String section is not at the end"));
        }
        if strings.is_empty()
            || strings.len() as u32 - 1 > MAX_NAME_OFFSET
            || strings[strings.len() - 1] != 0
            || strings[0] != 0
        {
            return Err(header_finding("Invalid string section"));
        }
        if !h.type_off.is_multiple_of(4) {
            return Err(header_finding("Unaligned type_off"));
        }
        if h.type_len == 0 {
            return Err(header_finding("No type found"));
        }
        Ok(Self {
            data: &body[h.type_off as usize..(h.type_off + h.type_len) as usize],
            strings,
            at: vec![usize::MAX],
            visit: Vec::new(),
            resolved_ids: Vec::new(),
            resolved_sizes: Vec::new(),
            stack: Vec::new(),
            mode: Mode::Tbd,
        })
    }

    // --- type access -------------------------------------------------------------------

    fn count(&self) -> u32 {
        self.at.len() as u32
    }

    /// The kind of type `id` (0 for void), or `None` when no such type exists.
    fn kind(&self, id: u32) -> Option<u8> {
        match id {
            0 => Some(0),
            _ if id < self.count() => Some(((self.info(id) >> 24) & 0x1f) as u8),
            _ => None,
        }
    }
    fn word(&self, id: u32, i: usize) -> u32 {
        self.at
            .get(id as usize)
            .map_or(0, |&at| le32(self.data, at + 4 * i))
    }
    fn name_off(&self, id: u32) -> u32 {
        self.word(id, 0)
    }
    fn info(&self, id: u32) -> u32 {
        self.word(id, 1)
    }
    fn size_or_type(&self, id: u32) -> u32 {
        if id == 0 {
            0
        } else {
            self.word(id, 2)
        }
    }
    fn vlen(&self, id: u32) -> u16 {
        if id == 0 {
            0
        } else {
            self.info(id) as u16
        }
    }
    fn kflag(&self, id: u32) -> bool {
        id != 0 && self.info(id) >> 31 != 0
    }
    /// Word `i` of what follows the 12-byte record head.
    fn extra(&self, id: u32, i: usize) -> u32 {
        self.word(id, 3 + i)
    }

    fn string(&self, off: u32) -> Option<&'a [u8]> {
        let s = self.strings.get(off as usize..)?;
        Some(&s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())])
    }
    fn name_offset_valid(&self, off: u32) -> bool {
        off <= MAX_NAME_OFFSET && (off as usize) < self.strings.len()
    }
    fn name_valid(&self, off: u32, dot_ok: bool) -> bool {
        let Some(s) = self.string(off) else {
            return false;
        };
        let ok = |c: u8, first: bool| {
            (if first {
                is_alpha(c)
            } else {
                is_alpha(c) || c.is_ascii_digit()
            }) || c == b'_'
                || (c == b'.' && dot_ok)
        };
        match s.split_first() {
            Some((&c, rest)) if ok(c, true) => {
                rest.len() < NAME_LIMIT - 1 && rest.iter().all(|&c| ok(c, false))
            }
            _ => false,
        }
    }
    /// C identifiers, and the dotted names compilers give clones (`foo.isra.0`): letters,
    /// digits (not first), `_` and `.`, as 6.x kernels accept.
    fn identifier(&self, off: u32) -> bool {
        self.name_valid(off, true)
    }
    /// DATASEC names: any printable text (`.rodata.str1.1`, `.data..percpu`, `?` ...).
    fn section_name(&self, off: u32) -> bool {
        match self.string(off) {
            Some(s) => !s.is_empty() && s.len() < NAME_LIMIT && s.iter().all(|&c| is_print(c)),
            None => false,
        }
    }

    fn finding(&self, id: u32, rule: impl Into<String>) -> Finding {
        let kind = self
            .kind(id)
            .map_or("?", |k| KIND_NAMES.get(k as usize).copied().unwrap_or("?"));
        let name = if id < self.count() && id != 0 {
            self.string(self.name_off(id))
                .map(|s| String::from_utf8_lossy(s).into_owned())
        } else {
            None
        };
        Finding {
            type_id: id,
            kind,
            name: name.unwrap_or_default(),
            rule: rule.into(),
        }
    }
}

mod fixup;
mod meta;
mod resolve;

pub use fixup::{libbpf_fixup, ElfLayout};

#[cfg(test)]
mod tests;
