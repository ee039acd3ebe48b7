//! The GitHub workflow files, read: their jobs, steps, the actions they pin and the
//! `cargo xtask` command lines they run. What the rehearsal maps to local copies, and what
//! the tests run through the real command-line parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::paths;

/// The workflows the rehearsal knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkflowName {
    /// `.github/workflows/ci.yml`: lint and tests, the build cells, vmtest
    Ci,
    /// `.github/workflows/release.yml`: cells, vmtest, package, sign, publish
    Release,
}

impl WorkflowName {
    pub fn file(self) -> PathBuf {
        let name = match self {
            WorkflowName::Ci => "ci.yml",
            WorkflowName::Release => "release.yml",
        };
        paths::project_root().join(".github/workflows").join(name)
    }
}

#[derive(Debug, Deserialize)]
pub struct Workflow {
    pub jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Deserialize)]
pub struct Job {
    /// Where the command lines' variables come from (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
pub struct Step {
    pub name: Option<String>,
    #[serde(rename = "if")]
    pub condition: Option<String>,
    pub uses: Option<String>,
    pub run: Option<String>,
    #[cfg_attr(not(test), allow(dead_code))]
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Step {
    /// What act calls the step in its log: its name, else `Main <uses>` or `Main <run>`.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let what = self.uses.as_deref().or(self.run.as_deref()).unwrap_or("?");
        what.lines().next().unwrap_or("").to_string()
    }

    /// Whether the step runs only off act (`if: ${{ !env.ACT }}`).
    pub fn skipped_under_act(&self) -> bool {
        self.condition
            .as_deref()
            .is_some_and(|c| c.replace(' ', "").contains("!env.ACT"))
    }
}

impl Workflow {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Every `owner/name@ref` the steps use.
    pub fn actions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .jobs
            .values()
            .flat_map(|j| &j.steps)
            .filter_map(|s| s.uses.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every `cargo xtask ...` command line of the `run:` scripts (the tests parse each):
    /// (job, the words after `xtask`, with `"$VAR"` left as written).
    #[cfg(test)]
    pub fn xtask_commands(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for (job, j) in &self.jobs {
            for run in j.steps.iter().filter_map(|s| s.run.as_deref()) {
                for line in run.lines() {
                    if let Some(words) = xtask_words(line) {
                        out.push((job.clone(), words));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
/// The arguments of xtask on a shell line: after `cargo xtask`, the built binary
/// (`".../debug/xtask"`) or the release jobs' copy of it (`xtask-bin/xtask`), up to the end
/// of the command.
pub fn xtask_words(line: &str) -> Option<Vec<String>> {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_string())
        .collect();
    let at = words.iter().enumerate().position(|(i, w)| {
        let after_cargo = w == "xtask"
            && i > 0
            && (words[i - 1].ends_with("cargo") || words[i - 1].ends_with("cargo)"));
        // The binary is the command when only sudo and its options come before it (not
        // `cp .../debug/xtask xtask-bin/`, not `chmod +x xtask-bin/xtask`).
        let runs_binary = (w.ends_with("/debug/xtask") || w.ends_with("xtask-bin/xtask"))
            && words[..i].iter().all(|b| b == "sudo" || b.starts_with('-'));
        after_cargo || runs_binary
    })?;
    let mut args = Vec::new();
    for w in &words[at + 1..] {
        // The command ends at a shell operator or the close of a command substitution.
        if w.starts_with(['>', '|', ';', '&']) {
            break;
        }
        if let Some(last) = w.strip_suffix(')') {
            if !last.is_empty() {
                args.push(last.to_string());
            }
            break;
        }
        args.push(w.clone());
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtask_lines_are_found_in_their_shell_forms() {
        assert_eq!(
            xtask_words(
                r#"echo "cells=$(cargo xtask matrix --json --libc all)" >> "$GITHUB_OUTPUT""#
            ),
            Some(vec![
                "matrix".into(),
                "--json".into(),
                "--libc".into(),
                "all".into()
            ])
        );
        assert_eq!(
            xtask_words(
                r#"sudo --preserve-env=PATH "$(command -v cargo)" xtask image --libc "$LIBC""#
            ),
            Some(vec!["image".into(), "--libc".into(), "$LIBC".into()])
        );
        assert_eq!(
            xtask_words(r#"sudo --preserve-env=PATH xtask-bin/xtask vmtest --arch "$ARCH""#),
            Some(vec!["vmtest".into(), "--arch".into(), "$ARCH".into()])
        );
        assert_eq!(xtask_words("chmod +x xtask-bin/xtask"), None);
        assert_eq!(
            xtask_words(r#"cp "${CARGO_TARGET_DIR:-target}/debug/xtask" xtask-bin/"#),
            None
        );
        assert_eq!(xtask_words("cargo fmt --all -- --check"), None);
        assert_eq!(xtask_words("echo xtask is a word"), None);
    }

    #[test]
    fn both_workflows_read() {
        for w in [WorkflowName::Ci, WorkflowName::Release] {
            let wf = Workflow::load(&w.file()).unwrap();
            assert!(!wf.xtask_commands().is_empty(), "{w:?}");
            assert!(wf
                .actions()
                .iter()
                .any(|a| a.starts_with("actions/checkout@")));
        }
    }
}
