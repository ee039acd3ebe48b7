//! `--slowed-auto`: the test build that proves the bench fails when auto costs too much.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::compile::{test_object, toolchain::Toolchain};

/// The source of the test build, under the checkout.
const SOURCE: &str = "co-re/tests/netdev-slowed.bpf.c";

/// Compiles the slowed netdev object into `dir`; returns the collector it replaces and the
/// object.
pub(super) fn build(tc: &Toolchain, dir: &Path) -> Result<(&'static str, PathBuf)> {
    Ok(("netdev", test_object::build(tc, SOURCE, dir)?))
}
