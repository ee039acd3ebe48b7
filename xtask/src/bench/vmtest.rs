//! `cargo xtask bench vmtest`: each kernel's boot-and-report time, and the matrix with two
//! guests at once.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use crate::host;
use crate::vmtest::Accel;

#[derive(Debug, Args)]
pub struct VmtestBench {
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: VmtestBench) -> Result<()> {
    let opts = |jobs| crate::vmtest::VmtestOptions {
        kernels: vec![],
        collectors: vec![],
        jobs,
        // The loader's path alone: the guest times this bench has always measured.
        agent: Some(crate::vmtest::AgentKernels::None),
        timeout: crate::vmtest::DEFAULT_TIMEOUT,
        accel: Accel::Auto,
        libc: None,
        arch: kc_common::Arch::Amd64,
        json: true,
        update_baseline: false,
        slots: None,
    };
    let libc = host::host_libc();
    let (one_by_one, _) = crate::vmtest::execute(&opts(1), libc)?;
    let t = Instant::now();
    let (parallel, _) = crate::vmtest::execute(&opts(2), libc)?;
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
