//! `cargo xtask bench overhead`: the nanoseconds a collector adds to each event of a workload
//! that hits its main event, with no program (the baseline), with each attach family forced,
//! and with `auto`, side by side in each round; medians of the rounds. On this host (the
//! families its kernel attaches) and in a guest (every family; absolute figures are inflated
//! by emulation, the ratios are what carries over).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::{Arch, AttachMode, Bucket, CellId, KernelVersion};
use serde::Serialize;
use xshell::cmd;

use crate::compile::{cell, toolchain::Toolchain};
use crate::cpio::{self, Member};
use crate::kernels::{self, fetch::Fetcher};
use crate::{atomic, host, paths, process, vmtest};

#[derive(Debug, Args)]
pub struct OverheadBench {
    /// Rounds; each round runs every mode of every case once, and the medians are reported
    #[arg(long, default_value_t = 9)]
    pub rounds: usize,
    /// The guest's kernel series (default: the newest of the matrix)
    #[arg(long = "kernel", value_name = "SERIES")]
    pub kernel: Option<Bucket>,
    /// Measure on this host only
    #[arg(long)]
    pub no_guest: bool,
    #[arg(long)]
    pub json: bool,
}

/// A collector's main event and the operation that hits it once per iteration.
struct Case {
    collector: &'static str,
    event: &'static str,
    op: &'static str,
    /// Iterations on the host; a tenth of it in a guest.
    n: u64,
}

const CASES: &[Case] = &[
    Case {
        collector: "vfs",
        event: "kc_vfs_read",
        op: "read",
        n: 200_000,
    },
    Case {
        collector: "fd",
        event: "kc_fd_open",
        op: "open",
        n: 50_000,
    },
    Case {
        collector: "process",
        event: "kc_process_fork",
        op: "fork",
        n: 2_000,
    },
    Case {
        collector: "sync",
        event: "kc_sync_fsync",
        op: "fsync",
        n: 200_000,
    },
    Case {
        collector: "socket",
        event: "kc_socket_udp_send",
        op: "udp",
        n: 50_000,
    },
    Case {
        collector: "mount",
        event: "kc_mount_umount",
        op: "umount",
        n: 200_000,
    },
    Case {
        collector: "cachestat",
        event: "kc_cachestat_access",
        op: "pagecache",
        n: 200_000,
    },
    Case {
        collector: "shm",
        event: "kc_shm_shmctl",
        op: "shmctl",
        n: 200_000,
    },
    Case {
        collector: "signal",
        event: "kc_signal_generate",
        op: "signal",
        n: 200_000,
    },
    Case {
        collector: "pagefault",
        event: "kc_pagefault_fault",
        op: "fault",
        n: 100_000,
    },
    Case {
        collector: "dc",
        event: "kc_dc_reference",
        op: "stat",
        n: 200_000,
    },
    Case {
        collector: "filesystem",
        event: "kc_filesystem_ext4_read",
        op: "fsread",
        n: 200_000,
    },
    Case {
        collector: "schedlat",
        event: "kc_schedlat_switch",
        op: "wake",
        n: 20_000,
    },
    Case {
        collector: "netdev",
        event: "kc_netdev_xmit",
        op: "udp",
        n: 50_000,
    },
];

/// Collectors no case covers, and why.
const UNCOVERED: &[(&str, &str)] = &[
    (
        "disk, hardirq, softirq",
        "their events come from devices, not from a loop a process can run alone",
    ),
    (
        "swap, oomkill",
        "an event costs a swap-out or a killed process: too slow to repeat thousands of times",
    ),
    (
        "mdflush",
        "an event is a flush of every member disk of an MD array: a device's cost, not a probe's",
    ),
];

/// The baseline (no program) or an attach mode.
fn modes() -> Vec<Option<AttachMode>> {
    std::iter::once(None)
        .chain(AttachMode::ALL.map(Some))
        .collect()
}

fn mode_name(m: Option<AttachMode>) -> &'static str {
    m.map_or("none", AttachMode::as_str)
}

#[derive(Debug, Default, Serialize)]
struct Measured {
    /// ns per iteration, one per round.
    ns: Vec<f64>,
    /// The family the loader gave the case's event (None for the baseline, or when no family
    /// of this mode observes it here), and why not.
    family: Option<String>,
    why_not: String,
}

#[derive(Debug, Serialize)]
struct CaseReport {
    collector: String,
    event: String,
    op: String,
    base_ns: f64,
    /// Mode → median ns added per event, when the event was observed in that mode.
    added_ns: BTreeMap<String, Option<f64>>,
    auto_family: Option<String>,
    /// auto's added cost over the cheapest forced family's that attaches.
    auto_vs_cheapest: Option<f64>,
    /// See [`auto_too_costly`].
    auto_too_costly: bool,
    /// The cheapest forced family that observes the event, and its added ns.
    cheapest: Option<(String, f64)>,
    /// The run-to-run spread of auto's and the cheapest family's figures (sum of their median
    /// absolute deviations): a difference inside twice this is noise, not cost.
    noise_ns: f64,
}

/// Median absolute deviation of a sample.
fn mad(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let m = super::median(v.to_vec());
    super::median(v.iter().map(|x| (x - m).abs()).collect())
}

/// The family of `event` in a loader report, or why none.
fn event_family(report: &serde_json::Value, event: &str) -> (Option<String>, String) {
    let events = report["objects"][0]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match events.iter().find(|e| e["event"] == event) {
        None => (None, format!("the report has no event {event}")),
        Some(e) => match e["family"].as_str() {
            Some(f) => (Some(f.to_string()), String::new()),
            None => {
                let why: Vec<String> = e["passed_over"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, p)| p["kind"] != "not-asked")
                    .map(|(f, p)| format!("{f}: {}", p["why"].as_str().unwrap_or("?")))
                    .collect();
                (None, why.join("; "))
            }
        },
    }
}

/// Whether auto's added ns exceed 1.2x the cheapest forced family's beyond the noise: by
/// more than twice the summed spreads of the two.
fn auto_too_costly(auto_ns: f64, cheapest_ns: f64, noise_ns: f64) -> bool {
    auto_ns - 1.2 * cheapest_ns.max(0.0) > 2.0 * noise_ns
}

/// The error line of a case whose auto costs too much.
fn too_costly_line(r: &CaseReport) -> String {
    let auto = r
        .added_ns
        .get("auto")
        .copied()
        .flatten()
        .unwrap_or(f64::NAN);
    let (family, cheapest) = r.cheapest.clone().unwrap_or(("?".into(), f64::NAN));
    format!(
        "{} {} ({}): auto +{auto:.0} ns ({}) vs {family} +{cheapest:.0} ns, {:.2}x, noise ±{:.0} ns",
        r.collector,
        r.event,
        r.op,
        r.auto_family.as_deref().unwrap_or("no family"),
        r.auto_vs_cheapest.unwrap_or_default(),
        r.noise_ns
    )
}

fn summarize(results: &BTreeMap<(usize, &'static str), Measured>) -> Vec<CaseReport> {
    CASES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let median = |m: &str| {
                results
                    .get(&(i, m))
                    .filter(|r| !r.ns.is_empty())
                    .map(|r| super::median(r.ns.clone()))
            };
            let base = median("none").unwrap_or(f64::NAN);
            let mut added = BTreeMap::new();
            for m in modes().into_iter().flatten() {
                let r = &results[&(i, m.as_str())];
                added.insert(
                    m.to_string(),
                    r.family.as_ref().and(median(m.as_str())).map(|v| v - base),
                );
            }
            let cheapest = kc_common::AttachFamily::ALL
                .iter()
                .filter_map(|f| Some((f.as_str(), added[f.as_str()]?)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let spread = |m: &str| results.get(&(i, m)).map_or(0.0, |r| mad(&r.ns));
            let noise_ns = spread("auto") + cheapest.map_or(0.0, |(f, _)| spread(f));
            let auto = added["auto"];
            let auto_vs_cheapest = auto
                .zip(cheapest)
                .map(|(a, (_, c))| a.max(1.0) / c.max(1.0));
            let auto_too_costly = auto
                .zip(cheapest)
                .is_some_and(|(a, (_, c))| auto_too_costly(a, c, noise_ns));
            CaseReport {
                collector: c.collector.into(),
                event: c.event.into(),
                op: c.op.into(),
                base_ns: base,
                auto_family: results[&(i, "auto")].family.clone(),
                auto_vs_cheapest,
                auto_too_costly,
                cheapest: cheapest.map(|(f, ns)| (f.to_string(), ns)),
                noise_ns,
                added_ns: added,
            }
        })
        .collect()
}

/// Runs every case on this host with the release's loader and objects.
fn on_host(rounds: usize, workload: &Path) -> Result<Vec<CaseReport>> {
    let cell = paths::project_root()
        .join("artifacts/cells")
        .join(CellId::core(host::host_libc()).to_string());
    let loader = cell.join(cell::LOADER);
    if !loader.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build` first",
            loader.display()
        );
    }
    let scratch = tempfile::tempdir()?;
    let out = scratch.path().join("ns");
    let sh = process::shell();
    let mut results: BTreeMap<(usize, &'static str), Measured> = BTreeMap::new();
    let bar = indicatif::ProgressBar::new((rounds * CASES.len() * modes().len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("host {bar:30} {pos}/{len} {msg}")
            .expect("progress template"),
    );
    for round in 0..rounds {
        for (i, c) in CASES.iter().enumerate() {
            let (op, n) = (c.op, c.n.to_string());
            bar.set_message(format!("round {} {}", round + 1, c.collector));
            // Each round starts at another mode, so that drift does not favour one.
            let mut order = modes();
            let start = round % order.len();
            order.rotate_left(start);
            for m in order {
                let _ = std::fs::remove_file(&out);
                let entry = results.entry((i, mode_name(m))).or_default();
                match m {
                    None => {
                        process::output(cmd!(sh, "{workload} {op} {n} {out}"))?;
                    }
                    Some(mode) => {
                        let (object, mode) =
                            (cell.join(format!("{}.bpf.o", c.collector)), mode.as_str());
                        let (report, _) = process::json(cmd!(
                            sh,
                            "{loader} --json --attach {mode} {object} -- {workload} {op} {n} {out}"
                        ))?;
                        if round == 0 {
                            (entry.family, entry.why_not) = event_family(&report, c.event);
                        }
                    }
                }
                bar.inc(1);
                let ns: f64 = std::fs::read_to_string(&out)
                    .with_context(|| format!("the {op} workload left no figure"))?
                    .trim()
                    .parse()?;
                entry.ns.push(ns);
            }
        }
    }
    bar.finish_and_clear();
    Ok(summarize(&results))
}

/// Runs every case in a guest of `series`: the plan goes into the initramfs, init runs it.
fn in_guest(
    rounds: usize,
    series: Option<Bucket>,
    bins: &vmtest::GuestBinaries,
) -> Result<(String, Vec<CaseReport>)> {
    let (_, lock) = kernels::load_checked_lock()?;
    let k = match series {
        Some(s) => kernels::select(&lock, &[s], false)?[0],
        None => lock
            .kernel
            .iter()
            .max_by_key(|k| KernelVersion::parse(&k.kernel_version).ok())
            .context("the lock has no kernel")?,
    };
    let vmlinuz = Fetcher::new(paths::cache_dir()).image(k)?;
    let cell = paths::project_root()
        .join("artifacts/cells")
        .join(CellId::core(host::host_libc()).to_string());
    let mut plan = format!("{rounds}\n");
    let mut objects = Vec::new();
    for c in CASES {
        plan.push_str(&format!("{} {} {}\n", c.collector, c.op, c.n / 10));
        let path = cell.join(format!("{}.bpf.o", c.collector));
        objects.push((
            format!("objects/{}.bpf.o", c.collector),
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (init, loader, workload) = (
        read(&bins.init)?,
        read(&bins.loader)?,
        read(&bins.workload)?,
    );
    let mut members = vec![
        Member::File {
            name: "init",
            data: &init,
            executable: true,
        },
        Member::File {
            name: "kc-loader",
            data: &loader,
            executable: true,
        },
        Member::File {
            name: "kc-bench-workload",
            data: &workload,
            executable: true,
        },
        Member::File {
            name: "bench-plan",
            data: plan.as_bytes(),
            executable: false,
        },
        Member::Dir("objects"),
    ];
    members.extend(objects.iter().map(|(n, d)| Member::File {
        name: n,
        data: d,
        executable: false,
    }));
    std::fs::create_dir_all(vmtest::work_dir())?;
    let initramfs = vmtest::work_dir().join(format!("bench-{}.cpio", k.release));
    atomic::write(&initramfs, &cpio::newc(&members))?;
    let accel = vmtest::probe_kvm(Arch::Amd64, &vmlinuz, &initramfs);
    let log = vmtest::work_dir().join(format!("bench-{}.log", k.release));
    // One boot runs everything; under TCG that takes tens of minutes and prints nothing.
    eprintln!(
        "bench overhead: guest {} ({}): {} cases x {} modes x {rounds} rounds in one boot",
        k.release,
        accel.qemu_name(),
        CASES.len(),
        modes().len()
    );
    let (how, console, _) = vmtest::boot(
        &k.release,
        Arch::Amd64,
        &vmlinuz,
        &initramfs,
        vmtest::Deadline::of_cpu(Duration::from_secs(1800)),
        &log,
        accel,
    )?;
    if how != vmtest::BootEnd::Reported {
        bail!(
            "the benchmark guest ({}) {how}; its console is in {}",
            k.release,
            log.display()
        );
    }
    let mut results: BTreeMap<(usize, &'static str), Measured> = BTreeMap::new();
    for line in console.lines().filter_map(|l| l.strip_prefix("KC-BENCH ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(i), Some(m)) = (
            CASES.iter().position(|c| Some(&c.collector) == f.get(1)),
            modes()
                .into_iter()
                .find(|m| Some(&mode_name(*m)) == f.get(2)),
        ) else {
            continue;
        };
        let ns: f64 = f.get(3).and_then(|s| s.parse().ok()).unwrap_or(-1.0);
        if ns >= 0.0 {
            results.entry((i, mode_name(m))).or_default().ns.push(ns);
        }
    }
    for chunk in console.split("KC-BENCH-REPORT ").skip(1) {
        let (head, rest) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let body = rest.split("KC-BENCH-REPORT-END").next().unwrap_or("");
        let mut words = head.split_whitespace();
        let (Some(collector), Some(mode)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(i) = CASES.iter().position(|c| c.collector == collector) else {
            continue;
        };
        let Some(m) = modes().into_iter().flatten().find(|m| m.as_str() == mode) else {
            continue;
        };
        let report: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
        let e = results.entry((i, m.as_str())).or_default();
        (e.family, e.why_not) = event_family(&report, CASES[i].event);
    }
    for i in 0..CASES.len() {
        for m in modes() {
            results.entry((i, mode_name(m))).or_default();
        }
    }
    Ok((
        format!("{} ({}, {})", k.release, k.series, accel.qemu_name()),
        summarize(&results),
    ))
}

fn print_table(title: &str, rows: &[CaseReport]) {
    println!(
        "\n{title}: ns added per event, median of the rounds (base: the operation with no program)"
    );
    println!(
        "{:<10} {:<22} {:<10} {:>9} {:>11} {:>9} {:>11} {:>9}  {:<10} {:>6}",
        "collector",
        "event",
        "op",
        "base",
        "trampoline",
        "probe",
        "tracepoint",
        "auto",
        "auto uses",
        "ratio"
    );
    for r in rows {
        let cell = |m: &str| {
            r.added_ns
                .get(m)
                .copied()
                .flatten()
                .map_or("n/a".to_string(), |v| format!("{v:+.0}"))
        };
        println!(
            "{:<10} {:<22} {:<10} {:>9.0} {:>11} {:>9} {:>11} {:>9}  {:<10} {:>6} {:>7}",
            r.collector,
            r.event,
            r.op,
            r.base_ns,
            cell("trampoline"),
            cell("probe"),
            cell("tracepoint"),
            cell("auto"),
            r.auto_family.as_deref().unwrap_or("-"),
            r.auto_vs_cheapest.map_or("-".into(), |v| format!("{v:.2}")),
            format!("±{:.0}", r.noise_ns),
        );
    }
    println!("(ratio: auto's added cost over the cheapest family that attaches; noise: the median absolute deviations of both, summed; n/a: no program of that family observes the event on this kernel)");
}

pub fn run(o: OverheadBench) -> Result<()> {
    if !host::is_root() {
        bail!("bench overhead loads BPF programs: run it as root");
    }
    let rounds = o.rounds.max(1);
    let bins = vmtest::static_binaries(&Toolchain::detect()?, Arch::Amd64)?;
    let release = paths::running_kernel_release()?;
    let host_rows = on_host(rounds, &bins.workload)?;
    let guest = if o.no_guest {
        None
    } else {
        Some(in_guest(rounds, o.kernel, &bins)?)
    };
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "rounds": rounds,
                "host": { "kernel": release, "cases": host_rows },
                "guest": guest.as_ref().map(|(k, rows)| serde_json::json!({ "kernel": k, "cases": rows })),
                "uncovered": UNCOVERED,
            }))?
        );
    } else {
        print_table(&format!("host kernel {release}"), &host_rows);
        if let Some((k, rows)) = &guest {
            print_table(&format!("guest kernel {k}"), rows);
        }
        for (which, why) in UNCOVERED {
            println!("not measured: {which}: {why}");
        }
    }
    let over: Vec<String> = (host_rows.iter().map(|r| ("host", r)))
        .chain(
            guest
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|r| ("guest", r))),
        )
        .filter(|(_, r)| r.auto_too_costly)
        .map(|(at, r)| format!("{at}: {}", too_costly_line(r)))
        .collect();
    if !over.is_empty() {
        bail!(
            "auto costs more than 1.2x the cheapest family beyond the noise:\n{}",
            over.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_fails_only_past_one_point_two_beyond_the_noise() {
        // The host's fd row of the issue: tracepoint +216, auto +572, noise 87.
        assert!(auto_too_costly(572.0, 216.0, 87.0));
        // Within 1.2x: fine, however quiet the run.
        assert!(!auto_too_costly(250.0, 216.0, 0.0));
        // Over 1.2x, but the excess is inside the noise.
        assert!(!auto_too_costly(300.0, 216.0, 25.0));
        assert!(auto_too_costly(300.0, 216.0, 10.0));
        // A free family (0 or less added) still leaves auto only the noise.
        assert!(!auto_too_costly(15.0, -3.0, 10.0));
        assert!(auto_too_costly(40.0, -3.0, 10.0));
    }

    #[test]
    fn the_failure_names_collector_event_and_figures() {
        let r = CaseReport {
            collector: "fd".into(),
            event: "kc_fd_open".into(),
            op: "open".into(),
            base_ns: 3339.0,
            added_ns: [("auto".to_string(), Some(572.0))].into(),
            auto_family: Some("tracepoint".into()),
            auto_vs_cheapest: Some(2.65),
            auto_too_costly: true,
            cheapest: Some(("tracepoint".into(), 216.0)),
            noise_ns: 87.0,
        };
        assert_eq!(
            too_costly_line(&r),
            "fd kc_fd_open (open): auto +572 ns (tracepoint) vs tracepoint +216 ns, 2.65x, noise ±87 ns"
        );
    }
}
