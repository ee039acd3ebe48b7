//! `cargo xtask bench ...`: each benchmark runs ours and its baseline side by side in one run.

mod docker;

use std::process::Command as Process;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kc_common::Bucket;
use serde::Serialize;

use crate::debian::mirror::Mirror;
use crate::kernels::{self, fetch::Fetcher, matrix::Role};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cold fetch+unpack of one bucket's headers vs `apt-get download` + `dpkg-deb -x`; warm fetch
    Fetch(FetchBench),
    /// `verify` of every object under artifacts/ vs `bpftool btf dump file` of each; type counts must agree
    Verify(VerifyBench),
    /// Packaging of the full release vs GNU `tar --sort=name ... | xz -6` of the same files
    Package(PackageBench),
    /// vmtest: each kernel's time to boot and report (one at a time), then the matrix with --jobs 2
    Vmtest(VmtestBench),
    /// kc-install of the release from a loopback server vs curl + sha256sum -c + minisign -V + tar -x
    Install(InstallBench),
    /// One bucket built our way (headers package, parallel, cached) vs upstream's (full kernel
    /// source, `make defconfig scripts prepare`, then the same compiles); and a no-op rebuild
    Build(BuildBench),
    /// The full matrix (every bucket x both libcs) in our two images, cold and warm, vs one
    /// image per (kernel, libc) with the kernel baked in, built from scratch
    Docker(docker::DockerBench),
}

#[derive(Debug, Args)]
pub struct VmtestBench {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallBench {
    /// Runs of each, the median is reported
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

#[derive(Debug, Args)]
pub struct PackageBench {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyBench {
    /// Where the objects are
    #[arg(long, default_value = "artifacts/cells")]
    pub dir: std::path::PathBuf,
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct FetchBench {
    /// The bucket to fetch (default: the bucket of the host's Debian suite, 6.1)
    #[arg(long, default_value = "6.1")]
    pub bucket: Bucket,
    /// Warm runs to time
    #[arg(long, default_value_t = 10)]
    pub warm_runs: u32,
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: Command) -> Result<()> {
    match c {
        Command::Fetch(o) => fetch(o),
        Command::Build(o) => build_bench(o),
        Command::Verify(o) => verify_bench(o),
        Command::Package(o) => package_bench(o),
        Command::Vmtest(o) => vmtest_bench(o),
        Command::Install(o) => install_bench(o),
        Command::Docker(o) => docker::run(o),
    }
}

#[derive(Debug, Serialize)]
struct FetchReport {
    bucket: String,
    release: String,
    download_bytes: u64,
    ours_cold_s: f64,
    ours_download_s: f64,
    baseline: String,
    baseline_cold_s: f64,
    baseline_download_s: f64,
    warm_runs: u32,
    warm_median_s: f64,
    warm_max_s: f64,
}

fn fetch(o: FetchBench) -> Result<()> {
    let (_, lock) = kernels::load_checked_lock()?;
    let k = kernels::select(&lock, &[o.bucket], false)?[0];
    let pkgs = [k.package(Role::HeadersCommon), k.package(Role::Headers)];
    let pkgs: Vec<_> = pkgs.into_iter().flatten().collect();
    if pkgs.len() != 2 {
        bail!("series {} is not a bucket", k.series);
    }
    let mirror = Mirror::discover()?;
    let scratch = tempfile::tempdir()?;

    // Ours, cold: empty cache, download + verify + unpack.
    let cache = scratch.path().join("cache");
    let t = Instant::now();
    let mut f = Fetcher::with_mirror(cache.clone(), mirror.clone());
    for p in &pkgs {
        f.deb(&k.suite, p)?;
    }
    let ours_download = t.elapsed().as_secs_f64();
    f.headers(k)?;
    let ours_cold = t.elapsed().as_secs_f64();

    // Baseline, cold: apt-get download (when the host's apt knows the exact versions) or curl,
    // then dpkg-deb -x of both packages.
    let base = scratch.path().join("baseline");
    std::fs::create_dir_all(base.join("tree"))?;
    let t = Instant::now();
    let specs: Vec<String> = pkgs
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    let apt_ok = Process::new("apt-get")
        .arg("download")
        .args(&specs)
        .current_dir(&base)
        .output()
        .is_ok_and(|o| o.status.success());
    let baseline_name = if apt_ok {
        "apt-get download + dpkg-deb -x"
    } else {
        for p in &pkgs {
            let url = mirror.url(&k.suite, &p.filename);
            run_ok(
                Process::new("curl")
                    .args(["-fsSLO", &url])
                    .current_dir(&base),
            )?;
        }
        "curl (the host's apt lacks the locked versions) + dpkg-deb -x"
    };
    let baseline_download = t.elapsed().as_secs_f64();
    for entry in std::fs::read_dir(&base)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            run_ok(
                Process::new("dpkg-deb")
                    .arg("-x")
                    .arg(&path)
                    .arg(base.join("tree")),
            )?;
        }
    }
    let baseline_cold = t.elapsed().as_secs_f64();

    // Ours, warm: the whole `cargo xtask kernels fetch` process against the filled cache.
    let exe = std::env::current_exe()?;
    let mut warm = Vec::new();
    for _ in 0..o.warm_runs {
        let t = Instant::now();
        run_ok(
            Process::new(&exe)
                .args(["kernels", "fetch", "--bucket", &o.bucket.to_string()])
                .env("KC_CACHE_DIR", &cache),
        )?;
        warm.push(t.elapsed().as_secs_f64());
    }
    warm.sort_by(f64::total_cmp);
    let report = FetchReport {
        bucket: k.series.to_string(),
        release: k.release.clone(),
        download_bytes: pkgs.iter().map(|p| p.size).sum(),
        ours_cold_s: ours_cold,
        ours_download_s: ours_download,
        baseline: baseline_name.into(),
        baseline_cold_s: baseline_cold,
        baseline_download_s: baseline_download,
        warm_runs: o.warm_runs,
        warm_median_s: warm.get(warm.len() / 2).copied().unwrap_or(0.0),
        warm_max_s: warm.last().copied().unwrap_or(0.0),
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "bench fetch: bucket {} ({}), {:.1} MiB of .debs",
            report.bucket,
            report.release,
            report.download_bytes as f64 / 1048576.0
        );
        println!(
            "  {:<58} {:>8} {:>8} {:>8}",
            "", "download", "unpack", "total"
        );
        let row = |name: &str, dl: f64, total: f64| {
            println!("  {name:<58} {dl:>8.2} {:>8.2} {total:>8.2} s", total - dl)
        };
        row(
            "ours, cold (download + SHA256, unpack in Rust)",
            report.ours_download_s,
            report.ours_cold_s,
        );
        row(
            &report.baseline,
            report.baseline_download_s,
            report.baseline_cold_s,
        );
        println!(
            "  {:<58} {:>8.3} s median, {:.3} s max",
            format!("ours, warm (`kernels fetch`, {} runs)", report.warm_runs),
            report.warm_median_s,
            report.warm_max_s
        );
    }
    Ok(())
}

/// `sync`: writes back dirty pages, so that a timed step does not pay for earlier ones'.
fn flush_page_cache_writes() -> Result<()> {
    run_ok(&mut Process::new("sync"))
}

fn run_ok(cmd: &mut Process) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
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
    upstream_compile_s: f64,
    upstream_total_s: f64,
    speedup_cold: f64,
}

fn build_bench(o: BuildBench) -> Result<()> {
    let sh = xshell::Shell::new()?;
    let missing: Vec<&str> = SOURCE_BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let format = "-f=${Status}";
            xshell::cmd!(sh, "dpkg-query -W {format} {p}")
                .quiet()
                .ignore_stderr()
                .read()
                .map_or(true, |s| !s.contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench build: installing what a kernel source build needs: {}",
            missing.join(" ")
        );
        xshell::cmd!(
            sh,
            "apt-get install -y -q --no-install-recommends {missing...}"
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rounds = Vec::new();
    for round in 1..=o.runs.max(1) {
        let r = build_bench_round(o.bucket, threads)?;
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

/// One round: our cold build and upstream's, each in a fresh scratch directory.
fn build_bench_round(bucket: Bucket, threads: usize) -> Result<BuildBenchReport> {
    let scratch = tempfile::Builder::new()
        .prefix("kc-bench-build-")
        .tempdir_in(crate::paths::project_root().join("target"))?;
    let root = crate::paths::project_root();
    let opts = crate::build::BuildOptions {
        backend: Some(crate::build::Backend::Host),
        libc: None,
        buckets: vec![bucket],
        all: false,
        core: false,
        debug: false,
        jobs: Some(threads),
        json: false,
    };

    // Ours: empty kernel cache and compile cache.
    let ours = crate::build::Project {
        root: root.clone(),
        artifacts: scratch.path().join("ours/artifacts"),
        work: scratch.path().join("ours/work"),
        kernel_cache: scratch.path().join("ours/cache"),
    };
    // Cold: the build downloads and unpacks the headers itself (while the toolchain is
    // probed), then compiles; the report says when the trees were ready. Each side starts
    // with no dirty pages left by anything before it (an earlier run's gigabyte of source).
    flush_page_cache_writes()?;
    let t = Instant::now();
    let r = crate::build::build(&ours, &opts)?;
    let ours_cold = t.elapsed().as_secs_f64();
    let ours_fetch = r.fetch_seconds;
    if !r.failures.is_empty() {
        bail!("our build failed: {}", r.failures.join("\n"));
    }
    let objects = r.compiled;
    let t = Instant::now();
    crate::build::build(&ours, &opts)?;
    let ours_noop = t.elapsed().as_secs_f64();

    // Upstream's: the full source tree of the same series, prepared, then the same compiles.
    let src_dir = scratch.path().join("upstream");
    std::fs::create_dir_all(&src_dir)?;
    let pkg = format!("linux-source-{}", bucket);
    flush_page_cache_writes()?;
    let t = Instant::now();
    run_ok(
        Process::new("apt-get")
            .args(["download", &pkg])
            .current_dir(&src_dir),
    )
    .with_context(|| {
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
    run_ok(Process::new("dpkg-deb").arg("-x").arg(&deb).arg(&src_dir))?;
    let tarball = src_dir.join(format!("usr/src/{pkg}.tar.xz"));
    run_ok(
        Process::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src_dir),
    )?;
    let tree_dir = src_dir.join(&pkg);
    let unpack = t.elapsed().as_secs_f64();
    let t = Instant::now();
    run_ok(
        Process::new("make")
            .args(["CC=clang", "defconfig"])
            .current_dir(&tree_dir),
    )?;
    run_ok(
        Process::new("make")
            .args(["CC=clang", &format!("-j{threads}"), "scripts", "prepare"])
            .current_dir(&tree_dir),
    )?;
    let prepare = t.elapsed().as_secs_f64();
    let upstream = crate::build::Project {
        root: root.clone(),
        artifacts: scratch.path().join("up/artifacts"),
        work: scratch.path().join("up/work"),
        kernel_cache: scratch.path().join("up/cache"),
    };
    let tree = crate::kernels::fetch::HeaderTree {
        series: bucket.to_string(),
        release: pkg.clone(),
        kernel_version: bucket.to_string(),
        flavour_dir: tree_dir.clone(),
        common_dir: tree_dir.clone(),
        patches: vec![],
    };
    let t = Instant::now();
    crate::build::compile_legacy_tree(&upstream, &tree, bucket, threads)?;
    let compile = t.elapsed().as_secs_f64();
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
        "    make defconfig scripts prepare                       {:>8.2} s",
        r.upstream_prepare_s
    );
    println!(
        "    the same compiles                                    {:>8.2} s",
        r.upstream_compile_s
    );
    println!(
        "    total                                                {:>8.2} s",
        r.upstream_total_s
    );
    println!("  ours is {:.1}x faster cold", r.speedup_cold);
}

#[derive(Debug, Serialize)]
struct VerifyBenchReport {
    objects: usize,
    ours_s: f64,
    bpftool_s: f64,
    speedup: f64,
    type_counts_equal: bool,
}

fn verify_bench(o: VerifyBench) -> Result<()> {
    let dir = if o.dir.is_absolute() {
        o.dir.clone()
    } else {
        crate::paths::project_root().join(&o.dir)
    };
    // Ours: read, parse and check every object (what `cargo xtask verify` does).
    let t = Instant::now();
    let groups = crate::verify::collect(std::slice::from_ref(&dir))?;
    let results: Vec<_> = groups
        .iter()
        .flat_map(crate::verify::verify_group)
        .collect();
    let ours = t.elapsed().as_secs_f64();
    if results.is_empty() {
        bail!(
            "no objects under {}; run `cargo xtask build` first",
            dir.display()
        );
    }
    // Baseline: one `bpftool btf dump file X` per object.
    let bpftool = crate::build::toolchain::Toolchain::detect()?.bpftool;
    let t = Instant::now();
    let mut counts = Vec::new();
    for r in &results {
        let out = Process::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(&r.file)
            .output()?;
        if !out.status.success() {
            bail!(
                "bpftool btf dump file {} failed: {}",
                r.file,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        counts.push(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with('['))
                .count(),
        );
    }
    let theirs = t.elapsed().as_secs_f64();
    let mismatches: Vec<String> = results
        .iter()
        .zip(&counts)
        .filter(|(r, c)| r.report.btf_types != **c)
        .map(|(r, c)| format!("{}: ours {}, bpftool {c}", r.file, r.report.btf_types))
        .collect();
    let report = VerifyBenchReport {
        objects: results.len(),
        ours_s: ours,
        bpftool_s: theirs,
        speedup: theirs / ours,
        type_counts_equal: mismatches.is_empty(),
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "bench verify: {} objects under {}",
            report.objects,
            dir.display()
        );
        println!(
            "  ours (ELF, BTF, BTF.ext, maps, relocations, cell rules)  {:>8.3} s",
            report.ours_s
        );
        println!(
            "  bpftool btf dump file, one per object                   {:>8.3} s",
            report.bpftool_s
        );
        println!(
            "  ours is {:.0}x faster; BTF type counts equal for every object: {}",
            report.speedup, report.type_counts_equal
        );
    }
    if !mismatches.is_empty() {
        bail!(
            "BTF type counts differ from bpftool's:\n{}",
            mismatches.join("\n")
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct PackageBenchReport {
    tarballs: usize,
    ours_s: f64,
    ours_bytes: u64,
    gnu_tar_xz_s: f64,
    gnu_tar_xz_bytes: u64,
}

fn package_bench(o: PackageBench) -> Result<()> {
    let cells = crate::paths::project_root().join("artifacts/cells");
    // Ours: the whole release in memory (tarballs, manifests, checksums), unsigned.
    let t = Instant::now();
    let release = crate::package::build_release("v0.0.0-bench", &cells, None)?;
    let ours = t.elapsed().as_secs_f64();
    let tarballs: Vec<(&String, &Vec<u8>)> = release
        .files
        .iter()
        .filter(|(n, _)| n.ends_with(".tar.xz"))
        .collect();
    let ours_bytes: u64 = tarballs.iter().map(|(_, b)| b.len() as u64).sum();
    // Baseline: the same members, unpacked to disk, archived by GNU tar and xz -6.
    let scratch = tempfile::tempdir()?;
    let mut dirs = Vec::new();
    for (i, (name, xz_bytes)) in tarballs.iter().enumerate() {
        let dir = scratch.path().join(format!("t{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut tar_bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut xz2::read::XzDecoder::new(&xz_bytes[..]),
            &mut tar_bytes,
        )?;
        tar::Archive::new(&tar_bytes[..])
            .unpack(&dir)
            .with_context(|| format!("unpacking {name}"))?;
        dirs.push(dir);
    }
    let mtime = crate::tarball::source_date_epoch()?;
    let t = Instant::now();
    let mut gnu_bytes = 0;
    for (i, dir) in dirs.iter().enumerate() {
        let out = scratch.path().join(format!("gnu{i}.tar.xz"));
        let script = format!(
            "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{mtime} -C {} -cf - . | xz -6 -T1 > {}",
            dir.display(),
            out.display()
        );
        run_ok(Process::new("sh").args(["-c", &script]))?;
        gnu_bytes += std::fs::metadata(&out)?.len();
    }
    let gnu = t.elapsed().as_secs_f64();
    let report = PackageBenchReport {
        tarballs: tarballs.len(),
        ours_s: ours,
        ours_bytes,
        gnu_tar_xz_s: gnu,
        gnu_tar_xz_bytes: gnu_bytes,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("bench package: {} tarballs", report.tarballs);
        println!(
            "  ours (tar, xz -6e per tarball in parallel, manifests){:>7.3} s {:>9} bytes",
            report.ours_s, report.ours_bytes
        );
        println!(
            "  GNU tar --sort=name ... | xz -6                    {:>7.3} s {:>9} bytes",
            report.gnu_tar_xz_s, report.gnu_tar_xz_bytes
        );
    }
    Ok(())
}

fn vmtest_bench(o: VmtestBench) -> Result<()> {
    let opts = |jobs| crate::vmtest::VmtestOptions {
        kernels: vec![],
        jobs,
        timeout: 240,
        accel: "auto".into(),
        libc: None,
        json: true,
    };
    let (one_by_one, _) = crate::vmtest::execute(&opts(1))?;
    let t = Instant::now();
    let (parallel, _) = crate::vmtest::execute(&opts(2))?;
    let matrix = t.elapsed().as_secs_f64();
    let failures = crate::vmtest::failures(&one_by_one) + crate::vmtest::failures(&parallel);
    let per_kernel: Vec<(String, f64)> = one_by_one
        .iter()
        .map(|r| (r.release.clone(), r.seconds))
        .collect();
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "per_kernel_s": per_kernel, "matrix_jobs2_s": matrix, "failures": failures })
            )?
        );
    } else {
        println!("bench vmtest: {} kernels", per_kernel.len());
        for (k, s) in &per_kernel {
            println!("  {k:<30} {s:>6.1} s to boot, run the workload and report");
        }
        let max = per_kernel.iter().map(|(_, s)| *s).fold(0.0, f64::max);
        println!("  slowest kernel {max:.1} s (target < 15 s under TCG)");
        println!("  whole matrix with --jobs 2: {matrix:.1} s wall");
    }
    if failures > 0 {
        bail!("{failures} checks failed during the benchmark");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn install_bench(o: InstallBench) -> Result<()> {
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let cells = crate::paths::project_root().join("artifacts/cells");
    let release = crate::package::build_release("v0.0.0-bench", &cells, Some(&sk))?;
    let scratch = tempfile::tempdir()?;
    let served = scratch.path().join("served");
    std::fs::create_dir_all(&served)?;
    for (n, b) in &release.files {
        std::fs::write(served.join(n), b)?;
    }
    let pub_file = scratch.path().join("release.pub");
    std::fs::write(&pub_file, &pk)?;
    // A loopback HTTP server for both sides.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Process::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting python3 -m http.server on 127.0.0.1")?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if ready.elapsed().as_secs() > 10 {
            let _ = server.kill();
            bail!("the loopback server did not start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let libc = crate::build::host_libc();
    let kernel = crate::paths::running_kernel_release()?;
    let tarball = kc_common::release::legacy_tarball(libc, "v0.0.0-bench");
    let result = (|| -> Result<(Vec<f64>, Vec<f64>)> {
        let (mut ours, mut shell) = (Vec::new(), Vec::new());
        for i in 0..o.runs {
            let prefix = scratch.path().join(format!("ours{i}"));
            let t = Instant::now();
            kc_install::install(&kc_install::Options {
                from: base.clone(),
                tag: "v0.0.0-bench".into(),
                pubkey: pk.clone(),
                prefix,
                libc: libc.to_string(),
                kernel: kernel.clone(),
            })?;
            ours.push(t.elapsed().as_secs_f64());
            let dir = scratch.path().join(format!("shell{i}"));
            std::fs::create_dir_all(dir.join("out"))?;
            let script = format!(
                "set -e; cd {dir}; for f in sha256sums.txt sha256sums.txt.minisig {t} {t}.minisig; do curl -fsSO {base}/$f; done; \
                 minisign -qVm sha256sums.txt -p {pk}; minisign -qVm {t} -p {pk}; sha256sum --quiet -c --ignore-missing sha256sums.txt; \
                 tar -xJf {t} -C out",
                dir = dir.display(),
                t = tarball,
                pk = pub_file.display()
            );
            let t = Instant::now();
            run_ok(Process::new("sh").args(["-c", &script]))?;
            shell.push(t.elapsed().as_secs_f64());
        }
        Ok((ours, shell))
    })();
    let _ = server.kill();
    let _ = server.wait();
    let (ours, shell) = result?;
    println!(
        "bench install: {} from 127.0.0.1, {} runs each (median)",
        tarball, o.runs
    );
    println!("  kc-install (download, verify signatures + checksum + manifest, select bucket, atomic switch) {:>7.3} s", median(ours));
    println!("  curl + minisign -V + sha256sum -c + tar -x (all files, no selection)                       {:>7.3} s", median(shell));
    Ok(())
}
