//! `cargo xtask bench arch-build`: the cold build of one bucket for arm64 (cross: arm64's
//! headers, `--target=aarch64-linux-gnu` IR) next to the same bucket for amd64, alternating
//! which goes first, medians of rounds from scratch.

use anyhow::Result;
use clap::Args;
use kc_common::{Arch, Bucket};
use serde::Serialize;

use super::build::cold_bucket_build;
use super::median;

#[derive(Debug, Args)]
pub struct ArchBuildBench {
    /// The bucket to build for both architectures
    #[arg(long, default_value = "6.1")]
    pub bucket: Bucket,
    /// Rounds of (amd64, arm64), each from scratch
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Side {
    arch: Arch,
    objects: usize,
    cold_s: f64,
    fetch_s: f64,
    noop_s: f64,
}

pub fn run(o: ArchBuildBench) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rounds: Vec<[Side; 2]> = Vec::new();
    // Kept until the end, as `bench build` does: deletes slow the next round's file creation.
    let mut scratches = Vec::new();
    for round in 0..o.runs.max(1) {
        let scratch = tempfile::Builder::new()
            .prefix("kc-bench-arch-")
            .tempdir_in(crate::paths::project_root().join("target"))?;
        let order = if round % 2 == 0 {
            [Arch::Amd64, Arch::Arm64]
        } else {
            [Arch::Arm64, Arch::Amd64]
        };
        let mut sides = Vec::new();
        for arch in order {
            let (cold_s, r, noop_s) =
                cold_bucket_build(&scratch.path().join(arch.as_str()), o.bucket, arch, threads)?;
            sides.push(Side {
                arch,
                objects: r.compiled,
                cold_s,
                fetch_s: r.fetch_seconds,
                noop_s,
            });
        }
        sides.sort_by_key(|s| s.arch);
        eprintln!(
            "bench arch-build: round {}: amd64 {:.2} s, arm64 {:.2} s",
            round + 1,
            sides[0].cold_s,
            sides[1].cold_s
        );
        rounds.push([sides[0].clone(), sides[1].clone()]);
        scratches.push(scratch);
    }
    let med = |i: usize, f: fn(&Side) -> f64| median(rounds.iter().map(|r| f(&r[i])).collect());
    let medians: Vec<Side> = (0..2)
        .map(|i| Side {
            arch: rounds[0][i].arch,
            objects: rounds[0][i].objects,
            cold_s: med(i, |s| s.cold_s),
            fetch_s: med(i, |s| s.fetch_s),
            noop_s: med(i, |s| s.noop_s),
        })
        .collect();
    let ratio = medians[1].cold_s / medians[0].cold_s;
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "median": medians,
                "arm64_over_amd64": ratio,
                "rounds": rounds,
            }))?
        );
        return Ok(());
    }
    println!(
        "bench arch-build: bucket {}, {threads} parallel compiles, median of {} rounds",
        o.bucket,
        rounds.len()
    );
    println!("  arch    objects  cold (s)  of it fetch (s)  no-op (s)");
    for s in &medians {
        println!(
            "  {:<6}  {:>7}  {:>8.2}  {:>15.2}  {:>9.3}",
            s.arch, s.objects, s.cold_s, s.fetch_s, s.noop_s
        );
    }
    println!("  arm64 / amd64 cold: {ratio:.2}");
    Ok(())
}
