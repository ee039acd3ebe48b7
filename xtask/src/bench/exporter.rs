//! `cargo xtask bench exporter`: what a scrape of kc-exporter costs with its per-application
//! tables full, against the baseline of an exporter that reads the same processes' counts from
//! `/proc` (node_exporter's and process-exporter's way: `io`, `stat` and `comm` of each).
//!
//! The release is packaged from the built cells and installed by kc-install; kc-exporter runs
//! from the install with its defaults. `--processes` processes (default 4096, the tables' size)
//! are started and stay alive, each with rows in the tables (its exec reads, faults, forks);
//! then rounds alternate which goes first: one scrape (its time at the client, the exporter's
//! CPU time over it from every thread's schedstat, its RSS after) and one `/proc` pass over
//! the same pids (time; single-threaded, so its CPU time is its time). Then churn: before each
//! scrape `--processes` short-lived processes run and exit, and the scrape reports their rows
//! once and removes them (what a `/proc` reader cannot see at all).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::test::exporter::{free_port, Processes};

#[derive(Debug, Args)]
pub struct ExporterBench {
    /// Processes kept alive while scraping (the exporter's tables sized as it sizes them on a
    /// host running that many: twice, rounded up to a power of two)
    #[arg(long, default_value_t = 4096)]
    pub processes: usize,
    /// Rounds; medians are reported
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Side {
    median_ms: f64,
    p99_ms: f64,
    cpu_ms: f64,
    bytes: usize,
    lines: usize,
}

#[derive(Debug, Serialize)]
struct ExporterReport {
    processes: usize,
    rounds: usize,
    /// Rows in the per-application tables at the last scrape (sum over tables).
    table_rows: f64,
    /// Per-application series in the scrape (bounded by --max-series, default 2000).
    row_series: f64,
    kc_exporter: Side,
    proc_baseline: Side,
    /// Scrapes after `processes` short-lived processes ran and exited since the last one: each
    /// reports their rows once and removes them (a `/proc` reader sees none of them).
    churn: Side,
    /// Rows of exited processes a churn scrape reported and removed (median).
    churn_rows_removed: f64,
    /// The exporter's resident memory after the last scrape, and its peak.
    rss_kib: u64,
    peak_rss_kib: u64,
}

pub fn run(o: ExporterBench) -> Result<()> {
    ensure!(
        crate::host::is_root(),
        "bench exporter loads BPF programs: run it as root"
    );
    ensure!(
        o.rounds >= 1 && o.processes >= 1,
        "--rounds and --processes must be at least 1"
    );
    let scratch = tempfile::tempdir()?;
    let prefix = crate::test::exporter::install_release(scratch.path())?;
    let exe = prefix.join("current").join("kc-exporter");
    let port = free_port()?;
    let log = scratch.path().join("kc-exporter.log");
    // Started before the processes (their rows come from their start): the table size it would
    // choose on a host already running them, given.
    let table_size = (2 * o.processes).next_power_of_two().max(2048);
    let exporter = Processes(vec![Command::new(&exe)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--table-size")
        .arg(table_size.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?]);
    let pid = exporter.0[0].id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    // The first answer waits for every object to attach.
    let started = Instant::now();
    while client.get(&url).send().is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "kc-exporter did not serve {url} in 180 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("bench exporter: starting {} processes", o.processes);
    let mut held = Processes(Vec::with_capacity(o.processes));
    for _ in 0..o.processes {
        held.0.push(
            Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .spawn()
                .context("starting a sleep")?,
        );
    }
    let pids: Vec<u32> = held.0.iter().map(Child::id).collect();
    // One scrape first: rows of processes exited before (the setup's) are reported and gone.
    let mut last = client.get(&url).send()?.text()?;
    let (mut ours, mut ours_cpu, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut baseline = String::new();
    for round in 0..o.rounds {
        let scrape = |last: &mut String, ours: &mut Vec<f64>, cpu: &mut Vec<f64>| -> Result<()> {
            let cpu_before = cpu_ns(pid)?;
            let t = Instant::now();
            let r = client.get(&url).send()?;
            ensure!(r.status().is_success(), "{url} answered {}", r.status());
            *last = r.text()?;
            ours.push(ms(t));
            cpu.push((cpu_ns(pid)? - cpu_before) as f64 / 1e6);
            Ok(())
        };
        if round % 2 == 0 {
            scrape(&mut last, &mut ours, &mut ours_cpu)?;
            theirs.push(from_proc(&pids, &mut baseline));
        } else {
            theirs.push(from_proc(&pids, &mut baseline));
            scrape(&mut last, &mut ours, &mut ours_cpu)?;
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let sum = |name: &str| -> f64 {
        last.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let report = ExporterReport {
        processes: o.processes,
        rounds: o.rounds,
        table_rows: sum("kc_exporter_table_rows{"),
        row_series: sum("kc_exporter_row_series "),
        kc_exporter: side(&ours, &ours_cpu, &last),
        proc_baseline: side(&theirs, &theirs, &baseline),
        rss_kib: field("VmRSS:"),
        peak_rss_kib: field("VmHWM:"),
        churn: side(&[0.0], &[0.0], ""),
        churn_rows_removed: 0.0,
    };
    drop(held);
    // Churn: short-lived processes between scrapes; each scrape reports their rows once.
    let removed = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("kc_exporter_table_exited_removed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut before = removed(&client.get(&url).send()?.text()?);
    let (mut churn, mut churn_cpu, mut churn_removed) = (Vec::new(), Vec::new(), Vec::new());
    let mut churn_text = String::new();
    for _ in 0..o.rounds {
        for _ in 0..o.processes {
            Command::new("true")
                .stdin(Stdio::null())
                .status()
                .context("running true")?;
        }
        let cpu_before = cpu_ns(pid)?;
        let t = Instant::now();
        churn_text = client.get(&url).send()?.text()?;
        churn.push(ms(t));
        churn_cpu.push((cpu_ns(pid)? - cpu_before) as f64 / 1e6);
        let after = removed(&churn_text);
        churn_removed.push(after - before);
        before = after;
    }
    let report = ExporterReport {
        churn: side(&churn, &churn_cpu, &churn_text),
        churn_rows_removed: super::median(churn_removed),
        ..report
    };
    drop(exporter);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!("{}", table(&report));
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn side(times: &[f64], cpu: &[f64], text: &str) -> Side {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    Side {
        median_ms: super::median(times.to_vec()),
        p99_ms: sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1],
        cpu_ms: super::median(cpu.to_vec()),
        bytes: text.len(),
        lines: text.lines().count(),
    }
}

/// CPU time of every thread of `pid` so far (ns), from each thread's schedstat.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = t?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(&path) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// The baseline's scrape: each process's read and write counts, CPU ticks and faults from
/// `/proc/<pid>/{io,stat,comm}`, as exposition lines (into `out`). Its time in ms.
fn from_proc(pids: &[u32], out: &mut String) -> f64 {
    use std::fmt::Write;
    let t = Instant::now();
    out.clear();
    for pid in pids {
        let dir = Path::new("/proc").join(pid.to_string());
        let (Ok(io), Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(dir.join("io")),
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue;
        };
        let comm = comm.trim_end();
        for l in io.lines() {
            if let Some((k, v)) = l.split_once(": ") {
                let _ = writeln!(
                    out,
                    "process_io_{k}_total{{pid=\"{pid}\",comm=\"{comm}\"}} {v}"
                );
            }
        }
        // After the comm's closing parenthesis: state, ppid, ... minflt (10), majflt (12),
        // utime (14), stime (15), counted from the state as 3.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let f: Vec<&str> = rest.split(' ').collect();
            for (name, i) in [("minflt", 7), ("majflt", 9), ("utime", 11), ("stime", 12)] {
                if let Some(v) = f.get(i) {
                    let _ = writeln!(
                        out,
                        "process_{name}_total{{pid=\"{pid}\",comm=\"{comm}\"}} {v}"
                    );
                }
            }
        }
    }
    ms(t)
}

fn table(r: &ExporterReport) -> String {
    let row = |name: &str, s: &Side| {
        format!(
            "{name:<32} {:>10.1} {:>10.1} {:>10.1} {:>10} {:>10}\n",
            s.median_ms, s.p99_ms, s.cpu_ms, s.lines, s.bytes
        )
    };
    format!(
        "bench exporter: {} processes alive, {} rounds (medians; p99 is the slowest round below 100 rounds)\n\
         {:<32} {:>10} {:>10} {:>10} {:>10} {:>10}\n{}{}{}\
         churn: {} short-lived processes before each scrape, {:.0} rows of exited processes reported and removed per scrape (a /proc reader sees none)\n\
         table rows {:.0}, per-application series {:.0} (--max-series 2000); kc-exporter RSS {:.1} MiB, peak {:.1} MiB\n",
        r.processes,
        r.rounds,
        "",
        "ms",
        "p99 ms",
        "cpu ms",
        "lines",
        "bytes",
        row("kc-exporter scrape", &r.kc_exporter),
        row("/proc (io, stat, comm) baseline", &r.proc_baseline),
        row("kc-exporter scrape after churn", &r.churn),
        r.processes,
        r.churn_rows_removed,
        r.table_rows,
        r.row_series,
        r.rss_kib as f64 / 1024.0,
        r.peak_rss_kib as f64 / 1024.0,
    )
}
