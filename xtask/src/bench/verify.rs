//! `cargo xtask bench verify`: `verify` of every object vs `bpftool btf dump file` of each.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use xshell::cmd;

use crate::process;

#[derive(Debug, Args)]
pub struct VerifyBench {
    /// Where the objects are
    #[arg(long, default_value = crate::paths::CELLS)]
    pub dir: std::path::PathBuf,
    /// Rounds of each side; the median is reported
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct VerifyBenchReport {
    objects: usize,
    ours_s: f64,
    bpftool_s: f64,
    speedup: f64,
    type_counts_equal: bool,
}

pub fn run(o: VerifyBench) -> Result<()> {
    let dir = if o.dir.is_absolute() {
        o.dir.clone()
    } else {
        crate::paths::project_root().join(&o.dir)
    };
    let rounds = o.rounds.max(1);
    // Ours: read, parse and check every object (what `cargo xtask verify` does).
    let mut results = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let groups = crate::verify::collect(std::slice::from_ref(&dir))?;
        results = groups
            .iter()
            .flat_map(crate::verify::verify_group)
            .collect();
        ours.push(t.elapsed().as_secs_f64());
    }
    let ours = super::median(ours);
    if results.is_empty() {
        bail!(
            "no objects under {}; run `cargo xtask build` first",
            dir.display()
        );
    }
    // Baseline: one `bpftool btf dump file X` per object.
    let bpftool = crate::compile::toolchain::Toolchain::detect()?.bpftool;
    let sh = process::shell();
    let mut counts = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        counts.clear();
        for r in &results {
            let file = &r.file;
            let out = process::output(cmd!(sh, "{bpftool} btf dump file {file}"))?;
            counts.push(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.starts_with('['))
                    .count(),
            );
        }
        theirs.push(t.elapsed().as_secs_f64());
    }
    let theirs = super::median(theirs);
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
            "bench verify: {} objects under {}, median of {rounds} rounds",
            report.objects,
            dir.display()
        );
        println!(
            "  ours (ELF, libbpf open rules, kernel BTF rules, BTF.ext, cell rules) {:>8.3} s",
            report.ours_s
        );
        println!(
            "  bpftool btf dump file, one per object                                {:>8.3} s",
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
