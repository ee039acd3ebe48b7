//! The names of the build matrix and the release: a libc, an architecture, a cell. Every
//! cell and release file name is formatted and parsed here, and nowhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kernel::Bucket;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("libc {0:?}: use glibc or musl")]
    Libc(String),
    #[error("architecture {0:?}: use amd64 or arm64")]
    Arch(String),
    #[error("cell {input:?}: expected kc-ebpf-<bucket>[-<arch>]-<libc> or kc-ebpf-co-re[-<arch>]-<libc>, e.g. kc-ebpf-6.1-glibc or kc-ebpf-6.1-arm64-glibc")]
    Cell { input: String },
}

/// The C library the user-space parts (the loader) are linked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Libc {
    Glibc,
    Musl,
}

impl Libc {
    pub const ALL: [Libc; 2] = [Libc::Glibc, Libc::Musl];

    pub const fn as_str(self) -> &'static str {
        match self {
            Libc::Glibc => "glibc",
            Libc::Musl => "musl",
        }
    }
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Libc {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Libc::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| NameError::Libc(s.to_string()))
    }
}

/// A CPU architecture, in Debian's spelling (what package names and `binary-<arch>` use).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];
    /// What a release carries (and the CD matrix builds and boots).
    pub const RELEASED: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// amd64: the architecture whose names and manifests leave it unsaid.
    pub fn is_amd64(&self) -> bool {
        *self == Arch::Amd64
    }

    /// The architecture of a machine by the name its kernel gives it (`uname -m`, Rust's
    /// `std::env::consts::ARCH`): `x86_64`, `aarch64`.
    pub fn of_machine(machine: &str) -> Result<Arch, NameError> {
        match machine {
            "x86_64" => Ok(Arch::Amd64),
            "aarch64" | "arm64" => Ok(Arch::Arm64),
            other => Err(NameError::Arch(other.to_string())),
        }
    }

    /// The `__TARGET_ARCH_<x>` that libbpf's `bpf_tracing.h` and the kernel's `arch/<x>` use.
    pub const fn kernel_arch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| NameError::Arch(s.to_string()))
    }
}

/// What a cell holds: one bucket's legacy objects, or the CO-RE objects with the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CellKind {
    Bucket(Bucket),
    CoRe,
}

impl fmt::Display for CellKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellKind::Bucket(b) => write!(f, "{b}"),
            CellKind::CoRe => f.write_str("co-re"),
        }
    }
}

/// One build cell: what one (bucket or CO-RE, architecture, libc) build produces. Its name,
/// `kc-ebpf-<bucket>-<libc>` or `kc-ebpf-co-re-<libc>` for amd64 (the names before arm64
/// came), `kc-ebpf-<bucket>-<arch>-<libc>` for another architecture, names its directory
/// under `artifacts/cells/` and its tarball `artifacts/<name>.tar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellId {
    pub kind: CellKind,
    pub libc: Libc,
    pub arch: Arch,
}

const CELL_PREFIX: &str = "kc-ebpf-";

impl CellId {
    /// An amd64 cell ([`CellId::on`] gives another architecture's).
    pub const fn new(kind: CellKind, libc: Libc) -> Self {
        Self {
            kind,
            libc,
            arch: Arch::Amd64,
        }
    }

    /// The same cell for `arch`.
    pub const fn on(self, arch: Arch) -> Self {
        Self { arch, ..self }
    }

    pub const fn bucket(bucket: Bucket, libc: Libc) -> Self {
        Self::new(CellKind::Bucket(bucket), libc)
    }

    pub const fn core(libc: Libc) -> Self {
        Self::new(CellKind::CoRe, libc)
    }

    /// The bucket of a legacy cell.
    pub fn bucket_of(&self) -> Option<Bucket> {
        match self.kind {
            CellKind::Bucket(b) => Some(b),
            CellKind::CoRe => None,
        }
    }

    pub fn is_core(&self) -> bool {
        self.kind == CellKind::CoRe
    }

    /// The cell's tarball under `artifacts/`.
    pub fn tarball(&self) -> String {
        format!("{self}.tar")
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arch {
            Arch::Amd64 => f.pad(&format!("{CELL_PREFIX}{}-{}", self.kind, self.libc)),
            arch => f.pad(&format!("{CELL_PREFIX}{}-{arch}-{}", self.kind, self.libc)),
        }
    }
}

/// As its name (`kc-ebpf-5.10-musl`), the one spelling everywhere.
impl Serialize for CellId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CellId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for CellId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NameError::Cell {
            input: s.to_string(),
        };
        let rest = s.strip_prefix(CELL_PREFIX).ok_or_else(bad)?;
        let (kind, libc) = rest.rsplit_once('-').ok_or_else(bad)?;
        let libc: Libc = libc.parse().map_err(|_| bad())?;
        // amd64 is unnamed; `-amd64` spelled out would be a second name for the same cell.
        let (kind, arch) = match kind.rsplit_once('-') {
            Some((k, a)) if a != "re" => match a.parse::<Arch>() {
                Ok(Arch::Amd64) | Err(_) => return Err(bad()),
                Ok(arch) => (k, arch),
            },
            _ => (kind, Arch::Amd64),
        };
        let kind = if kind == "co-re" {
            CellKind::CoRe
        } else {
            CellKind::Bucket(kind.parse().map_err(|_| bad())?)
        };
        Ok(Self { kind, libc, arch })
    }
}

/// `<arch>-` in a release file's name: empty for amd64, whose names came first and stay
/// what earlier installers ask for.
fn arch_part(arch: Arch) -> String {
    match arch {
        Arch::Amd64 => String::new(),
        other => format!("{other}-"),
    }
}

/// `kernel-collector-[<arch>-]<libc>-<tag>.tar.xz`: every bucket's legacy objects and the
/// loader.
pub fn legacy_tarball(arch: Arch, libc: Libc, tag: &str) -> String {
    format!("kernel-collector-{}{libc}-{tag}.tar.xz", arch_part(arch))
}

/// `kernel-collector-co-re-[<arch>-]<libc>-<tag>.tar.xz`: CO-RE objects, skeletons and the
/// loader.
pub fn core_tarball(arch: Arch, libc: Libc, tag: &str) -> String {
    format!(
        "kernel-collector-co-re-{}{libc}-{tag}.tar.xz",
        arch_part(arch)
    )
}

/// `kc-select-<arch>-<tag>`: the static `kc-select` both libcs share, a release file of its
/// own (uncompressed: inside a tarball, decompressing it would cost more than all the objects).
pub fn select_tool_file(arch: Arch, tag: &str) -> String {
    ReleaseTool::Select.file(arch, tag)
}

/// A static program a release carries per architecture, for both libcs, as a file of its own
/// (`<program>-<arch>-<tag>`), installed beside `legacy/` and `co-re/` as `<program>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReleaseTool {
    /// `kc-select`: the selection rule as a program (every release has it).
    Select,
    /// `kc-exporter`: the release as a Prometheus exporter (releases since it was added).
    Exporter,
}

impl ReleaseTool {
    pub const ALL: [ReleaseTool; 2] = [ReleaseTool::Select, ReleaseTool::Exporter];

    /// Its name as installed (and its crate's).
    pub const fn program(self) -> &'static str {
        match self {
            ReleaseTool::Select => "kc-select",
            ReleaseTool::Exporter => "kc-exporter",
        }
    }

    /// Its release file for `arch`.
    pub fn file(self, arch: Arch, tag: &str) -> String {
        format!("{}-{arch}-{tag}", self.program())
    }
}

impl std::fmt::Display for ReleaseTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.program())
    }
}

/// Whether a release file's name says it belongs to `tag` (every one but `sha256sums.txt` and
/// the signatures carries it last).
pub fn is_file_of(name: &str, tag: &str) -> bool {
    name.ends_with(&format!("-{tag}.tar.xz")) || name.ends_with(&format!("-{tag}"))
}

/// A legacy object: `{p|r}kc_<collector>.<bucket>.o` (`r`: entry and return probes).
pub fn legacy_object(collector: &str, bucket: Bucket, return_mode: bool) -> String {
    let mode = if return_mode { 'r' } else { 'p' };
    format!("{mode}kc_{collector}.{bucket}.o")
}

/// The collector, bucket and mode (`true`: return) of a legacy object's file name.
pub fn parse_legacy_object(name: &str) -> Option<(String, Bucket, bool)> {
    let stem = name.strip_suffix(".o")?;
    let return_mode = match stem.as_bytes().first()? {
        b'r' => true,
        b'p' => false,
        _ => return None,
    };
    let (collector, bucket) = stem[1..].strip_prefix("kc_")?.split_once('.')?;
    Some((collector.to_string(), bucket.parse().ok()?, return_mode))
}

/// A CO-RE object: `<collector>.bpf.o`.
pub fn core_object(collector: &str) -> String {
    format!("{collector}.bpf.o")
}

/// A CO-RE object's libbpf skeleton: `<collector>.skel.h`.
pub fn skeleton(collector: &str) -> String {
    format!("{collector}.skel.h")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_and_arch_round_trip() {
        for l in Libc::ALL {
            assert_eq!(l.to_string().parse::<Libc>(), Ok(l));
        }
        assert_eq!(
            "uclibc".parse::<Libc>(),
            Err(NameError::Libc("uclibc".into()))
        );
        assert_eq!(serde_json::to_string(&Libc::Musl).unwrap(), "\"musl\"");
        assert_eq!("amd64".parse::<Arch>(), Ok(Arch::Amd64));
        assert!("x86_64".parse::<Arch>().is_err());
    }

    #[test]
    fn machines_name_their_architecture() {
        assert_eq!(Arch::of_machine("x86_64"), Ok(Arch::Amd64));
        assert_eq!(Arch::of_machine("aarch64"), Ok(Arch::Arm64));
        assert!(Arch::of_machine("riscv64").is_err());
        assert!(crate::host::host_arch().is_ok(), "the build host's");
    }

    #[test]
    fn cell_names_round_trip() {
        let b: Bucket = "6.12".parse().unwrap();
        let cases = [
            (CellId::bucket(b, Libc::Glibc), "kc-ebpf-6.12-glibc"),
            (CellId::core(Libc::Musl), "kc-ebpf-co-re-musl"),
            (
                CellId::bucket(b, Libc::Musl).on(Arch::Arm64),
                "kc-ebpf-6.12-arm64-musl",
            ),
            (
                CellId::core(Libc::Glibc).on(Arch::Arm64),
                "kc-ebpf-co-re-arm64-glibc",
            ),
        ];
        for (id, name) in cases {
            assert_eq!(id.to_string(), name);
            assert_eq!(name.parse::<CellId>(), Ok(id));
        }
        assert_eq!(
            CellId::core(Libc::Glibc).tarball(),
            "kc-ebpf-co-re-glibc.tar"
        );
        for bad in [
            "kc-ebpf-6.1",
            "kc-ebpf-6.1-bionic",
            "ebpf-6.1-glibc",
            "kc-ebpf-six-glibc",
            "kc-ebpf--glibc",
            "kc-ebpf-6.1.2-glibc",
            "kc-ebpf-6.1-amd64-glibc",
            "kc-ebpf-6.1-riscv64-glibc",
            "kc-ebpf-arm64-glibc",
        ] {
            assert!(bad.parse::<CellId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn object_and_release_names() {
        let b: Bucket = "5.10".parse().unwrap();
        assert_eq!(legacy_object("vfs", b, true), "rkc_vfs.5.10.o");
        assert_eq!(legacy_object("vfs", b, false), "pkc_vfs.5.10.o");
        assert_eq!(core_object("fd"), "fd.bpf.o");
        assert_eq!(
            select_tool_file(Arch::Amd64, "v1.2.3"),
            "kc-select-amd64-v1.2.3"
        );
        assert!(is_file_of("kc-select-amd64-v1.2.3", "v1.2.3"));
        assert_eq!(
            ReleaseTool::Exporter.file(Arch::Arm64, "v1.2.3"),
            "kc-exporter-arm64-v1.2.3"
        );
        assert!(is_file_of(
            &ReleaseTool::Exporter.file(Arch::Amd64, "v1.2.3"),
            "v1.2.3"
        ));
        assert!(is_file_of(
            &core_tarball(Arch::Amd64, Libc::Musl, "v1.2.3"),
            "v1.2.3"
        ));
        assert!(!is_file_of(
            &core_tarball(Arch::Amd64, Libc::Musl, "v1.2.3"),
            "v1.2"
        ));
        assert!(!is_file_of("kc-select-amd64-v1.2.3", "v1.2"));
        assert_eq!(
            parse_legacy_object("rkc_vfs.5.10.o"),
            Some(("vfs".into(), b, true))
        );
        assert_eq!(
            parse_legacy_object(&legacy_object("mount", b, false)),
            Some(("mount".into(), b, false))
        );
        for bad in [
            "vfs.bpf.o",
            "xkc_vfs.5.10.o",
            "rkc_vfs.o",
            "rkc_vfs.5.10.1.o",
            "kc-loader",
        ] {
            assert_eq!(parse_legacy_object(bad), None, "{bad}");
        }
        assert_eq!(skeleton("fd"), "fd.skel.h");
        assert_eq!(
            legacy_tarball(Arch::Amd64, Libc::Musl, "v1.2.3"),
            "kernel-collector-musl-v1.2.3.tar.xz"
        );
        assert_eq!(
            core_tarball(Arch::Amd64, Libc::Glibc, "v1.2.3"),
            "kernel-collector-co-re-glibc-v1.2.3.tar.xz"
        );
        assert_eq!(
            legacy_tarball(Arch::Arm64, Libc::Musl, "v1.2.3"),
            "kernel-collector-arm64-musl-v1.2.3.tar.xz"
        );
        assert_eq!(
            core_tarball(Arch::Arm64, Libc::Glibc, "v1.2.3"),
            "kernel-collector-co-re-arm64-glibc-v1.2.3.tar.xz"
        );
    }
}
