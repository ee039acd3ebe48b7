//! `cargo xtask bench stream`: what reaches the agent of a flood of short-lived processes
//! (`kc-bench-workload fork N`: vfork, exit, wait, N times; the process collector) or of
//! short-lived TCP connections (`--collector connections`: `kc-bench-workload tcpconn N`, two
//! flows each), attached on this host by kc-loader, two ways:
//! - stream (`--streams on`), at each ring size (`--stream-size`; 256 KiB is the objects'):
//!   each released process's exit or closed flow goes with its final row into the ring buffer
//!   (`process_exits`, `connections_closed`), which kc-loader's poller drains as they come.
//!   Lost: records the ring had no room for (`stream_lost`; their rows stay in the table).
//! - hash table, the baseline (`--streams off`, as where the kernel has no ring buffers): the
//!   rows stay in the LRU table of `--table-size` rows until the agent reads it, here once at
//!   the end. Lost: rows evicted before that read (the report's `apps.evicted` or
//!   `flow_table.evicted`).
//!
//! Each way's figures are medians of the rounds, the two ways alternating in order.

use anyhow::{ensure, Context, Result};
use clap::Args;
use kc_common::flow::TcpState;
use kc_common::report::{LoaderReport, ObjectReport};
use kc_common::{Arch, CellId};
use serde::Serialize;
use xshell::cmd;

use crate::compile::cell;
use crate::compile::toolchain::Toolchain;
use crate::paths::cell_dir;
use crate::{host, process, vmtest};

/// The collector whose ends the flood streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flooded {
    /// Processes' exits (`kc-bench-workload fork`).
    Process,
    /// TCP flows' closes (`kc-bench-workload tcpconn`: two flows a connection).
    Connections,
}

impl Flooded {
    fn object(self) -> &'static str {
        match self {
            Flooded::Process => "process.bpf.o",
            Flooded::Connections => "connections.bpf.o",
        }
    }

    /// kc-bench-workload's operation, and the ends each makes.
    fn op(self) -> (&'static str, u64) {
        match self {
            Flooded::Process => ("fork", 1),
            Flooded::Connections => ("tcpconn", 2),
        }
    }

    /// kc-loader's option sizing the table the rows wait in.
    fn table_flag(self) -> &'static str {
        match self {
            Flooded::Process => "--table-size",
            Flooded::Connections => "--flow-table-size",
        }
    }

    /// What the flood ends: processes, or flows.
    fn ends(self) -> &'static str {
        match self {
            Flooded::Process => "exits",
            Flooded::Connections => "closes",
        }
    }
}

#[derive(Debug, Args)]
pub struct StreamBench {
    /// Whose ends the flood streams
    #[arg(long, value_enum, default_value = "process")]
    pub collector: Flooded,
    /// Short-lived processes (connections) the flood makes
    #[arg(long, default_value_t = 100_000)]
    pub processes: u64,
    /// Rows of the process (flow) table: the hash path's room for ends between reads
    #[arg(long, default_value_t = 2048)]
    pub table_size: u32,
    /// Bytes of the ring buffer, one stream run each (comma-separated)
    #[arg(long, value_delimiter = ',', default_values_t = [262_144, 1_048_576])]
    pub ring_bytes: Vec<u32>,
    /// Rounds of each way; medians are reported
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

/// How the exits reach the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Way {
    /// Through a ring buffer of this many bytes.
    Stream {
        ring_bytes: u32,
    },
    HashTable,
}

impl Way {
    /// kc-loader's arguments for this way.
    fn loader_args(self) -> Vec<String> {
        match self {
            Way::Stream { ring_bytes } => vec![
                "--streams".into(),
                "on".into(),
                "--stream-size".into(),
                ring_bytes.to_string(),
            ],
            Way::HashTable => vec!["--streams".into(), "off".into()],
        }
    }
}

impl std::fmt::Display for Way {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Way::Stream { ring_bytes } => f.pad(&format!("stream {} KiB", ring_bytes / 1024)),
            Way::HashTable => f.pad("hash table"),
        }
    }
}

/// What one run delivered of the flood's ends (exits, or closes).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
struct Delivered {
    /// Ends the collector counted (every process of the host released, or flow closed,
    /// meanwhile).
    ends: u64,
    /// Final rows the agent got: streamed with their ends, or read from the table.
    rows: u64,
    /// Final rows lost: refused by the ring (stream) or evicted before the read (hash table).
    lost: u64,
    /// The flood's time, in seconds.
    seconds: f64,
}

/// The figures of one report of the flooded collector.
fn delivered(o: &ObjectReport, flooded: Flooded, way: Way, seconds: f64) -> Result<Delivered> {
    let total = |name: &str| o.total(name).with_context(|| format!("no {name} counter"));
    let (ends, table_rows, evicted) = match flooded {
        Flooded::Process => {
            let apps = o.apps.as_ref().context("the report has no table")?;
            let exited = o.rows().iter().filter(|r| r.exited).count() as u64;
            (total("exit")?, exited, apps.evicted)
        }
        Flooded::Connections => {
            let table = o
                .flow_table
                .as_ref()
                .context("the report has no flow table")?;
            let flows = o.flows.iter().flatten();
            let closed = flows.filter(|f| f.state == TcpState::Close).count() as u64;
            (total("tcp_closed")?, closed, table.evicted)
        }
    };
    let streamed_rows: u64 = o.streams.iter().flatten().map(|(_, s)| s.rows).sum();
    Ok(Delivered {
        ends,
        rows: table_rows + streamed_rows,
        lost: match way {
            Way::Stream { .. } => total("stream_lost")? + evicted,
            Way::HashTable => evicted,
        },
        seconds,
    })
}

#[derive(Debug, Serialize)]
struct Line {
    collector: Flooded,
    way: Way,
    processes: u64,
    table_size: u32,
    /// Medians over the rounds.
    ends: f64,
    rows: f64,
    lost: f64,
    lost_per_cent: f64,
    seconds: f64,
}

fn line(way: Way, o: &StreamBench, runs: &[Delivered]) -> Line {
    let med = |f: fn(&Delivered) -> f64| super::median(runs.iter().map(f).collect());
    let (ends, lost) = (med(|d| d.ends as f64), med(|d| d.lost as f64));
    Line {
        collector: o.collector,
        way,
        processes: o.processes,
        table_size: o.table_size,
        ends,
        rows: med(|d| d.rows as f64),
        lost,
        lost_per_cent: 100.0 * lost / ends.max(1.0),
        seconds: med(|d| d.seconds),
    }
}

pub fn run(o: StreamBench) -> Result<()> {
    ensure!(
        host::is_root(),
        "loading BPF programs needs root: run it as root (sudo -E cargo xtask bench stream)"
    );
    let cell = cell_dir(CellId::core(host::host_libc()));
    let (loader, object) = (cell.join(cell::LOADER), cell.join(o.collector.object()));
    ensure!(
        loader.is_file() && object.is_file(),
        "{} or {} is missing: run `cargo xtask build --core` first",
        loader.display(),
        object.display()
    );
    let flood = vmtest::static_binaries(&Toolchain::detect()?, Arch::Amd64)?.workload;
    let scratch = tempfile::tempdir()?;
    let out = scratch.path().join("ns-per-op");
    let ((op, ends_per_op), table_flag) = (o.collector.op(), o.collector.table_flag());
    let sh = process::shell();
    let (n, rows) = (o.processes.to_string(), o.table_size.to_string());
    let rounds = o.rounds.max(1);
    let mut ways: Vec<Way> = o
        .ring_bytes
        .iter()
        .map(|&ring_bytes| Way::Stream { ring_bytes })
        .collect();
    ways.push(Way::HashTable);
    let mut runs: Vec<Vec<Delivered>> = vec![Vec::new(); ways.len()];
    let bar = indicatif::ProgressBar::new((rounds * ways.len()) as u64);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..ways.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let way = ways[i];
            bar.set_message(format!("{way}, round {}", round + 1));
            let args = way.loader_args();
            let (report, _) = process::json::<LoaderReport>(cmd!(
                sh,
                "{loader} --json --group-by process {table_flag} {rows} {args...} {object} -- {flood} {op} {n} {out}"
            ))?;
            let ns: f64 = std::fs::read_to_string(&out)
                .context("kc-bench-workload wrote no figure")?
                .trim()
                .parse()
                .context("kc-bench-workload's figure")?;
            let object = report.objects.first().context("an empty report")?;
            let d = delivered(object, o.collector, way, ns * o.processes as f64 / 1e9)?;
            ensure!(
                d.ends >= o.processes * ends_per_op,
                "{way}: the collector counted {} {} of a flood of {} ({ends_per_op} each)",
                d.ends,
                o.collector.ends(),
                o.processes
            );
            runs[i].push(d);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let lines: Vec<Line> = ways
        .iter()
        .zip(&runs)
        .map(|(&way, runs)| line(way, &o, runs))
        .collect();
    if o.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    let what = match o.collector {
        Flooded::Process => "short-lived processes, the process collector's table",
        Flooded::Connections => {
            "short-lived TCP connections, the connections collector's flow table"
        }
    };
    println!(
        "A flood of {} {what} at {} rows, read once at the end (medians of {rounds} rounds; baseline: hash table)",
        o.processes, o.table_size
    );
    println!(
        "{:<16} {:>9} {:>11} {:>9} {:>8} {:>9}",
        "way",
        o.collector.ends(),
        "final rows",
        "lost",
        "lost %",
        "flood s"
    );
    for l in &lines {
        println!(
            "{:<16} {:>9.0} {:>11.0} {:>9.0} {:>7.2}% {:>9.2}",
            l.way, l.ends, l.rows, l.lost, l.lost_per_cent, l.seconds
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::json;

    #[test]
    fn losses_are_the_rings_refusals_or_the_tables_evictions() {
        let o = report(
            json!({"objects": [{"object": "process.bpf.o", "status": "ok",
            "counters": {"exit": 10, "stream_lost": 3},
            "per_process": [{"tgid": 5, "exited": true, "counters": {}},
                            {"tgid": 6, "exited": false, "counters": {}}],
            "apps": {"group_by": "process", "table_size": 4, "rows": 2, "insertions": 9,
                     "evicted": 2, "failures": 0, "removed_exited": 1},
            "streams": {"process_exits": {"record": "kc_process_exit", "received": 5, "bytes": 560,
                "malformed": 0, "rows": 5, "not_listed": 0, "exits": []}}}]}),
        )
        .objects
        .remove(0);
        let d = delivered(&o, Flooded::Process, Way::Stream { ring_bytes: 4096 }, 1.0).unwrap();
        assert_eq!((d.ends, d.rows, d.lost), (10, 6, 5));
        let d = delivered(&o, Flooded::Process, Way::HashTable, 1.0).unwrap();
        assert_eq!((d.ends, d.rows, d.lost), (10, 6, 2));
    }

    #[test]
    fn a_connections_flood_counts_closed_flows_in_the_table_and_the_stream() {
        let flow = |state: &str| {
            json!({"family": "ipv4", "saddr": "127.0.0.1", "sport": 1, "daddr": "127.0.0.1",
                   "dport": 2, "state": state, "direction": "connect", "first_ns": 1,
                   "last_ns": 2, "owner": null, "counts": null})
        };
        let o = report(
            json!({"objects": [{"object": "connections.bpf.o", "status": "ok",
            "counters": {"tcp_closed": 8, "stream_lost": 1},
            "flows": [flow("CLOSE"), flow("ESTABLISHED")],
            "flow_table": {"map": "connections_flows", "table_size": 4, "rows": 2,
                           "insertions": 9, "evicted": 3, "removed_closed": 1},
            "streams": {"connections_closed": {"record": "kc_flow_close", "received": 4,
                "bytes": 576, "malformed": 0, "rows": 4, "not_listed": 0, "closes": []}}}]}),
        )
        .objects
        .remove(0);
        let d = delivered(
            &o,
            Flooded::Connections,
            Way::Stream { ring_bytes: 4096 },
            1.0,
        )
        .unwrap();
        assert_eq!((d.ends, d.rows, d.lost), (8, 5, 4));
        let d = delivered(&o, Flooded::Connections, Way::HashTable, 1.0).unwrap();
        assert_eq!(d.lost, 3);
    }
}
