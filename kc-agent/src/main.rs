//! `kc-agent`: a release's objects run through aya by their attach plan, around a workload, and
//! the report printed as `kc-loader --json` prints it (`kc_common::report::LoaderReport`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use kc_agent::{Options, Release, TableSizes};
use kc_common::plan::Streams;
use kc_common::report::{GroupBy, MapReads};
use kc_common::AttachMode;

#[derive(Debug, Parser)]
#[command(name = "kc-agent", version)]
struct Cli {
    /// An installed release directory holding attach-plan.json (`.../current/co-re`)
    #[arg(long)]
    release: PathBuf,
    /// `auto` (the cheapest family per event), or one family for every event; several
    /// (comma-separated): one pass each, the workload run in each
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    attach: Vec<AttachMode>,
    #[arg(long, default_value = "process")]
    group_by: GroupBy,
    /// How a collection reads each table: `batch` (one key at a time where the kernel has no
    /// batches) or `per-key`
    #[arg(long, default_value = "batch")]
    map_reads: MapReads,
    /// Rows of each per-application table
    #[arg(long)]
    table_size: Option<u32>,
    /// Rows of each flow table (connections)
    #[arg(long)]
    flow_table_size: Option<u32>,
    /// `off`: no stream event loads (released processes' rows stay in the tables)
    #[arg(long, default_value = "on")]
    streams: Streams,
    /// Object file names of the release (default: every object of its plan)
    #[arg(long = "object")]
    objects: Vec<String>,
    /// The workload: run while the objects are attached
    #[arg(last = true, required = true)]
    workload: Vec<String>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("kc-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let release = Release::open(&cli.release)?;
    let objects = if cli.objects.is_empty() {
        release.objects()
    } else {
        cli.objects
    };
    let mut loaded = release.load(
        &objects,
        TableSizes {
            apps: cli.table_size,
            flows: cli.flow_table_size,
        },
    );
    for attach in cli.attach {
        let options = Options {
            attach,
            group_by: cli.group_by,
            map_reads: cli.map_reads,
            streams: cli.streams,
        };
        let session = loaded.attach(&options)?;
        let mut child = std::process::Command::new(&cli.workload[0])
            .args(&cli.workload[1..])
            .spawn()
            .with_context(|| format!("running {:?}", cli.workload))?;
        let pid = child.id();
        let status = child.wait()?;
        let report = session.read(pid)?;
        println!("{}", serde_json::to_string(&report)?);
        if !status.success() {
            bail!("the workload ended {status} (--attach {attach})");
        }
    }
    Ok(())
}
