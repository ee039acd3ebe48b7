//! `cargo xtask bench install`: kc-install (the whole release for this libc: CO-RE and every
//! bucket; and the lean `--only-bucket`) vs curl + minisign + sha256sum + tar of the same two
//! tarballs, all from the project's loopback server.

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
    let cells = crate::paths::cells_dir();
    let release = crate::package::build_release(
        "v0.0.0-bench",
        &cells,
        Some(&sk),
        &kc_common::Arch::RELEASED,
    )?;
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
    let tarball = kc_common::release::legacy_tarball(kc_common::Arch::Amd64, libc, "v0.0.0-bench");
    let core = kc_common::release::core_tarball(kc_common::Arch::Amd64, libc, "v0.0.0-bench");
    let tool = kc_common::release::select_tool_file(kc_common::Arch::Amd64, "v0.0.0-bench");
    let sh = process::shell();
    let install = |prefix, only_bucket| -> Result<f64> {
        let t = Instant::now();
        kc_install::install(&kc_install::Options {
            from: base.clone(),
            tag: "v0.0.0-bench".into(),
            pubkey: pk.clone(),
            prefix,
            libc,
            arch: kc_common::host::host_arch()?,
            kernel: kernel.clone(),
            only_bucket,
            keep: 2,
            limits: Default::default(),
        })?;
        Ok(t.elapsed().as_secs_f64())
    };
    let (ours, lean, shell) = {
        let (mut ours, mut lean, mut shell) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..o.runs {
            ours.push(install(scratch.path().join(format!("ours{i}")), false)?);
            lean.push(install(scratch.path().join(format!("lean{i}")), true)?);
            let dir = scratch.path().join(format!("shell{i}"));
            std::fs::create_dir_all(dir.join("out"))?;
            let script = format!(
                "set -e; cd {dir}; for f in sha256sums.txt sha256sums.txt.minisig {t} {t}.minisig {c} {c}.minisig {s} {s}.minisig; do curl -fsSO {base}/$f; done; \
                 minisign -qVm sha256sums.txt -p {pk}; minisign -qVm {t} -p {pk}; minisign -qVm {c} -p {pk}; minisign -qVm {s} -p {pk}; sha256sum --quiet -c --ignore-missing sha256sums.txt; \
                 mkdir out/legacy out/co-re; tar -xJf {t} -C out/legacy; tar -xJf {c} -C out/co-re; install -m 755 {s} out/kc-select",
                dir = dir.display(),
                t = tarball,
                c = core,
                s = tool,
                pk = pub_file.display()
            );
            let t = Instant::now();
            process::output(cmd!(sh, "sh -c {script}"))?;
            shell.push(t.elapsed().as_secs_f64());
        }
        (ours, lean, shell)
    };
    println!(
        "bench install: {tarball}, {core} and {tool} from 127.0.0.1, {} runs each (median)",
        o.runs
    );
    println!("  kc-install (download, verify signatures + checksums + manifests, extract, atomic switch) {:>7.3} s", median(ours));
    println!("  kc-install --only-bucket (the legacy tarball of this kernel's bucket, and kc-select)     {:>7.3} s", median(lean));
    println!("  curl + minisign -V + sha256sum -c + tar -x (the same three files, all of them)           {:>7.3} s", median(shell));
    Ok(())
}
