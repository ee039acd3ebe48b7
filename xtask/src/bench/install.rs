//! `cargo xtask bench install`: kc-install vs curl + minisign + sha256sum + tar, both from
//! the project's loopback server.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use kc_testsrv::{Route, TestServer};
use xshell::cmd;

use super::median;
use crate::{host, process};

#[derive(Debug, Args)]
pub struct InstallBench {
    /// Runs of each, the median is reported
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

pub fn run(o: InstallBench) -> Result<()> {
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let cells = crate::paths::project_root().join("artifacts/cells");
    let release = crate::package::build_release("v0.0.0-bench", &cells, Some(&sk))?;
    let scratch = tempfile::tempdir()?;
    let pub_file = scratch.path().join("release.pub");
    std::fs::write(&pub_file, &pk)?;
    // The project's own loopback server, for both sides.
    let routes: Vec<(String, Route)> = release
        .files
        .iter()
        .map(|(n, b)| (format!("/{n}"), Route::ok(b.clone())))
        .collect();
    let server = TestServer::start(
        routes
            .iter()
            .map(|(p, r)| (p.as_str(), r.clone()))
            .collect(),
    );
    let base = server.url("").trim_end_matches('/').to_string();
    let libc = host::host_libc();
    let kernel = crate::paths::running_kernel_release()?;
    let tarball = kc_common::release::legacy_tarball(libc, "v0.0.0-bench");
    let sh = process::shell();
    let (ours, shell) = {
        let (mut ours, mut shell) = (Vec::new(), Vec::new());
        for i in 0..o.runs {
            let prefix = scratch.path().join(format!("ours{i}"));
            let t = Instant::now();
            kc_install::install(&kc_install::Options {
                from: base.clone(),
                tag: "v0.0.0-bench".into(),
                pubkey: pk.clone(),
                prefix,
                libc,
                kernel: kernel.clone(),
                keep: 2,
                limits: Default::default(),
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
            process::output(cmd!(sh, "sh -c {script}"))?;
            shell.push(t.elapsed().as_secs_f64());
        }
        (ours, shell)
    };
    println!(
        "bench install: {} from 127.0.0.1, {} runs each (median)",
        tarball, o.runs
    );
    println!("  kc-install (download, verify signatures + checksum + manifest, select bucket, atomic switch) {:>7.3} s", median(ours));
    println!("  curl + minisign -V + sha256sum -c + tar -x (all files, no selection)                       {:>7.3} s", median(shell));
    Ok(())
}
