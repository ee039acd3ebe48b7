//! `cargo xtask bench package`: the release vs GNU tar + xz of the same files.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use xshell::cmd;

use crate::process;

#[derive(Debug, Args)]
pub struct PackageBench {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct PackageBenchReport {
    tarballs: usize,
    ours_s: f64,
    ours_bytes: u64,
    gnu_tar_xz_s: f64,
    gnu_tar_xz_bytes: u64,
}

pub fn run(o: PackageBench) -> Result<()> {
    let cells = crate::paths::cells_dir();
    // Ours: the whole release in memory (tarballs, manifests, checksums), unsigned.
    // kc-select is compiled (or found up to date) before the clock starts: cargo's work is not
    // packaging's.
    for arch in kc_common::Arch::RELEASED {
        crate::compile::select_tool::build(arch)?;
    }
    let t = Instant::now();
    let release =
        crate::package::build_release("v0.0.0-bench", &cells, None, &kc_common::Arch::RELEASED)?;
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
    let sh = process::shell();
    let t = Instant::now();
    let mut gnu_bytes = 0;
    for (i, dir) in dirs.iter().enumerate() {
        let out = scratch.path().join(format!("gnu{i}.tar.xz"));
        let script = format!(
            "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{mtime} -C {} -cf - . | xz -6 -T1 > {}",
            dir.display(),
            out.display()
        );
        process::output(cmd!(sh, "sh -c {script}"))?;
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
