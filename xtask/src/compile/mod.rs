//! `cargo xtask build`: legacy objects per bucket (`p` and `r` modes), CO-RE objects with
//! skeletons, and the loader, compiled in parallel, cached by the hash of every input.
//!
//! Each compile is a job ([`plan`]) whose key hashes the sources (the collector's files and
//! all of `includes/`), the flags, the header tree and the toolchain's versions. Outputs are
//! cached under `target/kc-build/objects/<key>/` (or `$KC_BUILD_DIR/objects/`: a cache clean
//! clones share); a rebuild with unchanged inputs compiles
//! nothing. The jobs run in one pool ([`pool`], [`job`]). A cell (one bucket, or CO-RE, for
//! one libc) is written to `artifacts/` only when all its jobs succeeded and its files pass
//! `verify` ([`cell`]): a failed collector leaves the previous artifacts of its cell in place.
//! The docker backend ([`docker`]) runs this same build, one cell per container.

pub mod cell;
pub mod container;
pub mod docker;
pub mod flags;
mod job;
pub mod loader;
pub mod plan;
mod pool;
pub mod request;
pub mod select_tool;
pub mod test_object;
pub mod toolchain;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use kc_common::{Arch, Bucket, CellId, CellKind, Libc};
use serde::Serialize;

use crate::cli::LibcChoice;
use crate::collectors;
use crate::kernels::{self, fetch::Fetcher, fetch::HeaderTree};
use crate::{host, tarball};
pub use cell::BUILD_INFO;
pub use plan::Precompiled;
pub use plan::Project;
use plan::{Common, Job};
use pool::JobResult;
use toolchain::{LoaderToolchain, Toolchain};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The host's clang, llvm, bpftool and C compiler
    Host,
    /// A container of the libc's build image per cell (`cargo xtask image` makes the image)
    Docker,
}

#[derive(Debug, Clone, Args)]
pub struct BuildOptions {
    /// Where compilers run (default: docker when a daemon answers, else host)
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// The libc of the loader (default: both with docker; the host's own with the host backend)
    #[arg(long, value_enum)]
    pub libc: Option<LibcChoice>,
    /// Build these buckets' legacy objects (repeatable); with neither this, --all nor --core: everything
    #[arg(long = "bucket", value_name = "SERIES", conflicts_with = "all")]
    pub buckets: Vec<Bucket>,
    /// Build every bucket's legacy objects
    #[arg(long)]
    pub all: bool,
    /// Build the CO-RE objects, their skeletons and the loader
    #[arg(long)]
    pub core: bool,
    /// Keep DWARF debug info in the objects (BTF is always kept)
    #[arg(long)]
    pub debug: bool,
    /// The architecture of the cells (another than the host's: its loader is cross-compiled)
    #[arg(long, default_value = "amd64")]
    pub arch: Arch,
    /// Parallel compiles (default: every core)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

impl BuildOptions {
    /// Every cell (every bucket and CO-RE) with the given backend and libc, other options at
    /// their defaults.
    pub fn everything(backend: Backend, libc: Option<LibcChoice>) -> Self {
        Self {
            backend: Some(backend),
            libc,
            buckets: vec![],
            all: false,
            core: false,
            debug: false,
            arch: Arch::Amd64,
            jobs: None,
            json: false,
        }
    }

    /// Neither buckets, `--all` nor `--core`: build everything.
    fn everything_asked(&self) -> bool {
        self.buckets.is_empty() && !self.all && !self.core
    }

    pub fn wants_buckets(&self) -> bool {
        self.everything_asked() || self.all || !self.buckets.is_empty()
    }

    pub fn wants_core(&self) -> bool {
        self.everything_asked() || self.core
    }

    /// The buckets asked for, from the checked lock.
    pub fn bucket_list(&self) -> Result<Vec<Bucket>> {
        if !self.wants_buckets() {
            return Ok(Vec::new());
        }
        let (_, lock) = kernels::load_checked_lock()?;
        Ok(if self.everything_asked() || self.all {
            lock.for_arch(self.arch)
                .map(|l| l.buckets())
                .unwrap_or_default()
        } else {
            self.buckets.clone()
        })
    }

    fn threads(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

#[derive(Debug, Serialize)]
pub struct CellReport {
    pub cell: String,
    pub ok: bool,
    pub files: Vec<String>,
    pub compiled: usize,
    pub cached: usize,
    pub tarball: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub libc: Libc,
    pub seconds: f64,
    /// Until the header trees were ready (downloaded and unpacked when not cached).
    pub fetch_seconds: f64,
    pub compiled: usize,
    pub cached: usize,
    pub cells: Vec<CellReport>,
    pub failures: Vec<String>,
}

/// The backend `--backend` names, else docker when a daemon answers, else the host.
fn choose_backend(o: &BuildOptions) -> Backend {
    o.backend.unwrap_or_else(|| {
        if crate::image::daemon_answers() {
            Backend::Docker
        } else {
            eprintln!(
                "build: no Docker daemon answers; building with the host's tools (--backend host)"
            );
            Backend::Host
        }
    })
}

pub fn run(o: BuildOptions) -> Result<()> {
    let backend = choose_backend(&o);
    if backend == Backend::Docker {
        let libcs = o.libc.unwrap_or(LibcChoice::All).libcs();
        let report = docker::run(&o, &libcs)?;
        if o.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for tar in &report.tarballs {
                eprintln!("built {}", tar.display());
            }
            eprintln!(
                "build: {} cells built in containers, {} up to date",
                report.built.len(),
                report.up_to_date.len()
            );
        }
        return Ok(());
    }
    let libcs = o
        .libc
        .map_or_else(|| vec![host::host_libc()], LibcChoice::libcs);
    for libc in libcs {
        let one = BuildOptions {
            libc: Some(libc.into()),
            ..o.clone()
        };
        build_and_report(&Project::checkout(), &one, o.json)?;
    }
    Ok(())
}

/// Builds as `o` asks, prints what was built, and fails with every failed job.
fn build_and_report(project: &Project, o: &BuildOptions, json: bool) -> Result<()> {
    let report = build(project, o)?;
    print_report(&report, json)?;
    if !report.failures.is_empty() {
        bail!(
            "{} jobs failed:\n\n{}",
            report.failures.len(),
            report.failures.join("\n\n")
        );
    }
    Ok(())
}

fn print_report(report: &BuildReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for c in &report.cells {
        eprintln!(
            "{:<26} {:<6} {:>2} files, {} compiled, {} cached{}",
            c.cell,
            if c.ok { "ok" } else { "FAILED" },
            c.files.len(),
            c.compiled,
            c.cached,
            c.tarball
                .as_ref()
                .map(|t| format!(" -> {}", t.display()))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "build: {} compiled, {} cached in {:.1} s",
        report.compiled, report.cached, report.seconds
    );
    Ok(())
}

/// The one libc a host-backend build makes.
fn one_libc(o: &BuildOptions) -> Result<Libc> {
    match o.libc {
        None => Ok(host::host_libc()),
        Some(LibcChoice::All) => {
            bail!("the host backend builds one libc at a time: --libc glibc or --libc musl")
        }
        Some(choice) => Ok(choice.libcs()[0]),
    }
}

/// Builds the cells `o` asks for, for one libc, with the host's tools.
pub fn build(project: &Project, o: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let collectors = collectors::load_from(&project.root)?;
    let libc = one_libc(o)?;
    let lock = if o.wants_buckets() {
        Some(kernels::load_checked_lock()?.1)
    } else {
        None
    };
    let buckets = match &lock {
        None => Vec::new(),
        Some(lock) => kernels::select_arch(lock, o.arch, &o.bucket_list()?, false)?,
    };
    if let Some(k) = buckets.iter().find(|k| !k.bucket) {
        bail!("series {} is a boot-only kernel in kernels.toml, not a bucket: it has no headers to build against", k.series);
    }
    let with_core = o.wants_core();
    // The header trees download and unpack while the toolchain answers for its versions.
    let (tc, trees) = std::thread::scope(|s| {
        let fetching = s.spawn(|| -> Result<(Vec<HeaderTree>, f64)> {
            let mut fetcher = Fetcher::new(project.kernel_cache.clone());
            let trees = buckets
                .iter()
                .map(|k| fetcher.headers(k))
                .collect::<Result<Vec<_>>>()?;
            Ok((trees, started.elapsed().as_secs_f64()))
        });
        let tc = Toolchain::detect_cached(&project.work.join("toolchain-probes.json"));
        (tc, fetching.join().expect("fetch thread"))
    });
    let tc = tc?;
    let (trees, fetch_seconds) = trees?;
    // Known before anything compiles, so a missing musl or cross toolchain fails at once.
    let link = if with_core {
        Some(LoaderToolchain::detect(libc, o.arch, &tc)?)
    } else {
        None
    };

    let inputs = project.inputs(&tc)?;
    let common = Common {
        project,
        inputs: &inputs,
        tc: &tc,
        includes_hash: plan::includes_hash(&project.root)?,
        debug: o.debug,
    };
    let mut pchs = Vec::new();
    let mut jobs = Vec::new();
    for (k, tree) in buckets.iter().zip(&trees) {
        let (bucket_pchs, objects) =
            plan::legacy_jobs(&common, tree, k.series, &collectors, Precompiled::Layers)?;
        pchs.extend(bucket_pchs);
        jobs.extend(objects);
    }
    if with_core {
        jobs.extend(plan::core_jobs(&common, &collectors, o.arch)?);
    }
    let env = job::Env {
        project,
        tc: &tc,
        inputs: &inputs,
        debug: o.debug,
    };
    // One pool for everything: the CO-RE compiles need no headers and keep the cores busy
    // while the buckets' headers precompile.
    let mut results = run_after(&env, &pchs, &jobs, o.threads());

    // The loader embeds every skeleton, so it is built once they all are.
    if let Some(link) = &link {
        let core: Vec<&Job> = jobs.iter().filter(|j| j.cell == CellKind::CoRe).collect();
        let core_ok = jobs
            .iter()
            .zip(&results)
            .all(|(j, r)| j.cell != CellKind::CoRe || r.is_ok());
        if core_ok {
            let loader = plan::loader_job(&common, &core, link)?;
            results.extend(pool::run(&env, &[&loader], 1));
            jobs.push(loader);
        }
    }
    let mut report = BuildReport {
        libc,
        seconds: 0.0,
        fetch_seconds,
        compiled: 0,
        cached: 0,
        cells: Vec::new(),
        failures: Vec::new(),
    };
    assemble(
        project,
        &tc,
        link.as_ref(),
        |kind| CellId::new(kind, libc).on(o.arch),
        &jobs,
        &results,
        &mut report,
    )?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs `first` and `jobs` in one pool; returns the results of `jobs` (a job whose
/// dependency among `first` failed fails with its error).
fn run_after(env: &job::Env, first: &[Job], jobs: &[Job], threads: usize) -> Vec<JobResult> {
    let all: Vec<&Job> = first.iter().chain(jobs).collect();
    let mut results = pool::run(env, &all, threads);
    results.split_off(first.len())
}

/// Writes each cell whose jobs all succeeded and whose files pass `verify`.
fn assemble(
    project: &Project,
    tc: &Toolchain,
    link: Option<&LoaderToolchain>,
    // The cell of a kind of job: this build's libc and architecture.
    cell: impl Fn(CellKind) -> CellId,
    jobs: &[Job],
    results: &[JobResult],
    report: &mut BuildReport,
) -> Result<()> {
    let mut by_cell: BTreeMap<CellKind, Vec<(&Job, &JobResult)>> = BTreeMap::new();
    for (j, r) in jobs.iter().zip(results) {
        by_cell.entry(j.cell).or_default().push((j, r));
    }
    let mtime = tarball::source_date_epoch()?;
    for (kind, items) in by_cell {
        let id = cell(kind);
        let mut cr = CellReport {
            cell: id.to_string(),
            ok: true,
            files: Vec::new(),
            compiled: 0,
            cached: 0,
            tarball: None,
        };
        let mut entries = Vec::new();
        for (j, r) in &items {
            match r {
                Ok(true) => cr.cached += 1,
                Ok(false) => cr.compiled += 1,
                Err(msg) => {
                    cr.ok = false;
                    report.failures.push(format!("{id}: {}: {msg}", j.what));
                    continue;
                }
            }
            for out in &j.outputs {
                let bytes = std::fs::read(project.cache_path(&j.key).join(out))?;
                entries.push(cell::entry(out.clone(), bytes));
            }
        }
        if kind == CellKind::CoRe {
            // What an agent compiles against beside the skeletons: the counter structs, the
            // control map and the histogram key the maps hold.
            for header in cell::SHARED_HEADERS {
                let bytes = std::fs::read(project.root.join("includes").join(header))?;
                entries.push(cell::entry(header.to_string(), bytes));
            }
        }
        entries.push(cell::entry(
            BUILD_INFO.into(),
            serde_json::to_vec_pretty(&serde_json::json!({
                "libc": id.libc,
                "toolchain": tc.versions,
                // The loader's own toolchain, in the cell that holds the loader.
                "loader": match (kind, link) {
                    (CellKind::CoRe, Some(l)) if !l.versions.is_empty() => serde_json::to_value(&l.versions)?,
                    _ => serde_json::Value::Null,
                },
            }))?,
        ));
        if kind == CellKind::CoRe
            && link.is_some()
            && !items.iter().any(|(j, _)| j.what == cell::LOADER)
        {
            cr.ok = false;
        }
        report.compiled += cr.compiled;
        report.cached += cr.cached;
        if cr.ok {
            // Nothing that fails verification reaches artifacts/.
            let bad = cell::verify(id, &entries);
            cr.ok = bad.is_empty();
            report.failures.extend(bad);
        }
        if cr.ok {
            cr.files = entries.iter().map(|e| e.name.clone()).collect();
            cr.files.sort();
            cr.tarball = Some(cell::write(&project.artifacts, id, entries, mtime)?);
        }
        report.cells.push(cr);
    }
    Ok(())
}

/// Compiles one bucket's legacy objects against any prepared tree (a full kernel source tree
/// after `make prepare` is one: its generated and own headers are the same directory). For
/// the build benchmark. Returns how many jobs compiled.
pub fn compile_legacy_tree(
    project: &Project,
    tree: &HeaderTree,
    bucket: Bucket,
    threads: usize,
    precompiled: Precompiled,
) -> Result<usize> {
    let tc = Toolchain::detect()?;
    let collectors = collectors::load_from(&project.root)?;
    let inputs = project.inputs(&tc)?;
    let common = Common {
        project,
        inputs: &inputs,
        tc: &tc,
        includes_hash: "bench".into(),
        debug: false,
    };
    let (pchs, jobs) = plan::legacy_jobs(&common, tree, bucket, &collectors, precompiled)?;
    let env = job::Env {
        project,
        tc: &tc,
        inputs: &inputs,
        debug: false,
    };
    let results = run_after(&env, &pchs, &jobs, threads);
    let failures: Vec<String> = jobs
        .iter()
        .zip(&results)
        .filter_map(|(j, r)| r.as_ref().err().map(|e| format!("{}: {e}", j.what)))
        .collect();
    if !failures.is_empty() {
        bail!(
            "{} compiles failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(results.iter().filter(|r| matches!(r, Ok(false))).count())
}

#[cfg(test)]
pub(crate) mod tests;
