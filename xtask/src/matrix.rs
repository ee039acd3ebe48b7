//! `cargo xtask matrix`: the CD's jobs, in the shape GitHub Actions' `strategy.matrix` takes
//! through `fromJSON`: the build cells (every released architecture's buckets for each libc)
//! and the release's vmtest runs. (The kernel matrix itself is `kernels.toml`, read by
//! `kernels::spec`.)

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kc_common::{Arch, Bucket, Libc};
use serde::Serialize;

use crate::cli::LibcChoice;
use crate::kernels::spec::Matrix;
use crate::paths;

#[derive(Debug, Args)]
pub struct MatrixOptions {
    /// Print `{"include": [...]}` for `strategy.matrix`
    #[arg(long)]
    pub json: bool,
    /// The jobs of this libc, or of all
    #[arg(long, value_enum, default_value = "all")]
    pub libc: LibcChoice,
    /// Which jobs: the build cells, or the release's vmtest runs
    #[arg(long, value_enum, default_value = "cells")]
    pub of: Jobs,
    /// The cells of these buckets only (repeatable); default: the buckets `KC_CELL_BUCKETS`
    /// lists (comma-separated: how a workflow's variable narrows it), else every bucket
    #[arg(long = "bucket", value_name = "SERIES")]
    pub buckets: Vec<Bucket>,
}

/// The environment variable that narrows the cells when no `--bucket` is given (the release
/// workflow's matrix job sets it from a repository variable; the rehearsal builds fewer).
pub const BUCKETS_VAR: &str = "KC_CELL_BUCKETS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Jobs {
    /// One per (bucket, architecture, libc); each also builds its architecture's CO-RE cell
    Cells,
    /// One per (architecture, libc) the release boots every kernel with
    Vmtest,
}

/// One CI cell job: a bucket's legacy objects (and the CO-RE cell) for an architecture and libc.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub bucket: Bucket,
    pub arch: Arch,
    pub libc: Libc,
}

/// One vmtest job of the release: every kernel of `arch`, with `libc`'s loader.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VmtestRun {
    pub arch: Arch,
    pub libc: Libc,
}

/// The cells of every bucket of `arches` for `libcs`; only those of `only` where it names any
/// (each must be a bucket of every architecture).
pub fn cells(m: &Matrix, arches: &[Arch], libcs: &[Libc], only: &[Bucket]) -> Result<Vec<Cell>> {
    let mut out = Vec::new();
    for &arch in arches {
        let am = m.for_arch(arch).with_context(|| {
            format!("kernels.toml has no [arch.{arch}] table, and {arch} is released")
        })?;
        for b in only {
            if !am.kernel.iter().any(|k| k.bucket && k.series == *b) {
                anyhow::bail!("{b} is not a bucket of {arch} in kernels.toml");
            }
        }
        let chosen =
            |k: &&crate::kernels::spec::MatrixKernel| only.is_empty() || only.contains(&k.series);
        for k in am.kernel.iter().filter(|k| k.bucket).filter(chosen) {
            for &libc in libcs {
                out.push(Cell {
                    bucket: k.series,
                    arch,
                    libc,
                });
            }
        }
    }
    Ok(out)
}

/// The release boots every kernel of each architecture. GitHub's runners are amd64 with KVM:
/// there every libc's loader boots. Another architecture is emulated (TCG, each boot a few
/// minutes), so it boots with the loader it ships static, musl's; `package` refuses cells
/// whose BPF objects differ between libcs, so that boot proves glibc's objects too.
pub fn vmtest_runs(arches: &[Arch], libcs: &[Libc]) -> Vec<VmtestRun> {
    let mut out = Vec::new();
    for &arch in arches {
        for &libc in libcs {
            if arch == Arch::Amd64 || libc == Libc::Musl {
                out.push(VmtestRun { arch, libc });
            }
        }
    }
    out
}

pub fn run(o: MatrixOptions) -> Result<()> {
    let libcs = o.libc.libcs();
    let lines: Vec<serde_json::Value> = match o.of {
        Jobs::Cells => {
            let m = Matrix::load(&paths::kernels_toml())?;
            let only = if o.buckets.is_empty() {
                crate::cli::series_from_env(BUCKETS_VAR)?
            } else {
                o.buckets.clone()
            };
            cells(&m, &Arch::RELEASED, &libcs, &only)?
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?
        }
        Jobs::Vmtest => vmtest_runs(&Arch::RELEASED, &libcs)
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
    };
    if o.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "include": lines }))?
        );
    } else {
        for l in &lines {
            let fields: Vec<String> = l
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
                .collect();
            println!("{}", fields.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_ARCHES: &str = "flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\nbucket = true\n[[kernel]]\nseries = \"6.16\"\nsuites = [\"a\"]\n[[kernel]]\nseries = \"7.3\"\nsuites = [\"a\"]\nbucket = true\n[arch.arm64]\nflavour = \"y\"\nseries = [\"7.3\"]\n";

    #[test]
    fn every_bucket_of_every_architecture_times_every_libc() {
        let m = Matrix::parse(TWO_ARCHES).unwrap();
        let c = cells(&m, &Arch::ALL, &LibcChoice::All.libcs(), &[]).unwrap();
        let json = serde_json::to_string(&serde_json::json!({ "include": c })).unwrap();
        assert_eq!(
            json,
            r#"{"include":[{"arch":"amd64","bucket":"6.1","libc":"glibc"},{"arch":"amd64","bucket":"6.1","libc":"musl"},{"arch":"amd64","bucket":"7.3","libc":"glibc"},{"arch":"amd64","bucket":"7.3","libc":"musl"},{"arch":"arm64","bucket":"7.3","libc":"glibc"},{"arch":"arm64","bucket":"7.3","libc":"musl"}]}"#
        );
        assert_eq!(
            cells(&m, &[Arch::Arm64], &[Libc::Musl], &[]).unwrap().len(),
            1
        );
        // A released architecture the matrix does not cover is an error, not an empty list.
        let amd64_only = Matrix::parse(TWO_ARCHES.split("[arch.arm64]").next().unwrap()).unwrap();
        let e = cells(&amd64_only, &Arch::ALL, &[Libc::Musl], &[]).unwrap_err();
        assert!(e.to_string().contains("no [arch.arm64] table"), "{e}");
        // Narrowed to one bucket: that bucket's cells of every architecture and libc.
        let seven: Bucket = "7.3".parse().unwrap();
        let c = cells(&m, &Arch::ALL, &Libc::ALL, &[seven]).unwrap();
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|c| c.bucket == seven));
        let e = cells(&m, &Arch::ALL, &Libc::ALL, &["6.16".parse().unwrap()]).unwrap_err();
        assert!(
            e.to_string().contains("6.16 is not a bucket of amd64"),
            "{e}"
        );
    }

    #[test]
    fn the_release_boots_amd64_with_both_loaders_and_arm64_with_the_static_one() {
        let runs = vmtest_runs(&Arch::ALL, &Libc::ALL);
        let json = serde_json::to_string(&serde_json::json!({ "include": runs })).unwrap();
        assert_eq!(
            json,
            r#"{"include":[{"arch":"amd64","libc":"glibc"},{"arch":"amd64","libc":"musl"},{"arch":"arm64","libc":"musl"}]}"#
        );
        assert!(vmtest_runs(&[Arch::Arm64], &[Libc::Glibc]).is_empty());
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
        assert!(cli.o.json && cli.o.libc == LibcChoice::All && cli.o.of == Jobs::Cells);
        let cli = Cli::try_parse_from(["matrix", "--json", "--of", "vmtest"]).unwrap();
        assert_eq!(cli.o.of, Jobs::Vmtest);
        let m = Matrix::load(&paths::kernels_toml()).unwrap();
        let all = cells(&m, &Arch::RELEASED, &LibcChoice::All.libcs(), &[]).unwrap();
        let buckets: usize = Arch::RELEASED
            .iter()
            .map(|&a| {
                m.for_arch(a)
                    .unwrap()
                    .kernel
                    .iter()
                    .filter(|k| k.bucket)
                    .count()
            })
            .sum();
        assert_eq!(all.len(), buckets * Libc::ALL.len());
    }
}

#[cfg(test)]
mod workflow_tests {
    use crate::{paths, process};

    /// Runs a workflow linter from PyPI on the workflows; skips where it is not installed.
    fn lint(tool: &str, args: &[&str]) {
        if !process::exists(tool) {
            kc_common::skip::skip(
                &format!("workflows_pass_{tool}_needs_{tool}"),
                &format!("{tool} is not installed (`cargo xtask setup` installs it from PyPI)"),
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
