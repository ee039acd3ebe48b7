//! What a docker cell's container builds, and where: one typed request the docker backend
//! writes as JSON into the cell's output mount and the container's xtask reads
//! (`xtask build-cell FILE`), instead of an argument list and paths in environment variables.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use kc_common::{CellId, CellKind};
use serde::{Deserialize, Serialize};

use super::{build_and_report, Backend, BuildOptions, Project};

/// The request's file name in a cell's output mount.
pub const FILE: &str = "request.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRequest {
    pub cell: CellId,
    /// Keep DWARF debug info in the objects.
    pub debug: bool,
    /// The sources (mounted read-only at their host path), the header trees, and where the
    /// outputs go (the cell's mount).
    pub project: Project,
}

impl CellRequest {
    /// The host build of exactly this cell.
    pub fn options(&self) -> BuildOptions {
        let id = self.cell;
        BuildOptions {
            backend: Some(Backend::Host),
            libc: Some(id.libc.into()),
            buckets: match id.kind {
                CellKind::Bucket(b) => vec![b],
                CellKind::CoRe => Vec::new(),
            },
            all: false,
            core: id.kind == CellKind::CoRe,
            debug: self.debug,
            arch: id.arch,
            jobs: None,
            json: false,
        }
    }
}

/// `xtask build-cell FILE`: builds the cell `FILE` asks for (what runs in a docker cell).
pub fn build_cell(path: &Path) -> Result<()> {
    // A request is a few hundred bytes: anything much larger is not one.
    const MAX: u64 = 64 * 1024;
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading the cell request {}", path.display()))?
        .len();
    ensure!(
        size <= MAX,
        "{} is {size} bytes: not a cell request",
        path.display()
    );
    let request: CellRequest = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("{} is not a cell request", path.display()))?;
    build_and_report(&request.project, &request.options(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn request(cell: &str) -> CellRequest {
        CellRequest {
            cell: cell.parse().unwrap(),
            debug: false,
            project: Project {
                root: PathBuf::from("/src"),
                artifacts: PathBuf::from("/out/artifacts"),
                work: PathBuf::from("/out/work"),
                kernel_cache: PathBuf::from("/cache"),
            },
        }
    }

    #[test]
    fn a_request_asks_for_its_one_cell() {
        let o = request("kc-ebpf-5.10-arm64-musl").options();
        assert_eq!(o.buckets, ["5.10".parse().unwrap()]);
        assert!(!o.core && !o.all);
        assert_eq!(o.arch, kc_common::Arch::Arm64);
        assert_eq!(o.libc.unwrap().libcs(), [kc_common::Libc::Musl]);
        let o = request("kc-ebpf-co-re-glibc").options();
        assert!(o.core && o.buckets.is_empty());
    }

    #[test]
    fn a_request_round_trips_and_refuses_what_it_does_not_know() {
        let r = request("kc-ebpf-co-re-glibc");
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"cell\":\"kc-ebpf-co-re-glibc\""), "{text}");
        assert_eq!(serde_json::from_str::<CellRequest>(&text).unwrap(), r);
        let extra = text.replacen('{', "{\"jobs\":4,", 1);
        assert!(serde_json::from_str::<CellRequest>(&extra).is_err());
        let bad = text.replace("kc-ebpf-co-re-glibc", "kc-ebpf-co-re-libc");
        assert!(serde_json::from_str::<CellRequest>(&bad).is_err());
    }

    #[test]
    fn what_is_not_a_request_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "{\"cell\": 1}").unwrap();
        let e = format!("{:#}", build_cell(&path).unwrap_err());
        assert!(e.contains("is not a cell request"), "{e}");
        std::fs::write(&path, vec![b' '; 100_000]).unwrap();
        let e = format!("{:#}", build_cell(&path).unwrap_err());
        assert!(e.contains("not a cell request"), "{e}");
    }
}
