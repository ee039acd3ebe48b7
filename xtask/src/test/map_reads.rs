//! kc-loader's two ways of reading a table (`--map-reads`) give the same rows: two CO-RE
//! objects attached, their per-application tables (room to spare: nothing is evicted) filled
//! by `kc-fill-tables` with rows of ids no cgroup has and known counts, then read in batches
//! and one key at a time: both read every filled row with its counts; and a way the loader
//! does not know is refused before anything loads.

use anyhow::{ensure, Context, Result};
use kc_common::report::{LoaderReport, MapReads, Row};
use kc_common::{Arch, CellId};
use xshell::cmd;

use super::host::needs_root;
use super::Verdict;
use crate::compile::cell;
use crate::compile::toolchain::Toolchain;
use crate::paths::cell_dir;
use crate::{host, process, vmtest};

/// Rows filled into each table: more than one batch (1024) holds.
const ROWS: u32 = 3000;
/// Each table's size: the programs' own rows (this host's cgroups) find room beside them.
const TABLE: u32 = 8192;
/// The first id kc-fill-tables gives a row (2^40); row i's counters are each i % 7 + 1.
const FIRST_ID: u64 = 1 << 40;
/// Objects with a per-application table.
const OBJECTS: [&str; 2] = ["vfs.bpf.o", "process.bpf.o"];

pub fn map_reads() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let cell = cell_dir(CellId::core(host::host_libc()));
    let loader = cell.join(cell::LOADER);
    let filler = vmtest::static_binaries(&Toolchain::detect()?, Arch::Amd64)?.fill_tables;
    let objects: Vec<_> = OBJECTS.iter().map(|o| cell.join(o)).collect();
    let scratch = tempfile::tempdir()?;
    let out = scratch.path().join("filled");
    let sh = process::shell();
    let (rows, table) = (ROWS.to_string(), TABLE.to_string());
    let read = |reads: MapReads| -> Result<Vec<(String, Vec<Row>)>> {
        let (reads, objects) = (reads.to_string(), &objects);
        let (report, _) = process::json::<LoaderReport>(cmd!(
            sh,
            "{loader} --json --attach auto --group-by cgroup --table-size {table} --map-reads {reads} {objects...} -- {filler} {rows} {out}"
        ))?;
        let filled = std::fs::read_to_string(&out).context("kc-fill-tables wrote no count")?;
        ensure!(
            filled.trim() == format!("{} {}", OBJECTS.len(), OBJECTS.len() as u32 * ROWS),
            "kc-fill-tables filled {filled:?} (tables, rows), not {} tables of {ROWS}",
            OBJECTS.len()
        );
        report
            .objects
            .into_iter()
            .map(|o| {
                let mut rows: Vec<Row> = o
                    .per_cgroup
                    .with_context(|| format!("{}: no per-cgroup rows", o.object))?
                    .into_iter()
                    .filter(|r| r.cgroup.is_some_and(|id| id >= FIRST_ID))
                    .collect();
                rows.sort_by_key(|r| r.cgroup);
                Ok((o.object, rows))
            })
            .collect()
    };
    let (batch, per_key) = (read(MapReads::Batch)?, read(MapReads::PerKey)?);
    for (object, rows) in &batch {
        ensure!(
            rows.len() == ROWS as usize,
            "{object}: --map-reads batch read {} rows of the {ROWS} filled",
            rows.len()
        );
        for row in rows {
            let want = (row.cgroup.unwrap_or_default() - FIRST_ID) % 7 + 1;
            // Unobserved counters are null whatever the table holds.
            let wrong = row
                .counters
                .iter()
                .find(|(_, v)| v.is_some_and(|v| v != want));
            ensure!(
                wrong.is_none(),
                "{object}: row {} read {wrong:?}, filled with {want}",
                row.key()
            );
        }
    }
    ensure!(
        batch == per_key,
        "--map-reads batch and per-key read different rows from the same tables"
    );
    // Refused at the command line: nothing loads, status 2, the accepted values named.
    let refused = process::capture(cmd!(sh, "{loader} --map-reads sideways {objects...}"))?;
    let said = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        refused.status.code() == Some(2) && said.contains("expected batch or per-key"),
        "kc-loader --map-reads sideways: {} and {said:?}, not status 2 naming batch and per-key",
        refused.status
    );
    println!(
        "e2e: kc-loader read {} tables of {ROWS} rows the same in batches and key by key; --map-reads sideways refused",
        batch.len()
    );
    Ok(Verdict::Passed)
}
