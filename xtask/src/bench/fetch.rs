//! `cargo xtask bench fetch`: one bucket's headers, cold and warm, vs `apt-get download` +
//! `dpkg-deb -x`.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use kc_common::Bucket;
use serde::Serialize;
use xshell::cmd;

use crate::debian::mirror::Mirror;
use crate::kernels::{self, fetch::Fetcher, spec::Role};
use crate::process;

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

pub fn run(o: FetchBench) -> Result<()> {
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
    let sh = process::shell_in(&base);
    let apt_ok = process::output(cmd!(sh, "apt-get download {specs...}")).is_ok();
    let baseline_name = if apt_ok {
        "apt-get download + dpkg-deb -x"
    } else {
        for p in &pkgs {
            let url = mirror.url(&k.suite, &p.filename);
            process::output(cmd!(sh, "curl -fsSLO {url}"))?;
        }
        "curl (the host's apt lacks the locked versions) + dpkg-deb -x"
    };
    let baseline_download = t.elapsed().as_secs_f64();
    for entry in std::fs::read_dir(&base)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            let tree = base.join("tree");
            process::output(cmd!(sh, "dpkg-deb -x {path} {tree}"))?;
        }
    }
    let baseline_cold = t.elapsed().as_secs_f64();

    // Ours, warm: the whole `cargo xtask kernels fetch` process against the filled cache.
    let exe = std::env::current_exe()?;
    let bucket = o.bucket.to_string();
    let mut warm = Vec::new();
    for _ in 0..o.warm_runs {
        let t = Instant::now();
        process::output(
            cmd!(sh, "{exe} kernels fetch --bucket {bucket}").env("KC_CACHE_DIR", &cache),
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
