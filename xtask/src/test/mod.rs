//! `cargo xtask test`: every test (`cargo test`), then end-to-end checks against the real
//! mirror, toolchain, Docker engine, kernel and qemu.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use kc_common::{CellId, Libc};
use xshell::cmd;

use crate::cli::LibcChoice;
use crate::compile::{self, cell, Backend, BuildOptions};
use crate::debian::mirror::Mirror;
use crate::debian::signature::ArchiveKeyring;
use crate::kernels::{self, fetch::Fetcher, spec::Lock};
use crate::{host, paths, process, setup};

mod arm64;
mod docker;
mod select;

/// Every cell of the host's libc, with the host's tools.
fn all_cells() -> BuildOptions {
    BuildOptions::everything(Backend::Host, None)
}

/// Every cell under `artifacts/cells/` carries the BPF objects and skeletons of its other
/// libc's cell byte for byte (they do not depend on the loader's libc).
fn libcs_agree() -> Result<()> {
    let cells = cell::read_all(&paths::project_root().join("artifacts/cells"))?;
    let disagreements = cell::libc_disagreements(&cells);
    ensure!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    Ok(())
}

/// A cell's directory under `artifacts/cells/`.
fn cell_dir(id: CellId) -> PathBuf {
    paths::project_root()
        .join("artifacts/cells")
        .join(id.to_string())
}

#[derive(Debug, Args)]
pub struct TestOptions {
    /// Run only `cargo test`, not the end-to-end checks that need the mirror
    #[arg(long, conflicts_with = "e2e_only")]
    pub unit_only: bool,
    /// Run only the end-to-end checks, not `cargo test`
    #[arg(long)]
    pub e2e_only: bool,
}

/// An end-to-end check: what it proves, and the check.
type Check = (&'static str, fn() -> Result<()>);

pub fn run(o: TestOptions) -> Result<()> {
    setup::run(setup::SetupOptions {
        check: false,
        role: setup::Role::All,
    })?;
    let sh = process::shell_in(&paths::project_root());
    if !o.e2e_only {
        process::stream(cmd!(sh, "cargo test --workspace --locked"))?;
    }
    if o.unit_only {
        return Ok(());
    }
    let checks: [Check; 12] = [
        ("lock covers the matrix", check_lock),
        ("live mirror resolves the matrix", check_live_lock),
        ("fetch of the oldest bucket, cold then warm", check_fetch),
        ("build of every cell, then a no-op rebuild", check_build),
        ("kc-loader --attach auto attaches every CO-RE and host-bucket legacy object on the host kernel (needs root)", check_host_load),
        ("per-application tables: bounded by --table-size, rows of exited processes reported once then removed, grouped by cgroup or not at all; an agent on the skeleton and shipped headers reads them (needs root)", check_app_tables),
        ("verify every built object", check_verify),
        ("docker backend: every cell of both libcs in containers (no network); glibc byte-identical to the host's, musl loader static (needs docker)", docker::check_docker),
        ("vmtest: oldest, middle and newest kernels load, attach and count every object", check_vmtest),
        ("arm64: every cell of both libcs cross-built in the images (loaders aarch64, musl static, objects alike); the oldest and newest arm64 kernels load, attach and count every object under qemu-system-aarch64", arm64::check_arm64),
        ("package, sign and check a release of the built cells; kc-install installs CO-RE and every bucket, and the release's kc-select, check-kernel and kc-check-kernel.sh choose the same loadable objects, with BTF and without (needs root)", check_package),
        ("release.yml rehearsed under act: cells, vmtest, package, publish to the stand-in API, check-release (needs act)", check_rehearsal),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        let t = Instant::now();
        match check() {
            Ok(()) => {
                passed += 1;
                eprintln!("e2e: {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                failed += 1;
                eprintln!("e2e: {name} ... FAILED: {e:#}");
            }
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} end-to-end checks failed");
    }
    Ok(())
}

fn check_lock() -> Result<()> {
    kernels::load_checked_lock().map(|_| ())
}

/// Resolves the matrix from the real mirror into a scratch file: every series must resolve.
/// A newer pin than the committed lock is reported, not failed: the archive moves on.
fn check_live_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().join("kernels.lock");
    let out = kernels::lock::run(
        &Mirror::discover()?,
        &ArchiveKeyring::discover()?,
        &paths::kernels_toml(),
        &scratch,
        &[],
    )?;
    let committed = Lock::load(&paths::kernels_lock())?;
    for arch in out.lock.arches() {
        for k in out.lock.kernels(arch) {
            let pinned = committed
                .kernels(arch)
                .iter()
                .find(|c| c.series == k.series);
            if pinned.map(|c| &c.release) != Some(&k.release) {
                eprintln!("e2e: note: the mirror now offers {} for {} ({arch}); `cargo xtask kernels lock` would move to it", k.release, k.series);
            }
        }
    }
    Ok(())
}

/// Fetches the oldest bucket into a fresh cache, checks the tree, and fetches it again:
/// the second fetch must download nothing.
fn check_fetch() -> Result<()> {
    let (_, lock) = kernels::load_checked_lock()?;
    let k = lock
        .kernel
        .iter()
        .find(|k| k.bucket)
        .context("no bucket in the lock")?;
    let cache = tempfile::tempdir()?;
    let mut f = Fetcher::new(cache.path().to_path_buf());
    let tree = f.headers(k)?;
    for must in [
        tree.flavour_dir.join("include/generated/autoconf.h"),
        tree.flavour_dir.join(".config"),
        tree.common_dir.join("include/linux/sched.h"),
        tree.common_dir.join("include/uapi/linux/bpf.h"),
    ] {
        ensure!(
            must.is_file(),
            "{} is missing from the unpacked tree",
            must.display()
        );
    }
    let autoconf = std::fs::read_to_string(tree.flavour_dir.join("include/generated/autoconf.h"))?;
    ensure!(
        autoconf.contains("CONFIG_BPF_SYSCALL"),
        "autoconf.h lacks CONFIG_BPF_SYSCALL"
    );
    let cold = f.downloaded_bytes;
    ensure!(cold > 0, "a cold fetch downloaded nothing");
    let mut warm = Fetcher::with_mirror(
        cache.path().to_path_buf(),
        Mirror {
            main: "http://127.0.0.1:9/unreachable".into(),
            security: "http://127.0.0.1:9/unreachable".into(),
        },
    );
    let again = warm.headers(k)?;
    ensure!(
        warm.downloaded_bytes == 0 && again.flavour_dir == tree.flavour_dir,
        "the warm fetch did network I/O"
    );
    Ok(())
}

/// Builds everything (from the compile cache when warm), then again: nothing may compile.
fn check_build() -> Result<()> {
    let first = compile::build(&compile::Project::checkout(), &all_cells())?;
    ensure!(
        first.failures.is_empty(),
        "build failed:\n{}",
        first.failures.join("\n")
    );
    let n_cells = first.cells.len();
    ensure!(
        first.cells.iter().all(|c| c.ok && c.tarball.is_some()),
        "a cell has no tarball"
    );
    let again = compile::build(&compile::Project::checkout(), &all_cells())?;
    ensure!(
        again.compiled == 0,
        "a rebuild with unchanged inputs compiled {} jobs",
        again.compiled
    );
    eprintln!(
        "e2e: {n_cells} cells, {} jobs; first pass compiled {}, no-op rebuild {:.2} s",
        again.cached, first.compiled, again.seconds
    );
    Ok(())
}

/// Runs the loader as an agent would on this host's kernel (`--attach auto`): every CO-RE
/// object the loader embeds and the legacy objects of the bucket the host selects must load
/// and attach, each event by the cheapest family this kernel takes; the only events left
/// unobserved are those no family can reach here (the kernel refuses trampolines and has no
/// kprobes, and no tracepoint fires on them), each reported with the reasons.
fn check_host_load() -> Result<()> {
    if !host::is_root() {
        eprintln!(
            "e2e: skipped: loading BPF programs needs root (uid {})",
            host::uid_gid().0
        );
        return Ok(());
    }
    let release = crate::paths::running_kernel_release()?;
    let bucket = host_bucket()?;
    let libc = host::host_libc();
    let loader = cell_dir(CellId::core(libc)).join(cell::LOADER);
    let legacy = object_files(&cell_dir(CellId::bucket(bucket, libc)))?;
    let sh = process::shell();
    let objects = &legacy;
    let (report, status) = process::json(cmd!(
        sh,
        "{loader} --attach auto --json --embedded {objects...} -- true"
    ))?;
    let objects = report["objects"]
        .as_array()
        .context("no objects in the loader's report")?;
    let mut failed = Vec::new();
    let mut families = std::collections::BTreeMap::<String, usize>::new();
    let mut unobserved = std::collections::BTreeSet::new();
    for o in objects {
        let name = o["object"].as_str().unwrap_or("?");
        if o["status"] == "failed" {
            failed.push(format!(
                "{name}: {} {}",
                o["error"],
                o["log_tail"].as_str().unwrap_or("")
            ));
        }
        let (observed, missing) = crate::vmtest::unobserved_events(o);
        // An object this kernel can observe nothing of (dc: kernel functions only, and neither
        // trampolines nor kprobes here) is reported below, event by event, with the reasons.
        if observed == 0 && missing.is_empty() {
            failed.push(format!("{name}: reports no event"));
        }
        for e in o["events"].as_array().into_iter().flatten() {
            if let Some(f) = e["family"].as_str() {
                *families.entry(f.to_string()).or_default() += 1;
            }
        }
        for m in missing {
            // "refused" is this host's truth (no kprobes, trampolines refused); "failed" is ours.
            if m.has(kc_common::PassedOver::Failed) {
                failed.push(format!("{name}: {}", m.line()));
            } else {
                unobserved.insert(m.line());
            }
        }
    }
    eprintln!(
        "e2e: host kernel {release} (bucket {bucket}), --attach auto: {} objects attached, {} failed; events by family: {families:?}",
        objects.len() - failed.len(),
        failed.len()
    );
    for line in &unobserved {
        eprintln!("e2e:   no family observes {line}");
    }
    ensure!(
        failed.is_empty() && status.success(),
        "objects failed on the host kernel:\n{}",
        failed.join("\n")
    );
    let n_core = crate::collectors::load_from(&paths::project_root())?.len();
    ensure!(
        objects.len() == n_core + legacy.len(),
        "expected {n_core} CO-RE and {} legacy objects, got {}",
        legacy.len(),
        objects.len()
    );
    Ok(())
}

fn check_verify() -> Result<()> {
    crate::verify::run(crate::verify::VerifyOptions {
        paths: vec![paths::project_root().join("artifacts/cells")],
        json: false,
    })
}

/// A release of the cells just built, signed with a throw-away key, checked by us and by the
/// reference tools (`minisign -V`, `sha256sum -c`, `tar -tJf`); packaged twice, identical.
fn check_package() -> Result<()> {
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let cells = paths::project_root().join("artifacts/cells");
    let a =
        crate::package::build_release("v0.0.0-e2e", &cells, Some(&sk), &kc_common::Arch::RELEASED)?;
    let b =
        crate::package::build_release("v0.0.0-e2e", &cells, Some(&sk), &kc_common::Arch::RELEASED)?;
    ensure!(a.files == b.files, "two packages of the same cells differ");
    let dir = tempfile::tempdir()?;
    for (name, bytes) in &a.files {
        std::fs::write(dir.path().join(name), bytes)?;
    }
    kc_common::release::check_release_dir(dir.path(), &pk)?;
    let pub_file = dir.path().join("test.pub");
    std::fs::write(&pub_file, &pk)?;
    let sh = process::shell_in(dir.path());
    for name in a.files.keys().filter(|n| !n.ends_with(".minisig")) {
        process::output(cmd!(sh, "minisign -Vm {name} -p {pub_file}"))?;
        if name.ends_with(".tar.xz") {
            process::output(cmd!(sh, "tar -tJf {name}"))?;
        }
    }
    process::output(cmd!(sh, "sha256sum --quiet -c sha256sums.txt"))?;
    // The downstream installer takes it too, for the running kernel.
    let release = crate::paths::running_kernel_release()?;
    let prefix = tempfile::tempdir()?;
    let installed = kc_install::install(&kc_install::Options {
        from: dir.path().display().to_string(),
        tag: "v0.0.0-e2e".into(),
        pubkey: pk.clone(),
        prefix: prefix.path().to_path_buf(),
        libc: host::host_libc(),
        arch: kc_common::host::host_arch()?,
        kernel: release,
        only_bucket: false,
        keep: 2,
        limits: Default::default(),
    })?;
    eprintln!("e2e: kc-install: {installed:?}");
    select::check_installed_release(prefix.path())?;
    eprintln!("e2e: release of {} files, {} bytes, reproducible and verified by minisign, sha256sum and tar", a.files.len(), a.files.values().map(Vec::len).sum::<usize>());
    Ok(())
}

/// The full matrix runs in `dist --vmtest` and in the release workflow; CI boots three
/// kernels that span it, with the musl cells' own static loader when Docker built them (else
/// the host's libc and a loader compiled here).
fn check_vmtest() -> Result<()> {
    let kernels = ["5.10", "6.12", "7.3"]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<_>, _>>()?;
    vmtest_spanning(kc_common::Arch::Amd64, kernels, 240)
}

/// vmtest of `arch`'s `kernels`, two guests at a time, with the musl cells' own static loader
/// when Docker built them (else the host's libc and a loader compiled here).
fn vmtest_spanning(
    arch: kc_common::Arch,
    kernels: Vec<kc_common::Bucket>,
    timeout: u64,
) -> Result<()> {
    let libc = if crate::image::daemon_answers() {
        Libc::Musl
    } else {
        host::host_libc()
    };
    crate::vmtest::run(crate::vmtest::VmtestOptions {
        kernels,
        jobs: 2,
        timeout,
        accel: crate::vmtest::Accel::Auto,
        libc: Some(LibcChoice::from(libc)),
        arch,
        json: false,
    })
}

/// The release workflow itself, end to end under act. Not from inside a workflow: the test
/// job of ci.yml runs `cargo xtask test`; under act a rehearsal does not rehearse itself, and
/// on GitHub the release workflow runs for real.
fn check_rehearsal() -> Result<()> {
    for inside in ["ACT", "GITHUB_ACTIONS"] {
        if std::env::var_os(inside).is_some_and(|v| !v.is_empty()) {
            eprintln!("e2e: skipped: running inside a workflow ({inside} is set)");
            return Ok(());
        }
    }
    crate::rehearse::run(crate::rehearse::RehearseOptions {
        workflow: crate::workflows::WorkflowName::Release,
        tag: "v0.0.0-rehearsal".into(),
        concurrent_jobs: 2,
        only: vec![],
    })
}

/// The process collector on this host with a workload of 24 short-lived processes: with
/// `--table-size 4` its table never holds more than 4 rows though the programs inserted at
/// least 24; every row of an exited process is reported once and removed; `--group-by cgroup`
/// keys rows by cgroup id, `--group-by none` keeps no rows at all.
fn check_app_tables() -> Result<()> {
    if !host::is_root() {
        eprintln!(
            "e2e: skipped: loading BPF programs needs root (uid {})",
            host::uid_gid().0
        );
        return Ok(());
    }
    let cell = cell_dir(CellId::core(host::host_libc()));
    let (loader, object) = (cell.join(cell::LOADER), cell.join("process.bpf.o"));
    let sh = process::shell();
    let run = |group_by: &str| -> Result<serde_json::Value> {
        let (report, status) = process::json(cmd!(
            sh,
            "{loader} --json --group-by {group_by} --table-size 4 {object} -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24; do /bin/true; done'"
        ))?;
        ensure!(
            status.success(),
            "kc-loader --group-by {group_by} failed ({status}): {}",
            report["objects"][0]["error"]
        );
        Ok(report["objects"][0].clone())
    };
    let o = run("process")?;
    let rows = o["per_process"].as_array().context("no per_process rows")?;
    let apps = &o["apps"];
    let exited = rows.iter().filter(|r| r["exited"] == true).count() as u64;
    ensure!(
        rows.len() <= 4 && apps["table_size"] == 4,
        "the table holds {} rows, past its size 4",
        rows.len()
    );
    ensure!(
        apps["insertions"].as_u64().unwrap_or(0) >= 24,
        "24 processes exec'd but the programs inserted {} rows",
        apps["insertions"]
    );
    ensure!(
        apps["evicted"].as_u64().unwrap_or(0) >= 20,
        "24 rows through a table of 4, yet only {} evictions reported",
        apps["evicted"]
    );
    ensure!(
        apps["removed_exited"].as_u64() == Some(exited),
        "{exited} rows of exited processes were reported but {} removed",
        apps["removed_exited"]
    );
    ensure!(
        o["counters"]["exec"].as_u64().unwrap_or(0) >= 24,
        "the totals missed execs: {}",
        o["counters"]
    );
    let o = run("cgroup")?;
    let cgroups = o["per_cgroup"].as_array().context("no per_cgroup rows")?;
    ensure!(
        !cgroups.is_empty()
            && cgroups
                .iter()
                .all(|r| r["cgroup"].as_u64().unwrap_or(0) > 0),
        "per-cgroup rows without cgroup ids: {cgroups:?}"
    );
    let o = run("none")?;
    ensure!(
        o.get("per_process").is_none() && o["apps"].is_null(),
        "--group-by none still reported rows"
    );
    eprintln!(
        "e2e: --table-size 4: {} rows after {} insertions, {exited} exited removed; by cgroup: {} rows",
        rows.len(),
        apps["insertions"],
        cgroups.len()
    );
    agent_reads_the_tables(&cell)
}

/// An agent built against the cell's skeleton and shipped headers only (no code generation)
/// reads its own row and the totals: 1000 one-byte reads are 1000 in its row.
fn agent_reads_the_tables(cell: &Path) -> Result<()> {
    let root = paths::project_root();
    let src = root.join("co-re/tests/kc-agent-example.c");
    let dir = tempfile::tempdir()?;
    let bin = dir.path().join("kc-agent-example");
    let cc = crate::compile::toolchain::Toolchain::detect()?.cc;
    let sh = process::shell();
    process::output(cmd!(
        sh,
        "{cc} -O2 -Wall -Wextra -Werror -I{cell} {src} -o {bin} -lbpf -lelf -lz"
    ))
    .context("building the example agent against the cell's skeleton and headers")?;
    let out = process::read(cmd!(sh, "{bin}"))?;
    let field = |k: &str| -> Option<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.parse().ok())
    };
    ensure!(
        field("row=") == Some(1000) && field("total=").is_some_and(|t| t >= 1000),
        "the example agent read {out:?}; expected row=1000 and a total of at least 1000"
    );
    eprintln!("e2e: an agent on the skeleton and shipped headers alone: {out}");
    Ok(())
}

/// The bucket the running kernel selects.
fn host_bucket() -> Result<kc_common::Bucket> {
    let release = crate::paths::running_kernel_release()?;
    let (_, lock) = kernels::load_checked_lock()?;
    Ok(kc_common::select_bucket(
        &kc_common::KernelVersion::parse(&release)?,
        &lock.buckets(),
    )?)
}

/// The `.o` files of a cell directory, sorted.
fn object_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    v.sort();
    Ok(v)
}
