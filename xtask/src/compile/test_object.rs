//! Test builds of a collector (`co-re/tests/*.bpf.c`: a shipped collector plus a program that
//! makes it costly or wrong on purpose), compiled as a release's CO-RE objects are, for checks
//! that must see a bench or a judge fail. Never shipped.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kc_common::Arch;
use xshell::cmd;

use super::{flags, plan::Project, toolchain::Toolchain};
use crate::process;

/// Compiles `source` (relative to the checkout, or absolute) into `dir` with the host's clang
/// and the flags of a release's amd64 CO-RE objects; returns the object.
pub fn build(tc: &Toolchain, source: &str, dir: &Path) -> Result<PathBuf> {
    let project = Project::checkout();
    let inputs = project.inputs(tc)?;
    let name = Path::new(source)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("test.bpf.c")
        .replace(".bpf.c", ".bpf.o");
    let object = dir.join(name);
    let args = flags::core_clang_args(&inputs, Arch::Amd64, &project.root.join(source), &object);
    let (sh, clang) = (process::shell(), &tc.clang);
    process::output(cmd!(sh, "{clang} {args...}"))?;
    Ok(object)
}
