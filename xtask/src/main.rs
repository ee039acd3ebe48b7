//! `cargo xtask`: the kernel-collector pipeline. This file only parses the command line and
//! dispatches; each workflow lives in its own module.

mod accounting;
mod atomic;
mod bench;
mod bpf_codegen;
mod check_kernel;
mod cli;
mod collectors;
mod compare;
mod compile;
mod cpio;
mod debian;
mod dist;
mod download;
mod fuzz;
mod go;
mod host;
mod image;
mod kernels;
// The licence table exists to hold the tree to it.
#[cfg(test)]
mod licences;
mod matrix;
mod names;
mod new_collector;
mod package;
mod patch;
mod paths;
mod process;
mod publish;
mod rehearse;
#[cfg(test)]
mod report_fixtures;
mod schema;
mod setup;
mod signing;
mod tarball;
mod test;
mod tools;
mod verify;
mod vmlinux;
mod vmtest;
mod workflows;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, check and release the kernel-collector eBPF collectors",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the Debian packages the pipeline needs (idempotent)
    Setup(setup::SetupOptions),
    /// The kernel matrix: lock it to Debian packages, fetch headers and images, list it
    #[command(subcommand)]
    Kernels(kernels::Command),
    /// Build the Docker build images (the Debian base is bootstrapped locally when it cannot be pulled)
    Image(image::ImageOptions),
    /// Compile the collectors: legacy objects per bucket, CO-RE objects, skeletons, the loader
    Build(compile::BuildOptions),
    /// Verify objects (ELF, BTF, BTF.ext, programs, maps, CO-RE relocations) in files, directories or tarballs
    Verify(verify::VerifyOptions),
    /// Every program, map and counter name of the objects, and the source line that makes it
    Names(names::NamesOptions),
    /// Write schema/loader-report.schema.json, the JSON Schema of kc-loader's report, from its Rust type
    Schema(schema::SchemaOptions),
    /// The (bucket, libc) build cells, as GitHub Actions' strategy.matrix takes them
    Matrix(matrix::MatrixOptions),
    /// Build the static tools a workflow's later jobs share (kc-select, kc-agent) into one directory
    Tools(tools::ToolsOptions),
    /// Build one cell as a docker cell's request file asks (what runs inside the container)
    #[command(hide = true)]
    BuildCell {
        /// The request (compile::request::CellRequest, JSON)
        request: std::path::PathBuf,
    },
    /// Start a collector: a one-counter tracepoint collector and every file derivable from its name (docs/adding-a-collector.md)
    NewCollector(new_collector::NewCollectorOptions),
    /// The Go consumer example (examples/go): pin the Debian Go packages it builds with, build it
    #[command(subcommand)]
    Go(go::Command),
    /// Package the cells into signed, reproducible release tarballs in artifacts/release
    Package(package::PackageOptions),
    /// Create (or find) the GitHub release of a tag and upload artifacts/release/ (token: GITHUB_TOKEN)
    Publish(publish::PublishOptions),
    /// Run a workflow file under act on this machine, end to end (release: to a stand-in of GitHub's API)
    Rehearse(rehearse::RehearseOptions),
    /// Generate a minisign key pair for signing releases
    Keygen(signing::KeygenOptions),
    /// Verify a release directory: signatures, checksums, and each tarball against its manifest
    CheckRelease(signing::CheckReleaseOptions),
    /// Boot every kernel of the matrix under qemu and prove each object loads, attaches and counts
    Vmtest(vmtest::VmtestOptions),
    /// Fuzz the object verifier (cargo fuzz) on a corpus seeded from artifacts/cells
    Fuzz(fuzz::FuzzOptions),
    /// Say whether a kernel has what the collectors need, and which bucket it selects
    CheckKernel(check_kernel::CheckKernelOptions),
    /// Regenerate co-re/vmlinux.h from a kernel's BTF
    Vmlinux(vmlinux::VmlinuxOptions),
    /// Compare two artifacts/ trees byte for byte (release manifests up to their source commit)
    Compare(compare::CompareOptions),
    /// The main job: check the lock, fetch headers and images, build every cell, package the release
    Dist(dist::DistOptions),
    /// Run every test: unit and integration tests, then end-to-end checks against the mirror
    Test(test::TestOptions),
    /// Benchmarks, each side by side with its baseline in one run
    #[command(subcommand)]
    Bench(bench::Command),
    /// Lower legacy bitcode to BPF objects through libLLVM (the build runs it)
    #[command(hide = true)]
    BpfCodegen(bpf_codegen::BpfCodegenOptions),
}

fn main() {
    process::forget_cargo_run();
    if let Err(e) = run(Cli::parse().command) {
        // The chain of contexts says what failed and what to do; a backtrace would bury it.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Setup(o) => setup::run(o),
        Command::Kernels(c) => kernels::run(c),
        Command::Image(o) => image::run(o),
        Command::Build(o) => compile::run(o),
        Command::Verify(o) => verify::run(o),
        Command::Names(o) => names::run(o),
        Command::Schema(o) => schema::run(o),
        Command::Fuzz(o) => fuzz::run(o),
        Command::Vmtest(o) => vmtest::run(o.with_narrowing_from_env()?),
        Command::Matrix(o) => matrix::run(o),
        Command::Tools(o) => tools::run(o),
        Command::Go(c) => go::run(c),
        Command::NewCollector(o) => new_collector::run(o),
        Command::BuildCell { request } => compile::request::build_cell(&request),
        Command::Package(o) => package::package(o),
        Command::Keygen(o) => signing::keygen(o),
        Command::Publish(o) => publish::run(o),
        Command::Rehearse(o) => rehearse::run(o),
        Command::CheckRelease(o) => signing::check_release(o),
        Command::CheckKernel(o) => check_kernel::run(o),
        Command::Vmlinux(o) => vmlinux::run(o),
        Command::Compare(o) => compare::run(o),
        Command::Dist(o) => dist::run(o),
        Command::Test(o) => test::run(o),
        Command::Bench(c) => bench::run(c),
        Command::BpfCodegen(o) => bpf_codegen::run(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::{Workflow, WorkflowName};

    /// A safe value for each variable the workflows' command lines use, from what the
    /// workflow would put there (a matrix cell of `cargo xtask matrix`, a tag).
    fn safe_value(expression: &str) -> Option<String> {
        let m = kernels::spec::Matrix::load(&paths::kernels_toml()).ok()?;
        let cell = matrix::cells(&m, &kc_common::Arch::RELEASED, &kc_common::Libc::ALL, &[])
            .ok()?
            .into_iter()
            .last()?;
        match expression.trim() {
            "${{ matrix.bucket }}" => Some(cell.bucket.to_string()),
            "${{ matrix.arch }}" => Some(cell.arch.to_string()),
            "${{ matrix.libc }}" => Some(cell.libc.to_string()),
            "${{ github.ref_name }}" => Some("v1.2.3".into()),
            _ => None,
        }
    }

    /// Every `cargo xtask ...` line of both workflows goes through the real command-line
    /// parser, with its variables filled in as the workflow fills them: a verb, flag or value
    /// that the workflows use cannot go missing.
    #[test]
    fn every_xtask_command_of_the_workflows_parses() {
        let mut checked = 0;
        for name in [WorkflowName::Ci, WorkflowName::Release] {
            let wf = Workflow::load(&name.file()).unwrap();
            for (job, words) in wf.xtask_commands() {
                let j = &wf.jobs[&job];
                let args: Vec<String> = words
                    .iter()
                    .map(|w| match w.strip_prefix('$') {
                        None => w.clone(),
                        Some(var) => {
                            let steps_env = j.steps.iter().find_map(|s| s.env.get(var));
                            let expr = j.env.get(var).or(steps_env).unwrap_or_else(|| {
                                panic!("{name:?}/{job}: ${var} is set nowhere in the job")
                            });
                            safe_value(expr).unwrap_or_else(|| {
                                panic!("{name:?}/{job}: no safe test value for {expr}")
                            })
                        }
                    })
                    .collect();
                let argv = std::iter::once("cargo xtask".to_string()).chain(args.clone());
                if let Err(e) = Cli::try_parse_from(argv) {
                    panic!(
                        "{name:?}/{job}: `cargo xtask {}` does not parse:\n{e}",
                        args.join(" ")
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} command lines found");
    }
}
