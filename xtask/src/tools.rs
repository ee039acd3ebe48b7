//! `cargo xtask tools`: the static executables a workflow's jobs share, built once by one job:
//! `kc-select` and `kc-exporter` for every released architecture (what `package` ships; vmtest
//! installs the release's kc-select in its guests) and, unless `KC_VMTEST_AGENT=none`, `kc-agent` for every architecture vmtest
//! boots. Later jobs name the directory in `KC_TOOLS_DIR` and take them from it instead of
//! building their own: the kc-select vmtest tested is the one the release ships, and no job
//! spends a minute relinking it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use kc_common::Arch;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::compile::select_tool::{self, Tool};
use crate::vmtest::AgentKernels;

#[derive(Debug, Args)]
pub struct ToolsOptions {
    /// The directory the tools and their manifest (`tools.json`) go to
    #[arg(long)]
    pub out: PathBuf,
}

/// The manifest of a tools directory.
pub const MANIFEST: &str = "tools.json";

/// What a tools directory holds: the rustc that built it, and each file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsManifest {
    pub rustc: String,
    pub files: BTreeMap<String, String>,
}

/// The tools a workflow's jobs need: kc-select for every released architecture, kc-agent for
/// each too unless vmtest runs none (`agent`).
pub fn wanted(agent: bool) -> Vec<(Tool, Arch)> {
    let tools: &[Tool] = if agent {
        &[Tool::Select, Tool::Exporter, Tool::Agent]
    } else {
        &[Tool::Select, Tool::Exporter]
    };
    tools
        .iter()
        .flat_map(|&t| Arch::RELEASED.map(|a| (t, a)))
        .collect()
}

pub fn run(o: ToolsOptions) -> Result<()> {
    let agent = AgentKernels::runs_agent(AgentKernels::from_env()?);
    let mut manifest = ToolsManifest {
        rustc: String::new(),
        files: BTreeMap::new(),
    };
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    for (tool, arch) in wanted(agent) {
        let (bytes, rustc) = select_tool::build_tool(tool, arch)?;
        let name = tool.file_name(arch);
        atomic::write_file(&o.out.join(&name), &bytes, true)?;
        eprintln!("tools: {name} ({} bytes)", bytes.len());
        manifest
            .files
            .insert(name, kc_common::release::sha256_hex(&bytes));
        manifest.rustc = rustc;
    }
    atomic::write(
        &o.out.join(MANIFEST),
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(())
}

/// The largest tool read back (ours are a few MiB; kc-agent's dev build some tens).
const TOOL_CAP: u64 = 256 << 20;

/// `tool` for `arch` from a tools directory, checked against its manifest: its bytes and the
/// rustc that built it.
pub fn prebuilt(dir: &Path, tool: Tool, arch: Arch) -> Result<(Vec<u8>, String)> {
    let what = |f: &str| format!("{} (KC_TOOLS_DIR)", dir.join(f).display());
    let text = crate::verify::read_regular(&dir.join(MANIFEST), 1 << 20).with_context(|| {
        format!(
            "reading {}: is it `cargo xtask tools --out`'s?",
            what(MANIFEST)
        )
    })?;
    let manifest: ToolsManifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a tools manifest", what(MANIFEST)))?;
    let name = tool.file_name(arch);
    let Some(sha256) = manifest.files.get(&name) else {
        bail!(
            "{} lists no {name} (it has {:?}): the tools job built without it (KC_VMTEST_AGENT=none leaves kc-agent out)",
            what(MANIFEST),
            manifest.files.keys().collect::<Vec<_>>()
        );
    };
    let bytes = crate::verify::read_regular(&dir.join(&name), TOOL_CAP)
        .with_context(|| format!("reading {}", what(&name)))?;
    let actual = kc_common::release::sha256_hex(&bytes);
    ensure!(
        &actual == sha256,
        "{} is not the file its manifest lists (SHA-256 {actual}, listed {sha256}): download the tools again",
        what(&name)
    );
    Ok((bytes, manifest.rustc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools_dir(files: &[(&str, &[u8])], listed: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let manifest = ToolsManifest {
            rustc: "rustc 1.95.0".into(),
            files: listed
                .iter()
                .map(|(n, b)| (n.to_string(), kc_common::release::sha256_hex(b)))
                .collect(),
        };
        std::fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_listed_tool_is_read_with_its_rustc() {
        let d = tools_dir(
            &[("kc-select-arm64", b"elf")],
            &[("kc-select-arm64", b"elf")],
        );
        let (bytes, rustc) = prebuilt(d.path(), Tool::Select, Arch::Arm64).unwrap();
        assert_eq!(
            (bytes.as_slice(), rustc.as_str()),
            (&b"elf"[..], "rustc 1.95.0")
        );
    }

    fn refusal(dir: &Path, tool: Tool, arch: Arch) -> String {
        format!("{:#}", prebuilt(dir, tool, arch).unwrap_err())
    }

    #[test]
    fn a_missing_changed_or_unlisted_tool_is_refused_by_name() {
        let d = tools_dir(
            &[("kc-select-amd64", b"other")],
            &[("kc-select-amd64", b"elf")],
        );
        let e = refusal(d.path(), Tool::Select, Arch::Amd64);
        assert!(
            e.contains("kc-select-amd64") && e.contains("is not the file its manifest lists"),
            "{e}"
        );
        let e = refusal(d.path(), Tool::Agent, Arch::Amd64);
        assert!(
            e.contains("lists no kc-agent-amd64") && e.contains("KC_VMTEST_AGENT=none"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = refusal(empty.path(), Tool::Select, Arch::Amd64);
        assert!(
            e.contains("tools.json") && e.contains("cargo xtask tools"),
            "{e}"
        );
    }

    #[test]
    fn without_the_agent_only_kc_select_is_built() {
        assert_eq!(
            wanted(false),
            [
                (Tool::Select, Arch::Amd64),
                (Tool::Select, Arch::Arm64),
                (Tool::Exporter, Arch::Amd64),
                (Tool::Exporter, Arch::Arm64)
            ]
        );
        assert_eq!(wanted(true).len(), 6);
    }
}
