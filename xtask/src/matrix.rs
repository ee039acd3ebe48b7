//! `cargo xtask matrix`: the CI build cells (every bucket for each libc), in the shape GitHub
//! Actions' `strategy.matrix` takes through `fromJSON`. (The kernel matrix itself is
//! `kernels.toml`, read by `kernels::spec`.)

use anyhow::Result;
use clap::Args;
use kc_common::{Bucket, Libc};
use serde::Serialize;

use crate::cli::LibcChoice;
use crate::kernels::spec::Matrix;
use crate::paths;

#[derive(Debug, Args)]
pub struct MatrixOptions {
    /// Print `{"include": [{"bucket": ..., "libc": ...}, ...]}`
    #[arg(long)]
    pub json: bool,
    /// The cells of this libc, or of all
    #[arg(long, value_enum, default_value = "all")]
    pub libc: LibcChoice,
}

/// One CI cell job: a bucket's legacy objects (and the CO-RE cell) for a libc.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub bucket: Bucket,
    pub libc: Libc,
}

pub fn cells(m: &Matrix, libcs: &[Libc]) -> Vec<Cell> {
    let mut out = Vec::new();
    for k in m.kernel.iter().filter(|k| k.bucket) {
        for &libc in libcs {
            out.push(Cell {
                bucket: k.series,
                libc,
            });
        }
    }
    out
}

pub fn run(o: MatrixOptions) -> Result<()> {
    let cells = cells(&Matrix::load(&paths::kernels_toml())?, &o.libc.libcs());
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
        let c = cells(&m, &LibcChoice::All.libcs());
        let json = serde_json::to_string(&serde_json::json!({ "include": c })).unwrap();
        assert_eq!(
            json,
            r#"{"include":[{"bucket":"6.1","libc":"glibc"},{"bucket":"6.1","libc":"musl"}]}"#
        );
        assert_eq!(cells(&m, &LibcChoice::Musl.libcs()).len(), 1);
    }

    /// What both workflows run to fill their matrix.
    #[test]
    fn the_workflows_matrix_command_runs() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: MatrixOptions,
        }
        let cli = Cli::try_parse_from(["matrix", "--json", "--libc", "all"]).unwrap();
        assert!(cli.o.json && cli.o.libc == LibcChoice::All);
        let m = Matrix::load(&paths::kernels_toml()).unwrap();
        let all = cells(&m, &cli.o.libc.libcs());
        let buckets = m.kernel.iter().filter(|k| k.bucket).count();
        assert_eq!(all.len(), buckets * Libc::ALL.len());
    }
}

#[cfg(test)]
mod workflow_tests {
    use crate::{paths, process};

    /// Runs a workflow linter from PyPI on the workflows; skips where it is not installed.
    fn lint(tool: &str, args: &[&str]) {
        if !process::exists(tool) {
            eprintln!(
                "skipping: {tool} is not installed (`cargo xtask setup` installs it from PyPI)"
            );
            return;
        }
        let root = paths::project_root();
        let sh = process::shell_in(&root);
        if let Err(e) = process::output(xshell::cmd!(sh, "{tool} {args...}")) {
            panic!("{tool} found problems in .github/workflows:\n{e}");
        }
    }

    /// The workflows pass zizmor's audits (template injection, unpinned actions, credentials
    /// left in checkouts, excessive permissions, cache poisoning in release jobs, ...).
    #[test]
    fn workflows_pass_zizmor_needs_zizmor() {
        lint(
            "zizmor",
            &["--offline", "--no-progress", ".github/workflows"],
        );
    }

    /// The workflows pass actionlint (expressions, job graph, matrix, and the `run:` scripts
    /// through shellcheck).
    #[test]
    fn workflows_pass_actionlint_needs_actionlint() {
        lint(
            "actionlint",
            &[".github/workflows/ci.yml", ".github/workflows/release.yml"],
        );
    }
}
