//! `cargo xtask bench build`: one bucket built our way (headers package, parallel, cached)
//! vs upstream's (full kernel source, `make prepare`, its Makefile's per-object compiles),
//! medians of rounds from scratch.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::{Arch, Bucket};
use serde::Serialize;
use xshell::cmd;

use super::{flush_page_cache_writes, median};
use crate::compile::{self, Backend, BuildOptions, Precompiled, Project};
use crate::{host, process};

#[derive(Debug, Args)]
pub struct BuildBench {
    /// The bucket to build (its Debian suite must be the host's, for `linux-source-<bucket>`)
    #[arg(long, default_value = "6.1")]
    pub bucket: Bucket,
    /// Rounds of (ours, upstream's), each from scratch; the medians are compared (a shared
    /// VM's disk makes single runs of either vary by half)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

/// What upstream's way needs on top of our setup.
const SOURCE_BUILD_PACKAGES: &[&str] = &[
    "make",
    "flex",
    "bison",
    "bc",
    "libssl-dev",
    "libelf-dev",
    "dpkg-dev",
    // `make headers_install` copies the tree with it.
    "rsync",
];

#[derive(Debug, Clone, Serialize)]
struct BuildBenchReport {
    bucket: String,
    objects: usize,
    ours_cold_s: f64,
    ours_fetch_s: f64,
    ours_noop_s: f64,
    upstream_source_package: String,
    upstream_download_s: f64,
    upstream_unpack_s: f64,
    upstream_prepare_s: f64,
    /// Upstream's Makefile: every object parses the kernel headers itself.
    upstream_compile_s: f64,
    upstream_total_s: f64,
    speedup_cold: f64,
    /// For comparison: our compiles (precompiled headers) on upstream's prepared tree, and the
    /// ratio had upstream adopted them (what this benchmark used to call upstream's compile).
    upstream_tree_our_compile_s: f64,
    speedup_cold_vs_upstream_with_our_compile: f64,
}

pub fn run(o: BuildBench) -> Result<()> {
    let missing = host::missing_packages(SOURCE_BUILD_PACKAGES.iter().copied());
    if !missing.is_empty() {
        eprintln!(
            "bench build: installing what a kernel source build needs: {}",
            missing.join(" ")
        );
        host::apt_install(&missing, false)?;
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rounds = Vec::new();
    // Every round's trees stay until the last round is measured: deleting a gigabyte of
    // source on a disk mounted with `discard` slows every file creation for seconds after
    // (5000 creates: 0.4 s, right after such a delete 4.5 s here), which would time the
    // previous round's clean-up instead of the next round's build.
    let mut scratches = Vec::new();
    for round in 1..=o.runs.max(1) {
        let scratch = tempfile::Builder::new()
            .prefix("kc-bench-build-")
            .tempdir_in(crate::paths::project_root().join("target"))?;
        let r = build_bench_round(o.bucket, threads, scratch.path())?;
        scratches.push(scratch);
        eprintln!(
            "bench build: round {round}: ours {:.2} s, upstream {:.2} s, {:.1}x",
            r.ours_cold_s, r.upstream_total_s, r.speedup_cold
        );
        rounds.push(r);
    }
    let med = |f: fn(&BuildBenchReport) -> f64| median(rounds.iter().map(f).collect());
    let report = BuildBenchReport {
        bucket: o.bucket.to_string(),
        objects: rounds[0].objects,
        ours_cold_s: med(|r| r.ours_cold_s),
        ours_fetch_s: med(|r| r.ours_fetch_s),
        ours_noop_s: med(|r| r.ours_noop_s),
        upstream_source_package: rounds[0].upstream_source_package.clone(),
        upstream_download_s: med(|r| r.upstream_download_s),
        upstream_unpack_s: med(|r| r.upstream_unpack_s),
        upstream_prepare_s: med(|r| r.upstream_prepare_s),
        upstream_compile_s: med(|r| r.upstream_compile_s),
        upstream_total_s: med(|r| r.upstream_total_s),
        speedup_cold: med(|r| r.upstream_total_s) / med(|r| r.ours_cold_s),
        upstream_tree_our_compile_s: med(|r| r.upstream_tree_our_compile_s),
        speedup_cold_vs_upstream_with_our_compile: med(|r| {
            r.upstream_total_s - r.upstream_compile_s + r.upstream_tree_our_compile_s
        }) / med(|r| r.ours_cold_s),
    };
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "median": report,
                "rounds": rounds,
            }))?
        );
        return Ok(());
    }
    println!(
        "bench build: bucket {}, {} objects, {threads} parallel compiles, median of {} rounds",
        report.bucket,
        report.objects,
        rounds.len()
    );
    print_build_bench(&report);
    Ok(())
}

/// A cold build of one bucket of `arch` our way, in `dir` (empty kernel cache and compile
/// cache): its seconds, the report, and the seconds of the no-op rebuild that follows.
pub(super) fn cold_bucket_build(
    dir: &Path,
    bucket: Bucket,
    arch: Arch,
    threads: usize,
) -> Result<(f64, compile::BuildReport, f64)> {
    let opts = BuildOptions {
        buckets: vec![bucket],
        jobs: Some(threads),
        arch,
        ..BuildOptions::everything(Backend::Host, None)
    };
    let project = Project {
        root: crate::paths::project_root(),
        artifacts: dir.join("artifacts"),
        work: dir.join("work"),
        kernel_cache: dir.join("cache"),
    };
    // Cold: the build downloads and unpacks the headers itself (while the toolchain is
    // probed), then compiles; the report says when the trees were ready. Each build starts
    // with no dirty pages left by anything before it (an earlier run's gigabyte of source).
    flush_page_cache_writes()?;
    let t = Instant::now();
    let r = compile::build(&project, &opts)?;
    let cold = t.elapsed().as_secs_f64();
    if !r.failures.is_empty() {
        bail!("our {arch} build failed: {}", r.failures.join("\n"));
    }
    let t = Instant::now();
    compile::build(&project, &opts)?;
    Ok((cold, r, t.elapsed().as_secs_f64()))
}

/// One round: our cold build and upstream's, each in a fresh scratch directory.
fn build_bench_round(bucket: Bucket, threads: usize, scratch: &Path) -> Result<BuildBenchReport> {
    let root = crate::paths::project_root();
    let (ours_cold, r, ours_noop) =
        cold_bucket_build(&scratch.join("ours"), bucket, Arch::Amd64, threads)?;
    let ours_fetch = r.fetch_seconds;
    let objects = r.compiled;

    // Upstream's: the full source tree of the same series, prepared, then the same compiles.
    let src_dir = scratch.join("upstream");
    std::fs::create_dir_all(&src_dir)?;
    let pkg = format!("linux-source-{}", bucket);
    flush_page_cache_writes()?;
    let t = Instant::now();
    let sh = process::shell_in(&src_dir);
    process::output(cmd!(sh, "apt-get download {pkg}")).with_context(|| {
        format!("the host's apt has no {pkg}: pick the bucket of the host's Debian release")
    })?;
    let download = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let deb = std::fs::read_dir(&src_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download wrote no .deb")?;
    let source_package = deb
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    process::output(cmd!(sh, "dpkg-deb -x {deb} {src_dir}"))?;
    let tarball = src_dir.join(format!("usr/src/{pkg}.tar.xz"));
    process::output(cmd!(sh, "tar -xf {tarball} -C {src_dir}"))?;
    let tree_dir = src_dir.join(&pkg);
    let unpack = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sh = process::shell_in(&tree_dir);
    let jobs = format!("-j{threads}");
    // Upstream's build.sh: `make defconfig`, `make scripts`, `make prepare`, `make
    // headers_install` (its compiles add the installed `usr/include`). Two differences, both
    // in its favour or needed: make runs `-j` as wide as ours (build.sh runs it serially), and
    // CC=clang (a gcc-prepared tree's autoconf.h must be edited by hand before clang compiles
    // against it, as its README says for 5.4+).
    process::output(cmd!(sh, "make CC=clang defconfig"))?;
    for target in ["scripts", "prepare", "headers_install"] {
        process::output(cmd!(sh, "make CC=clang {jobs} {target}"))?;
    }
    let prepare = t.elapsed().as_secs_f64();
    let tree = crate::kernels::fetch::HeaderTree {
        series: bucket.to_string(),
        arch: Arch::Amd64,
        release: pkg.clone(),
        kernel_version: bucket.to_string(),
        flavour_dir: tree_dir.clone(),
        common_dir: tree_dir.clone(),
        patches: vec![],
    };
    let compile_on_tree = |name: &str, precompiled| -> Result<f64> {
        let project = Project {
            root: root.clone(),
            artifacts: scratch.join(name).join("artifacts"),
            work: scratch.join(name).join("work"),
            kernel_cache: scratch.join(name).join("cache"),
        };
        let t = Instant::now();
        compile::compile_legacy_tree(&project, &tree, bucket, threads, precompiled)?;
        Ok(t.elapsed().as_secs_f64())
    };
    // Upstream's kernel/Makefile: clang then llc per object, `make -j` wide, no precompiled
    // headers. Then ours on the same tree, only to show what our compile alone is worth.
    let compile = compile_on_tree("up", Precompiled::None)?;
    let our_compile = compile_on_tree("up-our-compile", Precompiled::Layers)?;
    let total = download + unpack + prepare + compile;
    let report = BuildBenchReport {
        bucket: bucket.to_string(),
        objects,
        ours_cold_s: ours_cold,
        ours_fetch_s: ours_fetch,
        ours_noop_s: ours_noop,
        upstream_source_package: source_package,
        upstream_download_s: download,
        upstream_unpack_s: unpack,
        upstream_prepare_s: prepare,
        upstream_compile_s: compile,
        upstream_total_s: total,
        speedup_cold: total / ours_cold,
        upstream_tree_our_compile_s: our_compile,
        speedup_cold_vs_upstream_with_our_compile: (total - compile + our_compile) / ours_cold,
    };
    Ok(report)
}

fn print_build_bench(r: &BuildBenchReport) {
    println!(
        "  ours, cold (fetch headers packages, unpack, compile)   {:>8.2} s",
        r.ours_cold_s
    );
    println!(
        "    of which until the headers were downloaded + unpacked {:>7.2} s",
        r.ours_fetch_s
    );
    println!(
        "  ours, no-op rebuild                                    {:>8.2} s",
        r.ours_noop_s
    );
    println!("  upstream ({}):", r.upstream_source_package);
    println!(
        "    download                                             {:>8.2} s",
        r.upstream_download_s
    );
    println!(
        "    unpack (dpkg-deb, tar)                               {:>8.2} s",
        r.upstream_unpack_s
    );
    println!(
        "    make defconfig, scripts, prepare, headers_install    {:>8.2} s",
        r.upstream_prepare_s
    );
    println!(
        "    the same objects, per object as its Makefile (no PCH) {:>7.2} s",
        r.upstream_compile_s
    );
    println!(
        "    total                                                {:>8.2} s",
        r.upstream_total_s
    );
    println!("  ours is {:.1}x faster cold", r.speedup_cold);
    println!(
        "  (our compiles on upstream's tree {:.2} s: had upstream our compile, {:.1}x)",
        r.upstream_tree_our_compile_s, r.speedup_cold_vs_upstream_with_our_compile
    );
}
