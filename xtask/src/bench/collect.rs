//! `cargo xtask bench collect`: the cost of one collection with every per-application table
//! full. Every CO-RE object attached on this host (`--attach auto`, `--group-by cgroup`), its
//! tables sized to N rows and filled by the workload (`co-re/tests/kc-fill-tables.c`, with ids
//! no cgroup has: none is removed as exited), then read once by kc-loader (libbpf, C) and by
//! kc-agent (the Rust consumer), each with `--map-reads batch` (`BPF_MAP_LOOKUP_BATCH`) and
//! with `--map-reads per-key`, the baseline: one `BPF_MAP_GET_NEXT_KEY` and one lookup per row.
//! The figure is each report's own `ms.read` (kc-loader's includes writing the rows' JSON;
//! kc-agent's, its rows as values), median of the rounds, the two reads of a round in
//! alternating order.

use std::fmt;

use anyhow::{ensure, Context, Result};
use clap::Args;
use kc_common::report::MapReads;
use kc_common::{Arch, CellId};
use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::compile::cell;
use crate::compile::toolchain::Toolchain;
use crate::paths::cell_dir;
use crate::test::agent::{bench_agent_binary, release_dir};
use crate::{host, process, vmtest};

#[derive(Debug, Args)]
pub struct CollectBench {
    /// Rows of each per-application table (comma-separated: one table size each)
    #[arg(long, value_delimiter = ',', default_values_t = [4096, 65536])]
    pub rows: Vec<u32>,
    /// Rounds of each consumer and read; medians are reported
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

/// Which program collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Consumer {
    KcLoader,
    KcAgent,
}

impl fmt::Display for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Consumer::KcLoader => "kc-loader",
            Consumer::KcAgent => "kc-agent",
        })
    }
}

/// The part of a report this bench reads (the rows themselves are skipped).
#[derive(Debug, Deserialize)]
struct Brief {
    ms: BriefTimes,
    objects: Vec<BriefObject>,
}

#[derive(Debug, Deserialize)]
struct BriefTimes {
    read: f64,
}

#[derive(Debug, Deserialize)]
struct BriefObject {
    apps: Option<BriefApps>,
}

#[derive(Debug, Deserialize)]
struct BriefApps {
    rows: u64,
}

/// One consumer's collection with one way of reading, at one table size.
#[derive(Debug, Serialize)]
struct Side {
    read_ms: f64,
    read_mad_ms: f64,
    /// Rows the collection read, over all tables (median of the rounds).
    rows_read: u64,
    ns_per_row: f64,
}

#[derive(Debug, Serialize)]
struct Line {
    table_rows: u32,
    consumer: Consumer,
    tables: usize,
    rows_filled: u64,
    batch: Side,
    per_key: Side,
    /// per-key's time over batch's.
    speedup: f64,
}

fn side(ms: Vec<f64>, rows: Vec<u64>) -> Side {
    let (read_ms, read_mad_ms) = super::median_mad(&ms);
    let rows_read = super::median(rows.iter().map(|&r| r as f64).collect()) as u64;
    Side {
        read_ms,
        read_mad_ms,
        rows_read,
        ns_per_row: read_ms * 1e6 / rows_read.max(1) as f64,
    }
}

/// Whether the tables were full when read: the programs' own rows for this host's cgroups
/// may evict a few filled ones (the tables are LRU), no more than a tenth.
fn tables_full(rows_read: u64, rows_filled: u64) -> bool {
    rows_read * 10 >= rows_filled * 9
}

pub fn run(o: CollectBench) -> Result<()> {
    ensure!(
        host::is_root(),
        "loading BPF programs and filling their maps needs root: run it as root (sudo -E cargo xtask bench collect)"
    );
    let cell = cell_dir(CellId::core(host::host_libc()));
    let loader = cell.join(cell::LOADER);
    ensure!(
        loader.is_file(),
        "{} is missing: run `cargo xtask build` first",
        loader.display()
    );
    let scratch = tempfile::tempdir()?;
    let agent = bench_agent_binary(scratch.path())?;
    let filler = vmtest::static_binaries(&Toolchain::detect()?, Arch::Amd64)?.fill_tables;
    let release = &scratch.path().join("co-re");
    std::fs::create_dir(release)?;
    let names = release_dir(&cell, release)?;
    let objects: Vec<std::path::PathBuf> = names.iter().map(|n| release.join(n)).collect();
    let out = scratch.path().join("filled");
    let sh = process::shell();
    let rounds = o.rounds.max(1);
    let mut lines = Vec::new();
    let bar = indicatif::ProgressBar::new((o.rows.len() * 2 * rounds * 2) as u64);
    for &rows in &o.rows {
        let rows_s = rows.to_string();
        for consumer in [Consumer::KcLoader, Consumer::KcAgent] {
            let collect = |reads: MapReads| -> Result<(Brief, usize, u64)> {
                let _ = std::fs::remove_file(&out);
                let (objects, reads) = (&objects, reads.to_string());
                let common = [
                    "--group-by",
                    "cgroup",
                    "--table-size",
                    &rows_s,
                    "--map-reads",
                    &reads,
                ];
                let c = match consumer {
                    Consumer::KcLoader => cmd!(
                        sh,
                        "{loader} --json --attach auto {common...} {objects...} -- {filler} {rows_s} {out}"
                    ),
                    Consumer::KcAgent => cmd!(
                        sh,
                        "{agent} --release {release} {common...} -- {filler} {rows_s} {out}"
                    ),
                };
                let (brief, _) = process::json::<Brief>(c)?;
                let filled =
                    std::fs::read_to_string(&out).context("kc-fill-tables wrote no count")?;
                let (tables, inserted) = filled
                    .trim()
                    .split_once(' ')
                    .context("kc-fill-tables wrote no count")?;
                Ok((brief, tables.parse()?, inserted.parse()?))
            };
            let (mut batch, mut per_key) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
            let (mut tables, mut filled) = (0, 0);
            for round in 0..rounds {
                bar.set_message(format!("{rows} rows, {consumer}, round {}", round + 1));
                let order = if round % 2 == 0 {
                    [MapReads::Batch, MapReads::PerKey]
                } else {
                    [MapReads::PerKey, MapReads::Batch]
                };
                for reads in order {
                    let (brief, t, f) = collect(reads)?;
                    (tables, filled) = (t, f);
                    let read: u64 = brief
                        .objects
                        .iter()
                        .filter_map(|o| o.apps.as_ref())
                        .map(|a| a.rows)
                        .sum();
                    ensure!(
                        tables_full(read, filled),
                        "{consumer} --map-reads {reads} read {read} rows of the {filled} filled into {tables} tables: the tables were not full when read"
                    );
                    let into = if reads == MapReads::Batch {
                        &mut batch
                    } else {
                        &mut per_key
                    };
                    into.0.push(brief.ms.read);
                    into.1.push(read);
                    bar.inc(1);
                }
            }
            let (batch, per_key) = (side(batch.0, batch.1), side(per_key.0, per_key.1));
            lines.push(Line {
                table_rows: rows,
                consumer,
                tables,
                rows_filled: filled,
                speedup: per_key.read_ms / batch.read_ms.max(1e-3),
                batch,
                per_key,
            });
        }
    }
    bar.finish_and_clear();
    if o.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    println!(
        "One collection of every CO-RE object's per-application tables, full ({} objects; medians of {rounds} rounds; baseline: per-key)",
        names.len()
    );
    println!(
        "{:>10} {:<10} {:>6} {:>9} {:>12} {:>10} {:>14} {:>12} {:>8}",
        "rows/table",
        "consumer",
        "tables",
        "rows",
        "batch ms",
        "ns/row",
        "per-key ms",
        "ns/row",
        "speedup"
    );
    for l in &lines {
        println!(
            "{:>10} {:<10} {:>6} {:>9} {:>7.1} ±{:<4.1} {:>10.0} {:>9.1} ±{:<4.1} {:>12.0} {:>7.2}x",
            l.table_rows,
            l.consumer,
            l.tables,
            l.batch.rows_read,
            l.batch.read_ms,
            l.batch.read_mad_ms,
            l.batch.ns_per_row,
            l.per_key.read_ms,
            l.per_key.read_mad_ms,
            l.per_key.ns_per_row,
            l.speedup
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_a_tenth_short_is_not_full() {
        assert!(super::tables_full(65_536, 65_536));
        assert!(super::tables_full(59_000, 65_536));
        assert!(!super::tables_full(58_000, 65_536));
        assert!(!super::tables_full(0, 4096));
    }

    #[test]
    fn sides_take_the_median_round() {
        let s = super::side(vec![3.0, 1.0, 2.0], vec![100, 100, 90]);
        assert_eq!(s.read_ms, 2.0);
        assert_eq!(s.read_mad_ms, 1.0);
        assert_eq!(s.rows_read, 100);
        assert_eq!(s.ns_per_row, 20_000.0);
    }
}
