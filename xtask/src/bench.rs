//! `cargo xtask bench ...`: each benchmark runs ours and its baseline side by side in one run.

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
