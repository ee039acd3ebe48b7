//! `--slowed-auto`: the test build that proves the bench fails when auto costs too much.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kc_common::Arch;
use xshell::cmd;

use crate::compile::{flags, plan::Project, toolchain::Toolchain};
use crate::process;

/// The source of the test build, under the checkout.
const SOURCE: &str = "co-re/tests/netdev-slowed.bpf.c";

/// Compiles the slowed netdev object into `dir` with the host's clang and the flags of a
/// release's CO-RE objects; returns the collector it replaces and the object.
pub(super) fn build(tc: &Toolchain, dir: &Path) -> Result<(&'static str, PathBuf)> {
    let project = Project::checkout();
    let inputs = project.inputs(tc)?;
    let object = dir.join("netdev-slowed.bpf.o");
    let args = flags::core_clang_args(&inputs, Arch::Amd64, &project.root.join(SOURCE), &object);
    let (sh, clang) = (process::shell(), &tc.clang);
    process::output(cmd!(sh, "{clang} {args...}"))?;
    Ok(("netdev", object))
}
