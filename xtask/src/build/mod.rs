//! `cargo xtask build`: legacy objects per bucket (`p` and `r` modes), CO-RE objects with
//! skeletons, and the loader, compiled in parallel, cached by the hash of every input.
//!
//! Each compile is a job whose key hashes the sources (the collector's files and all of
//! `includes/`), the flags, the header tree and the toolchain's versions. Outputs are cached
//! under `target/kc-build/objects/<key>/`; a rebuild with unchanged inputs compiles nothing.
//! A cell (one bucket, or CO-RE, for one libc) is written to `artifacts/` only when all its
//! jobs succeeded, through a temporary name and a rename: a failed collector leaves the
//! previous artifacts of its cell in place.

pub mod docker;
pub mod toolchain;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kc_common::Bucket;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::collectors;
use crate::kernels::{self, fetch::Fetcher, fetch::HeaderTree};
use crate::{paths, tarball};
use toolchain::{Inputs, Toolchain};

/// Written into each cell: the libc and the tools that built it (the release manifest reads it).
pub const BUILD_INFO: &str = "build-info.json";

/// Bump when the job layout changes, so old cache entries are not reused.
const JOB_FORMAT: &str = "kc-build-v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The host's clang, llvm, bpftool and C compiler
    Host,
    /// A container of the libc's build image per cell (`cargo xtask image` makes the image)
    Docker,
}

/// `--libc`: which libc's user-space parts (the loader) a build makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LibcChoice {
    Glibc,
    Musl,
    All,
}

impl LibcChoice {
    /// The choice of exactly `libc` (glibc or musl).
    pub fn one(libc: &str) -> Self {
        if libc == "musl" {
            Self::Musl
        } else {
            Self::Glibc
        }
    }

    pub fn libcs(self) -> Vec<&'static str> {
        match self {
            Self::Glibc => vec!["glibc"],
            Self::Musl => vec!["musl"],
            Self::All => vec!["glibc", "musl"],
        }
    }
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
    /// Parallel compiles (default: every core)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Cell {
    Bucket(Bucket),
    CoRe,
}

impl Cell {
    pub fn name(&self, libc: &str) -> String {
        match self {
            Cell::Bucket(b) => format!("kc-ebpf-{b}-{libc}"),
            Cell::CoRe => format!("kc-ebpf-co-re-{libc}"),
        }
    }
}

enum JobKind {
    /// The bucket's precompiled kernel headers (`includes/<header>.h`), shared by its
    /// collectors' compiles.
    Pch {
        tree: HeaderTree,
        header: &'static str,
    },
    Legacy {
        tree: HeaderTree,
        return_mode: bool,
        pch: PathBuf,
    },
    Core,
    Loader {
        skeletons: Vec<(String, PathBuf)>,
        link: toolchain::LoaderToolchain,
    },
}

struct Job {
    cell: Cell,
    /// Collector name, or `kc-loader`.
    what: String,
    kind: JobKind,
    /// Names of the files the job produces.
    outputs: Vec<String>,
    key: String,
    /// Keys of the jobs whose outputs this one reads (it starts once they succeeded).
    deps: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CellReport {
    pub cell: String,
    pub ok: bool,
    pub files: Vec<String>,
    pub compiled: usize,
    pub cached: usize,
    pub tarball: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub libc: String,
    pub seconds: f64,
    /// Until the header trees were ready (downloaded and unpacked when not cached).
    pub fetch_seconds: f64,
    pub compiled: usize,
    pub cached: usize,
    pub cells: Vec<CellReport>,
    pub failures: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VmlinuxOptions {
    /// A BTF file: /sys/kernel/btf/vmlinux, or a vmlinux with a .BTF section
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
}

/// `bpftool btf dump file BTF format c` into co-re/vmlinux.h, through a temporary file.
pub fn vmlinux(o: VmlinuxOptions) -> Result<()> {
    let tc = Toolchain::detect()?;
    let out = Command::new(&tc.bpftool)
        .args(["btf", "dump", "file"])
        .arg(&o.btf)
        .args(["format", "c"])
        .output()?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "bpftool could not dump {} as C: {}",
            o.btf.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let path = paths::project_root().join("co-re/vmlinux.h");
    paths::write_atomic(&path, &out.stdout)?;
    eprintln!(
        "wrote {} ({} bytes) from {}",
        path.display(),
        out.stdout.len(),
        o.btf.display()
    );
    Ok(())
}

/// The host's libc, as `ldd --version` tells.
pub fn host_libc() -> &'static str {
    let out = Command::new("ldd").arg("--version").output();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    if text.to_ascii_lowercase().contains("musl") {
        "musl"
    } else {
        "glibc"
    }
}

/// Where a build reads its sources and writes its outputs.
#[derive(Debug, Clone)]
pub struct Project {
    /// The checkout: `collectors.toml`, `kernel/`, `co-re/`, `includes/`.
    pub root: PathBuf,
    /// Cells are written here.
    pub artifacts: PathBuf,
    /// The compile cache and scratch space.
    pub work: PathBuf,
    /// The kernel download cache (header trees).
    pub kernel_cache: PathBuf,
}

impl Project {
    pub fn checkout() -> Self {
        // A docker cell runs this xtask with the sources read-only: outputs go elsewhere.
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = env("KC_SOURCE_DIR").unwrap_or_else(paths::project_root);
        Self {
            artifacts: env("KC_ARTIFACTS_DIR").unwrap_or_else(|| root.join("artifacts")),
            work: env("KC_WORK_DIR").unwrap_or_else(|| root.join("target/kc-build")),
            kernel_cache: paths::cache_dir(),
            root,
        }
    }

    /// The compiler's view of the inputs. libbpf's headers are copied to a directory that
    /// holds only `bpf/`, so that the rest of /usr/include stays out of BPF compiles.
    fn inputs(&self, tc: &Toolchain) -> Result<Inputs> {
        let libbpf_parent = self.work.join("libbpf-include");
        fs::create_dir_all(libbpf_parent.join("bpf"))?;
        for e in fs::read_dir(&tc.libbpf_include)? {
            let p = e?.path();
            fs::copy(
                &p,
                libbpf_parent
                    .join("bpf")
                    .join(p.file_name().unwrap_or_default()),
            )?;
        }
        Ok(Inputs {
            project: self.root.clone(),
            libbpf_parent,
            resource_include: tc.resource_include.clone(),
        })
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.work.join("objects").join(key)
    }
}

pub(crate) fn hash_tree(h: &mut Sha256, dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .as_os_str()
                .as_encoded_bytes(),
        );
        h.update([0]);
        h.update(fs::read(&f)?);
    }
    Ok(())
}

fn key_of(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(JOB_FORMAT);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
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
    if choose_backend(&o) == Backend::Docker {
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
    let libcs = match o.libc {
        Some(choice) => choice.libcs(),
        None => vec![host_libc()],
    };
    for libc in libcs {
        let one = BuildOptions {
            libc: Some(LibcChoice::one(libc)),
            ..o.clone()
        };
        run_host(&one)?;
    }
    Ok(())
}

fn run_host(o: &BuildOptions) -> Result<()> {
    let report = build(&Project::checkout(), o)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
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
    }
    if !report.failures.is_empty() {
        bail!(
            "{} jobs failed:\n\n{}",
            report.failures.len(),
            report.failures.join("\n\n")
        );
    }
    Ok(())
}

pub fn build(project: &Project, o: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let root = project.root.clone();
    let collectors = collectors::load_from(&root)?;
    let libc = match o.libc {
        None => host_libc().to_string(),
        Some(LibcChoice::All) => {
            bail!("the host backend builds one libc at a time: --libc glibc or --libc musl")
        }
        Some(choice) => choice.libcs()[0].to_string(),
    };
    let everything = o.buckets.is_empty() && !o.all && !o.core;
    let lock = if everything || o.all || !o.buckets.is_empty() {
        Some(kernels::load_checked_lock()?.1)
    } else {
        None
    };
    let buckets: Vec<_> = match &lock {
        None => Vec::new(),
        Some(lock) if everything || o.all => lock.kernel.iter().filter(|k| k.bucket).collect(),
        Some(lock) => kernels::select(lock, &o.buckets, false)?,
    };
    if let Some(k) = buckets.iter().find(|k| !k.bucket) {
        bail!("series {} is a boot-only kernel in kernels.toml, not a bucket: it has no headers to build against", k.series);
    }
    let with_core = everything || o.core;
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
        let tc = Toolchain::detect();
        (tc, fetching.join().expect("fetch thread"))
    });
    let tc = tc?;
    let (trees, fetch_seconds) = trees?;
    // Known before anything compiles, so a missing musl toolchain fails at once.
    let link = if with_core {
        Some(toolchain::LoaderToolchain::detect(&libc, &tc)?)
    } else {
        None
    };

    let inputs = project.inputs(&tc)?;
    let mut includes_hash = Sha256::new();
    hash_tree(&mut includes_hash, &root.join("includes"))?;
    let includes_hash = hex::encode(includes_hash.finalize());
    let debug: &[u8] = if o.debug { b"debug" } else { b"release" };
    let mut jobs = Vec::new();
    let mut pchs = Vec::new();
    for (k, tree) in buckets.iter().zip(&trees) {
        let (bucket_pchs, objects) = legacy_jobs(
            project,
            &inputs,
            &tc,
            tree,
            k.series,
            &collectors,
            &includes_hash,
            o.debug,
        )?;
        pchs.extend(bucket_pchs);
        jobs.extend(objects);
    }
    if with_core {
        let vmlinux = fs::read(root.join("co-re/vmlinux.h")).context(
            "co-re/vmlinux.h is missing; run `cargo xtask vmlinux --btf /sys/kernel/btf/vmlinux`",
        )?;
        let vmlinux_hash = hex::encode(Sha256::digest(&vmlinux));
        for c in &collectors {
            let src = fs::read(root.join("co-re").join(format!("{}.bpf.c", c.name)))?;
            let args = toolchain::core_clang_args(&inputs, Path::new("src.c"), Path::new("out.o"))
                .join(" ");
            let key = key_of(&[
                b"core",
                c.name.as_bytes(),
                args.as_bytes(),
                &src,
                includes_hash.as_bytes(),
                vmlinux_hash.as_bytes(),
                tc.fingerprint.as_bytes(),
                debug,
            ]);
            jobs.push(Job {
                cell: Cell::CoRe,
                what: c.name.clone(),
                kind: JobKind::Core,
                outputs: vec![format!("{}.bpf.o", c.name), format!("{}.skel.h", c.name)],
                key,
                deps: vec![],
            });
        }
    }

    let threads = o
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    // One pool for everything: the CO-RE compiles need no headers and keep the cores busy
    // while the buckets' headers precompile.
    let mut results = run_with_pchs(project, &tc, &inputs, &pchs, &jobs, threads, o.debug)?;

    // The loader embeds every skeleton, so it is built once they all are.
    if with_core {
        let core_ok = jobs
            .iter()
            .zip(&results)
            .filter(|(j, _)| j.cell == Cell::CoRe)
            .all(|(_, r)| r.is_ok());
        if core_ok {
            let mut skeletons = Vec::new();
            let mut parts: Vec<Vec<u8>> = vec![
                b"loader".to_vec(),
                fs::read(root.join("co-re/loader/kc-loader.c"))?,
                includes_hash.as_bytes().to_vec(),
                tc.fingerprint.as_bytes().to_vec(),
                libc.as_bytes().to_vec(),
                link.as_ref()
                    .map_or(Vec::new(), |l| l.fingerprint.as_bytes().to_vec()),
                debug.to_vec(),
            ];
            for (j, _) in jobs
                .iter()
                .zip(&results)
                .filter(|(j, _)| j.cell == Cell::CoRe)
            {
                let skel = project
                    .cache_path(&j.key)
                    .join(format!("{}.skel.h", j.what));
                parts.push(fs::read(&skel)?);
                skeletons.push((j.what.clone(), skel));
            }
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let loader = Job {
                cell: Cell::CoRe,
                what: "kc-loader".into(),
                kind: JobKind::Loader {
                    skeletons,
                    link: link.clone().expect("detected when CO-RE is built"),
                },
                outputs: vec!["kc-loader".into()],
                key: key_of(&refs),
                deps: vec![],
            };
            let r = run_jobs(
                project,
                &tc,
                &inputs,
                std::slice::from_ref(&loader),
                1,
                o.debug,
            )?;
            jobs.push(loader);
            results.extend(r);
        }
    }

    // Assemble each cell whose jobs all succeeded.
    let mut by_cell: BTreeMap<Cell, Vec<(&Job, &Result<bool, String>)>> = BTreeMap::new();
    for (j, r) in jobs.iter().zip(&results) {
        by_cell.entry(j.cell.clone()).or_default().push((j, r));
    }
    let mtime = tarball::source_date_epoch()?;
    let artifacts = project.artifacts.clone();
    let mut report = BuildReport {
        libc: libc.clone(),
        seconds: 0.0,
        fetch_seconds,
        compiled: 0,
        cached: 0,
        cells: Vec::new(),
        failures: Vec::new(),
    };
    for (cell, items) in by_cell {
        let name = cell.name(&libc);
        let mut cr = CellReport {
            cell: name.clone(),
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
                    report.failures.push(format!("{name}: {}: {msg}", j.what));
                    continue;
                }
            }
            for out in &j.outputs {
                let bytes = fs::read(project.cache_path(&j.key).join(out))?;
                entries.push(tarball::Entry {
                    name: out.clone(),
                    bytes,
                    executable: out == "kc-loader",
                });
            }
        }
        entries.push(tarball::Entry {
            name: BUILD_INFO.into(),
            bytes: serde_json::to_vec_pretty(&serde_json::json!({
                "libc": libc,
                "toolchain": tc.versions,
                // The loader's own toolchain, in the cell that holds the loader.
                "loader": match (&cell, &link) {
                    (Cell::CoRe, Some(l)) if !l.versions.is_empty() => serde_json::to_value(&l.versions)?,
                    _ => serde_json::Value::Null,
                },
            }))?,
            executable: false,
        });
        if cell == Cell::CoRe && with_core && !items.iter().any(|(j, _)| j.what == "kc-loader") {
            cr.ok = false;
        }
        report.compiled += cr.compiled;
        report.cached += cr.cached;
        if cr.ok {
            // Nothing that fails verification reaches artifacts/.
            let group = crate::verify::Group {
                origin: name.clone(),
                files: entries
                    .iter()
                    .map(|e| (e.name.clone(), e.bytes.clone()))
                    .collect(),
                only: None,
            };
            for bad in crate::verify::verify_group(&group)
                .into_iter()
                .filter(|r| !r.ok)
            {
                cr.ok = false;
                report
                    .failures
                    .push(format!("{}: verify: {}", bad.file, bad.errors.join("; ")));
            }
        }
        if cr.ok {
            cr.files = entries.iter().map(|e| e.name.clone()).collect();
            cr.files.sort();
            write_cell_dir(&artifacts.join("cells").join(&name), &entries)?;
            let tar = artifacts.join(format!("{name}.tar"));
            tarball::write(&tar, entries, mtime)?;
            cr.tarball = Some(tar);
        }
        report.cells.push(cr);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Replaces `dir` with the cell's files, through a temporary directory and renames.
fn write_cell_dir(dir: &Path, entries: &[tarball::Entry]) -> Result<()> {
    let parent = dir.parent().expect("cells/ has a parent");
    fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)?;
    for e in entries {
        let p = tmp.path().join(&e.name);
        fs::write(&p, &e.bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(
                &p,
                fs::Permissions::from_mode(if e.executable { 0o755 } else { 0o644 }),
            )?;
        }
    }
    let old = parent.join(format!(
        ".old-{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = fs::remove_dir_all(&old);
    if dir.exists() {
        fs::rename(dir, &old)?;
    }
    fs::rename(tmp.keep(), dir)?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// The layers of precompiled kernel headers, each `includes/<name>.h` to `<name>.pch`: every
/// collector gets the base; one whose source includes a higher layer's header (the socket
/// collector: `net/sock.h` alone costs as much as the rest) gets that layer, so the others
/// load a smaller PCH. The net layer is precompiled on its own, not chained on the base, so
/// that both precompile at once on a cold build instead of one after the other.
const PCH_BASE: &str = "kc_legacy_kernel";
const PCH_NET: &str = "kc_legacy_net";

/// The PCH layer a legacy source asks for through its includes.
fn pch_layer(src: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(src);
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("#include") && l.contains("\"kc_legacy_net.h\""))
    {
        PCH_NET
    } else {
        PCH_BASE
    }
}

/// The jobs of one bucket: its precompiled kernel headers (the base layer, and the net layer
/// when a collector needs it), then the `p` and `r` objects of every collector that builds for
/// it, each depending on its layer.
#[allow(clippy::too_many_arguments)]
fn legacy_jobs(
    project: &Project,
    inputs: &Inputs,
    tc: &Toolchain,
    tree: &HeaderTree,
    bucket: Bucket,
    collectors: &[collectors::Collector],
    includes_hash: &str,
    debug: bool,
) -> Result<(Vec<Job>, Vec<Job>)> {
    let tree_id = tree.flavour_dir.display().to_string(); // holds the tree's content key
    let debug: &[u8] = if debug { b"debug" } else { b"release" };
    let mut sources = Vec::new();
    for c in collectors.iter().filter(|c| c.builds_for(bucket)) {
        let src = fs::read(
            inputs
                .project
                .join("kernel")
                .join(format!("{}_kern.c", c.name)),
        )?;
        sources.push((c, pch_layer(&src), src));
    }
    let mut pchs: Vec<Job> = Vec::new();
    for layer in [PCH_BASE, PCH_NET] {
        if layer != PCH_BASE && !sources.iter().any(|(_, l, _)| *l == layer) {
            continue;
        }
        let args = toolchain::legacy_clang_args(
            inputs,
            tree,
            toolchain::LegacyOutput::Pch,
            Path::new("h"),
            Path::new("pch"),
        )
        .join(" ");
        let key = key_of(&[
            b"pch",
            layer.as_bytes(),
            args.as_bytes(),
            includes_hash.as_bytes(),
            tree_id.as_bytes(),
            tc.fingerprint.as_bytes(),
        ]);
        pchs.push(Job {
            cell: Cell::Bucket(bucket),
            what: format!("kernel headers {layer}.h"),
            kind: JobKind::Pch {
                tree: tree.clone(),
                header: layer,
            },
            outputs: vec![format!("{layer}.pch")],
            key,
            deps: vec![],
        });
    }
    let mut jobs = Vec::new();
    for (c, layer, src) in &sources {
        let pch = pchs
            .iter()
            .find(|p| p.outputs[0] == format!("{layer}.pch"))
            .expect("every layer in use has a job");
        let pch_path = project.cache_path(&pch.key).join(&pch.outputs[0]);
        for return_mode in [false, true] {
            let out = format!(
                "{}kc_{}.{}.o",
                if return_mode { 'r' } else { 'p' },
                c.name,
                bucket
            );
            let what = toolchain::LegacyOutput::Ir {
                return_mode,
                pch: None,
            };
            let args = toolchain::legacy_clang_args(
                inputs,
                tree,
                what,
                Path::new("src.c"),
                Path::new("out.ll"),
            )
            .join(" ");
            let key = key_of(&[
                b"legacy",
                out.as_bytes(),
                args.as_bytes(),
                src,
                includes_hash.as_bytes(),
                pch.key.as_bytes(),
                tc.fingerprint.as_bytes(),
                debug,
            ]);
            jobs.push(Job {
                cell: Cell::Bucket(bucket),
                what: c.name.clone(),
                kind: JobKind::Legacy {
                    tree: tree.clone(),
                    return_mode,
                    pch: pch_path.clone(),
                },
                outputs: vec![out],
                key,
                deps: vec![pch.key.clone()],
            });
        }
    }
    Ok((pchs, jobs))
}

/// Runs the precompiled headers and the jobs in one pool; returns the jobs' results (a job
/// whose headers failed to precompile fails with their error).
fn run_with_pchs(
    project: &Project,
    tc: &Toolchain,
    inputs: &Inputs,
    pchs: &[Job],
    jobs: &[Job],
    threads: usize,
    debug: bool,
) -> Result<Vec<Result<bool, String>>> {
    let all: Vec<&Job> = pchs.iter().chain(jobs).collect();
    let mut results = run_job_refs(project, tc, inputs, &all, threads, debug)?;
    Ok(results.split_off(pchs.len()))
}

/// A compiled object whose DWARF is still to be stripped: the job's index, its scratch
/// directory and where the scratch directory goes once stripped.
struct Unstripped {
    job: usize,
    scratch: PathBuf,
    done: PathBuf,
}

/// Strips the DWARF of every freshly compiled legacy object with one `llvm-strip` per batch
/// (a process per object cost as much as a tenth of a cold bucket), then publishes each
/// job's output; a failure fails the jobs of its batch.
fn strip_and_publish(
    tc: &Toolchain,
    checkout: &Path,
    pending: Vec<Unstripped>,
    jobs: &[&Job],
    results: &mut [Result<bool, String>],
) {
    for batch in pending.chunks(64) {
        let files: Vec<String> = batch
            .iter()
            .map(|u| {
                u.scratch
                    .join(&jobs[u.job].outputs[0])
                    .display()
                    .to_string()
            })
            .collect();
        let mut args = vec!["-g".to_string()];
        args.extend(files);
        let stripped = run_tool(checkout, &tc.llvm_strip, &args, None);
        for u in batch {
            match &stripped {
                Ok(()) => {
                    if fs::rename(&u.scratch, &u.done).is_err() {
                        // Another build finished the same job first: its output is as good.
                        let _ = fs::remove_dir_all(&u.scratch);
                    }
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&u.scratch);
                    results[u.job] = Err(e.clone());
                }
            }
        }
    }
}

/// Compiles one bucket's legacy objects against any prepared tree (a full kernel source tree
/// after `make prepare` is one: its generated and own headers are the same directory). For
/// the build benchmark. Returns how many jobs compiled.
pub fn compile_legacy_tree(
    project: &Project,
    tree: &HeaderTree,
    bucket: Bucket,
    threads: usize,
) -> Result<usize> {
    let tc = Toolchain::detect()?;
    let collectors = collectors::load_from(&project.root)?;
    let inputs = project.inputs(&tc)?;
    let (pchs, jobs) = legacy_jobs(
        project,
        &inputs,
        &tc,
        tree,
        bucket,
        &collectors,
        "bench",
        false,
    )?;
    let results = run_with_pchs(project, &tc, &inputs, &pchs, &jobs, threads, false)?;
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

/// Runs the jobs on `threads` workers. Per job: `Ok(true)` cached, `Ok(false)` compiled,
/// `Err(message)` failed (the message carries the tool's own output).
fn run_jobs(
    project: &Project,
    tc: &Toolchain,
    inputs: &Inputs,
    jobs: &[Job],
    threads: usize,
    debug: bool,
) -> Result<Vec<Result<bool, String>>> {
    let refs: Vec<&Job> = jobs.iter().collect();
    run_job_refs(project, tc, inputs, &refs, threads, debug)
}

fn run_job_refs(
    project: &Project,
    tc: &Toolchain,
    inputs: &Inputs,
    jobs: &[&Job],
    threads: usize,
    debug: bool,
) -> Result<Vec<Result<bool, String>>> {
    let index: std::collections::HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    // Indices of each job's dependencies among `jobs` (one outside the list is satisfied).
    let deps: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            j.deps
                .iter()
                .filter_map(|k| index.get(k.as_str()).copied())
                .collect()
        })
        .collect();
    struct State {
        started: Vec<bool>,
        results: Vec<Option<Result<bool, String>>>,
    }
    let state = Mutex::new(State {
        started: vec![false; jobs.len()],
        results: jobs.iter().map(|_| None).collect(),
    });
    let changed = std::sync::Condvar::new();
    // Objects compiled with their DWARF still in, stripped together once the pool is done.
    let deferred: Mutex<Vec<Unstripped>> = Mutex::new(Vec::new());
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("progress template"),
    );
    // The first job in list order whose dependencies are done; jobs whose dependency failed
    // are settled with that failure on the way. None when nothing is left to start.
    let next_ready = |st: &mut State| -> Option<Option<usize>> {
        let mut waiting = false;
        for i in 0..jobs.len() {
            if st.started[i] {
                continue;
            }
            let mut ready = true;
            for &d in &deps[i] {
                match &st.results[d] {
                    None => ready = false,
                    Some(Err(e)) => {
                        let dep = jobs[d];
                        let msg = format!("{} ({}) did not build: {e}", dep.what, dep.outputs[0]);
                        st.started[i] = true;
                        st.results[i] = Some(Err(msg));
                        bar.inc(1);
                        ready = false;
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
            if st.started[i] {
                continue;
            }
            if ready {
                st.started[i] = true;
                return Some(Some(i));
            }
            waiting = true;
        }
        waiting.then_some(None)
    };
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut st = state.lock().expect("scheduler lock");
                    loop {
                        match next_ready(&mut st) {
                            Some(Some(i)) => break i,
                            // Something is still running that others wait for.
                            Some(None) => st = changed.wait(st).expect("scheduler lock"),
                            None => {
                                changed.notify_all();
                                return;
                            }
                        }
                    }
                };
                let job = jobs[i];
                bar.set_message(format!("{} {}", job.what, job.outputs[0]));
                let r = run_job(project, tc, inputs, job, debug).map(|outcome| match outcome {
                    Outcome::Cached => true,
                    Outcome::Built => false,
                    Outcome::Unstripped { scratch, done } => {
                        deferred.lock().expect("deferred lock").push(Unstripped {
                            job: i,
                            scratch,
                            done,
                        });
                        false
                    }
                });
                state.lock().expect("scheduler lock").results[i] = Some(r);
                bar.inc(1);
                changed.notify_all();
            });
        }
    });
    bar.finish_and_clear();
    let st = state.into_inner().expect("scheduler lock");
    let mut results: Vec<Result<bool, String>> = st
        .results
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect();
    strip_and_publish(
        tc,
        &inputs.project,
        deferred.into_inner().expect("deferred lock"),
        jobs,
        &mut results,
    );
    Ok(results)
}

/// Runs a compiler in `checkout`: the working directory ends up in the debug info (and
/// decides whether llc finds the source lines it copies into BTF), whoever calls from where.
fn run_tool(
    checkout: &Path,
    program: &Path,
    args: &[String],
    stdout_to: Option<&Path>,
) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(checkout)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{} failed ({}):\n{}",
            program.file_name().unwrap_or_default().to_string_lossy(),
            out.status,
            tail.join("\n")
        ));
    }
    if let Some(path) = stdout_to {
        fs::write(path, &out.stdout).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Adds to clang's "file not found" for a header under a directory the header trees leave
/// out where to change that.
fn with_skipped_dir_hint(clang_error: &str) -> String {
    let skipped = clang_error.lines().find_map(|l| {
        let (_, rest) = l.split_once("fatal error: '")?;
        let (header, tail) = rest.split_once('\'')?;
        let dir = header.split('/').next()?;
        (tail.contains("file not found")
            && crate::kernels::fetch::SKIPPED_INCLUDE_DIRS.contains(&dir))
        .then(|| dir.to_string())
    });
    match skipped {
        Some(dir) => format!(
            "{clang_error}\n(header trees leave out include/{dir}/: take it out of SKIPPED_INCLUDE_DIRS in xtask/src/kernels/fetch.rs)"
        ),
        None => clang_error.to_string(),
    }
}

/// What a job did.
enum Outcome {
    Cached,
    Built,
    /// A legacy object compiled into `scratch` with its DWARF still in; it goes to `done`
    /// once stripped (see [`strip_and_publish`]).
    Unstripped {
        scratch: PathBuf,
        done: PathBuf,
    },
}

fn run_job(
    project: &Project,
    tc: &Toolchain,
    inputs: &Inputs,
    job: &Job,
    debug: bool,
) -> Result<Outcome, String> {
    let done = project.cache_path(&job.key);
    if job.outputs.iter().all(|o| done.join(o).is_file()) {
        return Ok(Outcome::Cached);
    }
    let parent = done.parent().expect("objects/ has a parent");
    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)
        .map_err(|e| e.to_string())?;
    let t = tmp.path();
    let root = &inputs.project;
    let strip = |full: &Path, out: &Path| -> Result<(), String> {
        if debug {
            fs::copy(full, out).map(|_| ()).map_err(|e| e.to_string())
        } else {
            run_tool(
                root,
                &tc.llvm_strip,
                &[
                    "-g".into(),
                    full.display().to_string(),
                    "-o".into(),
                    out.display().to_string(),
                ],
                None,
            )
        }
    };
    match &job.kind {
        JobKind::Pch { tree, header } => {
            let h = root.join("includes").join(format!("{header}.h"));
            run_tool(
                root,
                &tc.clang,
                &toolchain::legacy_clang_args(
                    inputs,
                    tree,
                    toolchain::LegacyOutput::Pch,
                    &h,
                    &t.join(&job.outputs[0]),
                ),
                None,
            )?;
        }
        JobKind::Legacy {
            tree,
            return_mode,
            pch,
        } => {
            let src = root.join("kernel").join(format!("{}_kern.c", job.what));
            let ll = t.join("out.ll");
            let what = toolchain::LegacyOutput::Ir {
                return_mode: *return_mode,
                pch: Some(pch),
            };
            run_tool(
                root,
                &tc.clang,
                &toolchain::legacy_clang_args(inputs, tree, what, &src, &ll),
                None,
            )
            .map_err(|e| with_skipped_dir_hint(&e))?;
            let out = t.join(&job.outputs[0]);
            run_tool(root, &tc.llc, &toolchain::llc_args(&ll, &out), None)?;
            let _ = fs::remove_file(ll);
            if !debug {
                return Ok(Outcome::Unstripped {
                    scratch: tmp.keep(),
                    done,
                });
            }
        }
        JobKind::Core => {
            let src = root.join("co-re").join(format!("{}.bpf.c", job.what));
            run_tool(
                root,
                &tc.clang,
                &toolchain::core_clang_args(inputs, &src, &t.join("full.o")),
                None,
            )?;
            let obj = t.join(&job.outputs[0]);
            strip(&t.join("full.o"), &obj)?;
            let _ = fs::remove_file(t.join("full.o"));
            let skel_args = [
                "gen".into(),
                "skeleton".into(),
                obj.display().to_string(),
                "name".into(),
                format!("{}_bpf", job.what),
            ];
            run_tool(
                root,
                &tc.bpftool,
                &skel_args,
                Some(&t.join(&job.outputs[1])),
            )?;
        }
        JobKind::Loader { skeletons, link } => {
            let mut table = String::from(
                "/* Generated by `cargo xtask build`: the CO-RE objects kc-loader embeds. */\n",
            );
            for (name, skel) in skeletons {
                fs::copy(skel, t.join(format!("{name}.skel.h"))).map_err(|e| e.to_string())?;
                table.push_str(&format!("#include \"{name}.skel.h\"\n"));
            }
            table.push_str("struct kc_embedded_object {\n\tconst char *name;\n\tconst void *(*elf_bytes)(size_t *sz);\n};\n");
            table.push_str("static const struct kc_embedded_object kc_embedded[] = {\n");
            for (name, _) in skeletons {
                table.push_str(&format!("\t{{ \"{name}\", {name}_bpf__elf_bytes }},\n"));
            }
            table.push_str(
                "};\n#define KC_N_EMBEDDED (sizeof(kc_embedded) / sizeof(kc_embedded[0]))\n",
            );
            fs::write(t.join("kc_skeletons.h"), table).map_err(|e| e.to_string())?;
            let mut args: Vec<String> = vec![
                "-O2".into(),
                "-Wall".into(),
                "-Wextra".into(),
                "-Werror".into(),
                format!("-ffile-prefix-map={}=.", root.display()),
                format!("-ffile-prefix-map={}=.", t.display()),
                format!("-I{}", t.display()),
                format!("-I{}", root.join("includes").display()),
            ];
            args.extend(link.cflags.iter().cloned());
            args.extend([
                root.join("co-re/loader/kc-loader.c").display().to_string(),
                "-o".into(),
                t.join("kc-loader").display().to_string(),
            ]);
            args.extend(link.ldflags.iter().cloned());
            if !debug {
                // What millions of hosts download: no symbols, no libbpf debug info.
                args.push("-s".into());
            }
            run_tool(root, &link.cc, &args, None)?;
            if link.libc == "musl" {
                // The musl loader is the one that runs anywhere: prove it needs no loader.
                let bytes = fs::read(t.join("kc-loader")).map_err(|e| e.to_string())?;
                if !toolchain::is_static_executable(&bytes).map_err(|e| format!("{e:#}"))? {
                    return Err(format!(
                        "the musl kc-loader came out dynamically linked: {} must hold only static libraries (lib*.a, no lib*.so)",
                        link.ldflags.iter().find_map(|f| f.strip_prefix("-L")).unwrap_or("the musl prefix")
                    ));
                }
            }
            for (name, _) in skeletons {
                let _ = fs::remove_file(t.join(format!("{name}.skel.h")));
            }
            let _ = fs::remove_file(t.join("kc_skeletons.h"));
        }
    }
    let tmp = tmp.keep();
    if fs::rename(&tmp, &done).is_err() {
        // Another build finished the same job first: its output is as good as ours.
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(Outcome::Built)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch copy of the checkout's sources with only some collectors.
    pub(super) fn scratch_project(collectors: &[&str]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        let real = paths::project_root();
        for sub in ["includes", "co-re", "kernel"] {
            copy_dir(&real.join(sub), &root.join(sub));
        }
        let all = fs::read_to_string(real.join("collectors.toml")).unwrap();
        let kept: Vec<&str> = all
            .split("[[collector]]")
            .filter(|s| {
                collectors
                    .iter()
                    .any(|c| s.contains(&format!("name = \"{c}\"")))
            })
            .collect();
        fs::write(
            root.join("collectors.toml"),
            format!("[[collector]]{}", kept.join("[[collector]]")),
        )
        .unwrap();
        let project = Project {
            artifacts: dir.path().join("artifacts"),
            work: dir.path().join("work"),
            kernel_cache: paths::cache_dir(),
            root,
        };
        (dir, project)
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                copy_dir(&p, &to.join(e.file_name()));
            } else {
                fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }

    /// After a failed build, the CO-RE cell's previous tarball and files are still there.
    pub(super) fn assert_core_cell_kept(p: &Project, tarball_before: &[u8]) {
        let tar = p.artifacts.join("kc-ebpf-co-re-glibc.tar");
        assert_eq!(
            fs::read(&tar).unwrap(),
            tarball_before,
            "the previous tarball is intact"
        );
        assert!(p
            .artifacts
            .join("cells/kc-ebpf-co-re-glibc/process.bpf.o")
            .is_file());
    }

    /// Makes the mount collector fail to compile (`undeclared_thing`).
    pub(super) fn break_mount_collector(root: &Path) {
        let body = root.join("includes/collectors/mount.bpf.h");
        let text = fs::read_to_string(&body).unwrap();
        let broken = text.replace(
            "kc_add(&mount_counters, KC_MOUNT_MOUNT, 1);",
            "kc_add(&mount_counters, KC_MOUNT_MOUNT, undeclared_thing);",
        );
        assert_ne!(
            broken, text,
            "the mount collector changed: update this test helper"
        );
        fs::write(&body, broken).unwrap();
    }

    pub(super) fn core_only() -> BuildOptions {
        BuildOptions {
            backend: Some(Backend::Host),
            libc: None,
            buckets: vec![],
            all: false,
            core: true,
            debug: false,
            jobs: Some(2),
            json: false,
        }
    }

    #[test]
    fn a_header_of_a_skipped_dir_gets_a_hint() {
        let e = "clang failed (exit status: 1):\nx.c:3:10: fatal error: 'scsi/scsi_cmnd.h' file not found";
        assert!(with_skipped_dir_hint(e).contains("SKIPPED_INCLUDE_DIRS"));
        let other = "x.c:3:10: fatal error: 'linux/nope.h' file not found";
        assert_eq!(with_skipped_dir_hint(other), other);
    }

    #[test]
    fn the_pch_layer_follows_the_sources_includes() {
        assert_eq!(pch_layer(b"#include \"kc_legacy.h\"\n"), PCH_BASE);
        assert_eq!(
            pch_layer(b"#include \"kc_legacy_net.h\"\n#include \"kc_legacy.h\"\n"),
            PCH_NET
        );
        assert_eq!(pch_layer(b"// #include \"kc_legacy_net.h\"\n"), PCH_BASE);
        // The real socket collector asks for the net layer, the others do not.
        let root = paths::project_root();
        for c in collectors::load_from(&root).unwrap() {
            let src = fs::read(root.join(format!("kernel/{}_kern.c", c.name))).unwrap();
            let want = if c.name == "socket" {
                PCH_NET
            } else {
                PCH_BASE
            };
            assert_eq!(pch_layer(&src), want, "{}", c.name);
        }
    }

    /// A header layer that fails to precompile fails exactly the collectors that use it, by
    /// name and with clang's message; the cell keeps its previous artifacts.
    #[test]
    fn a_broken_header_layer_fails_only_its_collectors_needs_toolchain_and_mirror() {
        if !toolchain_or_skip(
            "a_broken_header_layer_fails_only_its_collectors_needs_toolchain_and_mirror",
        ) {
            return;
        }
        let (_d, p) = scratch_project(&["process", "socket"]);
        let (_, lock) = kernels::load_checked_lock().unwrap();
        let bucket = lock.buckets()[0];
        let opts = BuildOptions {
            buckets: vec![bucket],
            core: false,
            ..core_only()
        };
        build(&p, &opts).unwrap();
        let tar = p.artifacts.join(format!("kc-ebpf-{bucket}-glibc.tar"));
        let before = fs::read(&tar).unwrap();
        let net = p.root.join("includes/kc_legacy_net.h");
        let text = fs::read_to_string(&net).unwrap();
        fs::write(
            &net,
            text.replace("#include <net/sock.h>", "#include <net/no_such_header.h>"),
        )
        .unwrap();
        let r = build(&p, &opts).unwrap();
        assert_eq!(r.failures.len(), 2, "socket p and r fail: {:?}", r.failures);
        assert!(
            r.failures.iter().all(|f| f.contains(": socket: ")
                && f.contains("kc_legacy_net.pch")
                && f.contains("no_such_header.h")),
            "{:?}",
            r.failures
        );
        assert_eq!(
            fs::read(&tar).unwrap(),
            before,
            "the previous tarball is intact"
        );
    }

    fn toolchain_or_skip(test: &str) -> bool {
        match Toolchain::detect() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipping {test}: {e:#}");
                false
            }
        }
    }

    #[test]
    fn core_build_is_cached_and_reproducible_needs_toolchain() {
        if !toolchain_or_skip("core_build_is_cached_and_reproducible_needs_toolchain") {
            return;
        }
        let (_a, p1) = scratch_project(&["process", "mount"]);
        let r = build(&p1, &core_only()).unwrap();
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.compiled, 3, "two collectors and the loader");
        let cell = &r.cells[0];
        assert_eq!(
            cell.files,
            [
                "build-info.json",
                "kc-loader",
                "mount.bpf.o",
                "mount.skel.h",
                "process.bpf.o",
                "process.skel.h"
            ]
        );
        let again = build(&p1, &core_only()).unwrap();
        assert_eq!(
            (again.compiled, again.cached),
            (0, 3),
            "unchanged inputs compile nothing"
        );
        // Another checkout in another place gives the same objects, byte for byte.
        let (_b, p2) = scratch_project(&["process", "mount"]);
        build(&p2, &core_only()).unwrap();
        for f in ["process.bpf.o", "mount.skel.h"] {
            let a = fs::read(p1.artifacts.join("cells/kc-ebpf-co-re-glibc").join(f)).unwrap();
            let b = fs::read(p2.artifacts.join("cells/kc-ebpf-co-re-glibc").join(f)).unwrap();
            assert!(a == b, "{f} differs between two checkouts");
        }
    }

    #[test]
    fn a_broken_collector_fails_by_name_and_keeps_previous_artifacts_needs_toolchain() {
        if !toolchain_or_skip(
            "a_broken_collector_fails_by_name_and_keeps_previous_artifacts_needs_toolchain",
        ) {
            return;
        }
        let (_d, p) = scratch_project(&["process", "mount"]);
        build(&p, &core_only()).unwrap();
        let tar = p.artifacts.join("kc-ebpf-co-re-glibc.tar");
        let before = fs::read(&tar).unwrap();
        break_mount_collector(&p.root);
        let r = build(&p, &core_only()).unwrap();
        assert_eq!(r.failures.len(), 1, "only mount fails: {:?}", r.failures);
        let msg = r
            .failures
            .iter()
            .find(|f| f.contains(": mount: "))
            .expect("the failure names the collector");
        assert!(
            msg.contains("undeclared_thing") && msg.contains("clang failed"),
            "{msg}"
        );
        assert!(!r.cells[0].ok);
        assert_core_cell_kept(&p, &before);
    }
}
