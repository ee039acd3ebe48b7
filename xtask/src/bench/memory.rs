//! `cargo xtask bench memory`: the kernel's own figure of every CO-RE object's map memory
//! (each map's `memlock`, as kc-loader reports it; objects loaded, nothing attached) in guests
//! of one kernel booted with 1, 2, 4 and 8 CPUs, and on this host, at the default and a small
//! per-application table; and, from 5.18, the memory cgroup's account of the whole load in each
//! guest ([`MemcgCharge`]: what memlock leaves out, the programs and BTF, and before 6.4 the
//! maps' own overhead). Per object and in total, a linear model (`fixed + per_cpu x CPUs`, least
//! squares over the guests) is checked against every measured point (within 10 %, else the
//! bench fails: the projection would be a guess), then projected to 64, 128, 256 and 512 CPUs
//! and held to the targets (said, not failed: they are goals).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use kc_common::report::LoaderReport;
use kc_common::{Arch, Bucket, CellId};
use xshell::cmd;

use crate::compile::{cell, toolchain::Toolchain};
use crate::cpio::{self, Member};
use crate::kernels::{self, fetch::Fetcher};
use crate::{atomic, host, paths, process, vmtest};

#[derive(Debug, Args)]
pub struct MemoryBench {
    /// The guests' CPU counts
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub cpus: Vec<u32>,
    /// Per-application table sizes (kc-loader --table-size): the default and a small one
    #[arg(long, value_delimiter = ',', default_value = "2048,512")]
    pub table_sizes: Vec<u32>,
    /// The guests' kernel series (default: the newest amd64 kernel of the matrix)
    #[arg(long)]
    pub kernel: Option<Bucket>,
    /// Print the figures as JSON
    #[arg(long)]
    pub json: bool,
}

/// CPU counts the model is projected to.
const PROJECTED: [u32; 4] = [64, 128, 256, 512];
/// How far the model may miss a measured point.
const FIT_TOLERANCE: f64 = 0.10;
/// The issue's targets for every collector together at the default table size.
const TARGET_AT_2: f64 = 8.0 * 1024.0 * 1024.0;
const TARGET_AT_256: f64 = 24.0 * 1024.0 * 1024.0;

/// `bytes = fixed + per_cpu * cpus`, fitted by least squares.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Model {
    pub fixed: f64,
    pub per_cpu: f64,
    /// The largest miss at a measured point, relative to the point.
    pub worst_miss: f64,
}

impl Model {
    pub fn fit(points: &[(u32, u64)]) -> Option<Model> {
        if points.len() < 2 {
            return None;
        }
        let n = points.len() as f64;
        let mx = points.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (f64::from(p.0) - mx).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let sxy: f64 = points
            .iter()
            .map(|p| (f64::from(p.0) - mx) * (p.1 as f64 - my))
            .sum();
        let per_cpu = sxy / sxx;
        let fixed = my - per_cpu * mx;
        let at = |cpus: f64| fixed + per_cpu * cpus;
        let worst_miss = points
            .iter()
            .map(|&(c, y)| (at(f64::from(c)) - y as f64).abs() / (y as f64).max(1.0))
            .fold(0.0, f64::max);
        Some(Model {
            fixed,
            per_cpu,
            worst_miss,
        })
    }

    pub fn at(&self, cpus: u32) -> f64 {
        self.fixed + self.per_cpu * f64::from(cpus)
    }
}

/// One table size's figures: per object (and `total`), bytes per guest CPU count.
type Measured = BTreeMap<String, BTreeMap<u32, u64>>;

/// The objects' memory from kc-loader reports: object -> bytes; an object without a figure
/// is an error (the bench reports the kernel's, never a guess).
fn memory_of(report: &LoaderReport) -> Result<BTreeMap<String, u64>> {
    report
        .objects
        .iter()
        .map(|o| {
            let bytes = o.memory_bytes.with_context(|| {
                format!(
                    "{}: the report has no memory figure ({})",
                    o.object, o.error
                )
            })?;
            Ok((o.object.trim_end_matches(".bpf.o").to_string(), bytes))
        })
        .collect()
}

/// The blocks a guest printed between `{begin} size` and `{end}`: (size, text).
fn guest_blocks<'a>(console: &'a str, begin: &str, end: &str) -> Result<Vec<(u32, &'a str)>> {
    let mut out = Vec::new();
    let mut rest = console;
    let marker = format!("{begin} ");
    while let Some(at) = rest.find(&marker) {
        let after = &rest[at + marker.len()..];
        let (size, body) = after
            .split_once('\n')
            .with_context(|| format!("a cut {begin} line"))?;
        let stop = body
            .find(end)
            .with_context(|| format!("a {begin} block without {end}"))?;
        let size: u32 = size.trim().parse().context("a table size")?;
        out.push((size, body[..stop].trim()));
        rest = &body[stop..];
    }
    Ok(out)
}

/// The reports a guest printed between `KC-MEMORY-BEGIN size` and `KC-MEMORY-END`.
fn guest_reports(console: &str) -> Result<BTreeMap<u32, LoaderReport>> {
    guest_blocks(console, "KC-MEMORY-BEGIN", "KC-MEMORY-END")?
        .into_iter()
        .map(|(size, text)| {
            let report = serde_json::from_str(text)
                .with_context(|| format!("the guest's report at table size {size}"))?;
            Ok((size, report))
        })
        .collect()
}

/// What the memory cgroup a load ran in was charged while kc-loader held the objects, from
/// its `memory.stat` (`kernel`: 5.18 and later). Not `memory.current`: that counts the charge
/// each CPU takes ahead in batches (up to 256 KiB a CPU), which made a per-CPU slope of memory
/// nothing holds (127 KiB at 1 CPU, 576 KiB at 8 beyond memory.stat's figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemcgCharge {
    /// Every kernel allocation charged to the cgroup.
    pub kernel: u64,
    /// The processes' own kernel stacks and page tables, part of `kernel`.
    pub kernel_stack: u64,
    pub pagetables: u64,
}

impl MemcgCharge {
    /// memory.stat's lines, as the guest's `/init memcg` copies them.
    fn parse(text: &str) -> Result<Self> {
        let field = |name: &str| -> Result<u64> {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .with_context(|| format!("the memory cgroup's memory.stat has no {name}"))?;
            line.trim()
                .parse()
                .with_context(|| format!("the memory cgroup's {name}: {line:?}"))
        };
        Ok(Self {
            kernel: field("kernel")?,
            kernel_stack: field("kernel_stack")?,
            pagetables: field("pagetables")?,
        })
    }

    /// What the objects cost the kernel: its allocations charged to the load that are not the
    /// processes' own (maps, programs, BTF). The loader's page tables alone moved by 100 KiB
    /// from one guest to another.
    pub fn bpf(&self) -> u64 {
        self.kernel
            .saturating_sub(self.kernel_stack + self.pagetables)
    }
}

/// The memory cgroup charges a guest printed between `KC-MEMCG-BEGIN size` and `KC-MEMCG-END`.
fn guest_charges(console: &str) -> Result<BTreeMap<u32, MemcgCharge>> {
    guest_blocks(console, "KC-MEMCG-BEGIN", "KC-MEMCG-END")?
        .into_iter()
        .map(|(size, text)| Ok((size, MemcgCharge::parse(text)?)))
        .collect()
}

/// The first series whose memory cgroup figure the bench reads: BPF memory is charged to the
/// memory cgroup of the process that creates it from 5.11 ("bpf: switch to memcg-based memory
/// accounting"; before, to memlock), and memory.stat totals its kernel memory from 5.18.
const MEMCG_FROM: Bucket = Bucket {
    major: 5,
    minor: 18,
};

pub fn run(o: MemoryBench) -> Result<()> {
    ensure!(
        host::is_root(),
        "loading BPF objects needs root: run `sudo -E cargo xtask bench memory`"
    );
    ensure!(
        o.cpus.len() >= 2,
        "--cpus: the model needs two CPU counts or more"
    );
    let cell = paths::cell_dir(CellId::core(host::host_libc()));
    let objects: Vec<(String, Vec<u8>)> = cell::object_files(&cell)
        .with_context(|| format!("run `cargo xtask build` first ({})", cell.display()))?
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok((name, std::fs::read(&p)?))
        })
        .collect::<Result<_>>()?;
    ensure!(
        !objects.is_empty(),
        "no CO-RE objects in {}",
        cell.display()
    );

    // This host, for the figures at its own CPU count.
    let loader = cell.join(cell::LOADER);
    let scratch = tempfile::tempdir()?;
    let files: Vec<std::path::PathBuf> = objects
        .iter()
        .map(|(n, b)| {
            let p = scratch.path().join(n);
            std::fs::write(&p, b).map(|_| p)
        })
        .collect::<std::io::Result<_>>()?;
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let sh = process::shell();
    let mut host_figures: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for size in &o.table_sizes {
        let size = size.to_string();
        let files = &files;
        let (report, status) = process::json::<LoaderReport>(cmd!(
            sh,
            "{loader} --json --no-attach --table-size {size} {files...} -- true"
        ))?;
        ensure!(status.success(), "kc-loader on this host: {status}");
        host_figures.insert(size.parse()?, memory_of(&report)?);
    }

    // The guests.
    let (_, lock) = kernels::load_checked_lock()?;
    let k = kernels::one_or_newest(&lock, o.kernel)?;
    let vmlinuz = Fetcher::new(paths::cache_dir()).image(k)?;
    let bins = vmtest::static_binaries(&Toolchain::detect()?, Arch::Amd64)?;
    let (init, guest_loader) = (std::fs::read(&bins.init)?, std::fs::read(&bins.loader)?);
    let plan: String = o.table_sizes.iter().map(|s| format!("{s}\n")).collect();
    let names: Vec<String> = objects
        .iter()
        .map(|(n, _)| format!("objects/{n}"))
        .collect();
    let mut members = vec![
        Member::File {
            name: "init",
            data: &init,
            executable: true,
        },
        Member::File {
            name: "kc-loader",
            data: &guest_loader,
            executable: true,
        },
        Member::File {
            name: "memory-plan",
            data: plan.as_bytes(),
            executable: false,
        },
        Member::Dir("objects"),
    ];
    members.extend(
        objects
            .iter()
            .zip(&names)
            .map(|((_, data), name)| Member::File {
                name,
                data,
                executable: false,
            }),
    );
    std::fs::create_dir_all(vmtest::work_dir())?;
    let initramfs = vmtest::work_dir().join(format!("memory-{}.cpio", k.release));
    atomic::write(&initramfs, &cpio::newc(&members))?;
    let accel = vmtest::probe_kvm(Arch::Amd64, &vmlinuz, &initramfs);
    let mut measured: BTreeMap<u32, Measured> = BTreeMap::new();
    // Table size -> CPUs -> the kernel memory the load was charged (kernels from 5.11).
    let mut charged: BTreeMap<u32, BTreeMap<u32, u64>> = BTreeMap::new();
    for &cpus in &o.cpus {
        let log = vmtest::work_dir().join(format!("memory-{}-{cpus}cpus.log", k.release));
        eprintln!(
            "bench memory: guest {} with {cpus} CPUs ({})",
            k.release,
            accel.qemu_name()
        );
        let (how, console, seconds) = vmtest::boot(
            &k.release,
            vmtest::Vm {
                arch: Arch::Amd64,
                accel,
                cpus,
            },
            &vmlinuz,
            &initramfs,
            vmtest::Deadline::of_cpu(Duration::from_secs(900)),
            &log,
        )?;
        ensure!(
            how == vmtest::BootEnd::Reported,
            "the {cpus}-CPU guest {how}; its console is in {}",
            log.display()
        );
        eprintln!("bench memory: {cpus} CPUs: {seconds:.0} s");
        for (size, report) in guest_reports(&console)? {
            let figures = memory_of(&report)?;
            let table = measured.entry(size).or_default();
            let total: u64 = figures.values().sum();
            for (object, bytes) in figures {
                table.entry(object).or_default().insert(cpus, bytes);
            }
            table.entry(TOTAL.into()).or_default().insert(cpus, total);
        }
        if k.series >= MEMCG_FROM {
            let charges = guest_charges(&console)?;
            ensure!(
                o.table_sizes.iter().all(|s| charges.contains_key(s)),
                "the {cpus}-CPU guest printed no memory cgroup charge (its console: {})",
                log.display()
            );
            for (size, charge) in charges {
                charged.entry(size).or_default().insert(cpus, charge.bpf());
            }
        }
    }
    for size in &o.table_sizes {
        ensure!(
            measured
                .get(size)
                .is_some_and(|t| t.values().all(|m| m.len() == o.cpus.len())),
            "a guest printed no report for table size {size}: see the logs under {}",
            vmtest::work_dir().display()
        );
    }
    if k.series < MEMCG_FROM {
        eprintln!(
            "bench memory: {} is older than {MEMCG_FROM} (BPF memory in the memory cgroup and memory.stat's kernel total): no memory cgroup figure",
            k.release
        );
    }
    report(
        &o,
        k.release.as_str(),
        &measured,
        &charged,
        &host_figures,
        host_cpus,
    )
}

const TOTAL: &str = "(total)";

fn mib(bytes: f64) -> String {
    format!("{:.2}", bytes / 1024.0 / 1024.0)
}

fn report(
    o: &MemoryBench,
    release: &str,
    measured: &BTreeMap<u32, Measured>,
    charged: &BTreeMap<u32, BTreeMap<u32, u64>>,
    host_figures: &BTreeMap<u32, BTreeMap<String, u64>>,
    host_cpus: u32,
) -> Result<()> {
    let mut misfits = Vec::new();
    let mut json = serde_json::Map::new();
    for (size, table) in measured {
        let host_row = &host_figures[size];
        if !o.json {
            println!(
                "\nmap memory (MiB, the kernel's memlock), table size {size}, guests {release}:"
            );
            let cpus_cols: String = o
                .cpus
                .iter()
                .map(|c| format!("{:>8}", format!("{c} cpu")))
                .collect();
            let proj_cols: String = PROJECTED
                .iter()
                .map(|c| format!("{:>9}", format!("@{c}")))
                .collect();
            println!(
                "{:<12}{cpus_cols}{:>10}{:>10}{:>10}{proj_cols}{:>7}",
                "object",
                format!("host {host_cpus}"),
                "fixed",
                "per cpu",
                "miss"
            );
        }
        let mut rows = serde_json::Map::new();
        for (object, points) in table {
            let pts: Vec<(u32, u64)> = points.iter().map(|(c, b)| (*c, *b)).collect();
            let model = Model::fit(&pts).context("too few CPU counts to fit")?;
            if model.worst_miss > FIT_TOLERANCE {
                misfits.push(format!(
                    "{object} (table {size}): the model misses a measured point by {:.1} %",
                    model.worst_miss * 100.0
                ));
            }
            let host_bytes = if object == TOTAL {
                Some(host_row.values().sum::<u64>())
            } else {
                host_row.get(object).copied()
            };
            if o.json {
                let mut row = json_row(points, &model);
                row["host"] = serde_json::json!(host_bytes);
                rows.insert(object.clone(), row);
            } else {
                print_row(object, &o.cpus, points, host_bytes, &model);
            }
        }
        if let Some(points) = charged.get(size) {
            let pts: Vec<(u32, u64)> = points.iter().map(|(c, b)| (*c, *b)).collect();
            let model = Model::fit(&pts).context("too few CPU counts to fit")?;
            if o.json {
                rows.insert("(memory cgroup)".into(), json_row(points, &model));
            } else {
                print_row("(memcg)", &o.cpus, points, None, &model);
                println!("(memcg: the kernel memory the guest's memory cgroup of the load was charged while the objects were held (memory.stat), less its processes' kernel stacks and page tables: the maps, the programs and BTF)");
            }
        }
        json.insert(size.to_string(), serde_json::Value::Object(rows));
        if Some(size) == o.table_sizes.first() && !o.json {
            let figures = [("memlock", table.get(TOTAL)), ("memcg", charged.get(size))];
            for (whose, points) in figures {
                if let Some(points) = points {
                    say_targets(whose, points)?;
                }
            }
        }
    }
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "kernel": release, "host_cpus": host_cpus, "table_sizes": json,
            }))?
        );
    }
    if !misfits.is_empty() {
        bail!("the linear model does not hold:\n{}", misfits.join("\n"));
    }
    Ok(())
}

/// One row's figures for `--json`: measured (CPUs -> bytes), the model and its projections.
fn json_row(points: &BTreeMap<u32, u64>, model: &Model) -> serde_json::Value {
    let projected: BTreeMap<String, u64> = PROJECTED
        .iter()
        .map(|c| (c.to_string(), model.at(*c).round() as u64))
        .collect();
    serde_json::json!({ "measured": points, "model": model, "projected": projected })
}

/// One row of the table: each guest's figure, this host's, the model and its projections.
fn print_row(
    name: &str,
    cpus: &[u32],
    points: &BTreeMap<u32, u64>,
    host: Option<u64>,
    model: &Model,
) {
    let measured: String = cpus
        .iter()
        .map(|c| {
            format!(
                "{:>8}",
                points.get(c).map_or("-".into(), |b| mib(*b as f64))
            )
        })
        .collect();
    let projected: String = PROJECTED
        .iter()
        .map(|c| format!("{:>9}", mib(model.at(*c))))
        .collect();
    println!(
        "{name:<12}{measured}{:>10}{:>10}{:>10}{projected}{:>6.1}%",
        host.map_or("-".into(), |b| mib(b as f64)),
        mib(model.fixed),
        format!("{:.1}K", model.per_cpu / 1024.0),
        model.worst_miss * 100.0
    );
}

/// Every collector's memory together (`points`: CPUs -> bytes, by the kernel's figure
/// `whose`) held to the targets, at 2 CPUs as measured and at 256 as projected.
fn say_targets(whose: &str, points: &BTreeMap<u32, u64>) -> Result<()> {
    let pts: Vec<(u32, u64)> = points.iter().map(|(c, b)| (*c, *b)).collect();
    let model = Model::fit(&pts).context("too few CPU counts")?;
    let at2 = points.get(&2).map_or(model.at(2), |b| *b as f64);
    for (what, got, target) in [
        ("2 CPUs (measured)", at2, TARGET_AT_2),
        ("256 CPUs (projected)", model.at(256), TARGET_AT_256),
    ] {
        println!(
            "target ({whose}): every collector together at {what}: {} MiB, target {} MiB: {}",
            mib(got),
            mib(target),
            if got <= target { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_memory_fits_exactly_and_projects() {
        let m = Model::fit(&[(1, 1100), (2, 1200), (4, 1400), (8, 1800)]).unwrap();
        assert!(
            (m.fixed - 1000.0).abs() < 1e-6 && (m.per_cpu - 100.0).abs() < 1e-6,
            "{m:?}"
        );
        assert!(m.worst_miss < 1e-9);
        assert!((m.at(256) - 26_600.0).abs() < 1e-6);
        assert!(Model::fit(&[(2, 5)]).is_none());
        assert!(Model::fit(&[(2, 5), (2, 7)]).is_none());
    }

    #[test]
    fn a_point_off_the_line_is_measured_as_a_miss() {
        let m = Model::fit(&[(1, 1000), (2, 1000), (4, 1000), (8, 2000)]).unwrap();
        assert!(m.worst_miss > FIT_TOLERANCE, "{m:?}");
    }

    #[test]
    fn the_guests_reports_are_read_by_table_size() {
        let report = r#"{"kernel": "k", "attach": "auto", "workload_pid": 0, "stopped_by": null,
            "ms": {"attach": 0, "workload": 0, "detach": 0, "read": 0},
            "kernel_figures": {"workload": null, "inner": null, "outer": {}}, "objects": []}"#;
        let console = format!("boot\nKC-MEMORY-BEGIN 4096\n{report}\nKC-MEMORY-END\nnoise\nKC-MEMORY-BEGIN 512\n{report}\nKC-MEMORY-END\n");
        let got = guest_reports(&console).unwrap();
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), [512, 4096]);
        assert!(guest_reports("KC-MEMORY-BEGIN 4096\n{").is_err());
    }

    #[test]
    fn a_memory_cgroup_charge_is_read_and_its_kernel_part_kept() {
        let stat = "anon 1048576\nfile 524288\nkernel 7864320\nkernel_stack 16384\npagetables 131072\nfile_mapped 0\n";
        let console = format!("KC-MEMCG-BEGIN 2048\ncurrent 9437184\n{stat}\nKC-MEMCG-END\n");
        let got = guest_charges(&console).unwrap();
        assert_eq!(got[&2048].bpf(), 7_864_320 - 16_384 - 131_072);
        // `kernel_stack` is not `kernel`; a figure that is missing or not a number is an error.
        assert!(MemcgCharge::parse("kernel_stack 1\npagetables 2\n").is_err());
        assert!(MemcgCharge::parse("kernel ten\nkernel_stack 1\npagetables 2\n").is_err());
        assert!(MemcgCharge::parse("kernel 10\nkernel_stack 1\n").is_err());
    }
}
