//! `cargo xtask bench consumers`: the Rust consumer (kc-agent: aya and the attach plan) vs
//! kc-loader (libbpf) on this host, every CO-RE object, `--attach auto`, rounds alternating
//! which goes first: the time from start to every object attached, the time to detach, and
//! whether both chose the same family for every event.

use anyhow::{ensure, Result};
use clap::Args;
use kc_common::report::LoaderReport;
use kc_common::CellId;
use serde::Serialize;
use xshell::cmd;

use crate::compile::cell;
use crate::paths::cell_dir;
use crate::test::agent::{bench_agent_binary, release_dir, setup_ms};
use crate::{host, process};

#[derive(Debug, Args)]
pub struct ConsumersBench {
    /// Rounds of each side; medians are reported
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Side {
    attach_ms: f64,
    attach_mad_ms: f64,
    detach_ms: f64,
}

#[derive(Debug, Serialize)]
struct ConsumersReport {
    objects: usize,
    rounds: usize,
    kc_loader: Side,
    kc_agent: Side,
    /// Rounds in which the two chose a different family for some event.
    rounds_disagreeing: usize,
}

fn side(setup: Vec<f64>, detach: Vec<f64>) -> Side {
    let (attach_ms, attach_mad_ms) = super::median_mad(&setup);
    Side {
        attach_ms,
        attach_mad_ms,
        detach_ms: super::median(detach),
    }
}

fn families(r: &LoaderReport) -> Vec<(String, String, Option<kc_common::AttachFamily>)> {
    r.objects
        .iter()
        .flat_map(|o| {
            o.events
                .iter()
                .map(|e| (o.object.clone(), e.event.clone(), e.family))
        })
        .collect()
}

pub fn run(o: ConsumersBench) -> Result<()> {
    ensure!(
        host::is_root(),
        "loading BPF programs needs root: run it as root (sudo -E cargo xtask bench consumers)"
    );
    let cell = cell_dir(CellId::core(host::host_libc()));
    let loader = cell.join(cell::LOADER);
    let scratch = tempfile::tempdir()?;
    let agent = bench_agent_binary(scratch.path())?;
    let release = &scratch.path().join("co-re");
    std::fs::create_dir(release)?;
    let names = release_dir(&cell, release)?;
    let objects: Vec<std::path::PathBuf> = names.iter().map(|n| release.join(n)).collect();
    let sh = process::shell();
    let rounds = o.rounds.max(1);
    let (mut loader_setup, mut loader_detach) = (Vec::new(), Vec::new());
    let (mut agent_setup, mut agent_detach) = (Vec::new(), Vec::new());
    let mut disagreeing = 0;
    for round in 0..rounds {
        let run_loader = || -> Result<LoaderReport> {
            let objects = &objects;
            Ok(process::json::<LoaderReport>(cmd!(
                sh,
                "{loader} --attach auto --json {objects...} -- true"
            ))?
            .0)
        };
        let run_agent = || -> Result<LoaderReport> {
            Ok(process::json::<LoaderReport>(cmd!(sh, "{agent} --release {release} -- true"))?.0)
        };
        let (theirs, ours) = if round % 2 == 0 {
            let t = run_loader()?;
            (t, run_agent()?)
        } else {
            let a = run_agent()?;
            (run_loader()?, a)
        };
        loader_setup.push(setup_ms(&theirs));
        loader_detach.push(theirs.ms.detach);
        agent_setup.push(setup_ms(&ours));
        agent_detach.push(ours.ms.detach);
        disagreeing += usize::from(families(&theirs) != families(&ours));
    }
    let report = ConsumersReport {
        objects: names.len(),
        rounds,
        kc_loader: side(loader_setup, loader_detach),
        kc_agent: side(agent_setup, agent_detach),
        rounds_disagreeing: disagreeing,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} CO-RE objects, --attach auto, {} rounds (medians)\n{:<10} {:>12} {:>10} {:>12}",
            report.objects, rounds, "", "attach ms", "± MAD", "detach ms"
        );
        for (name, s) in [
            ("kc-loader", &report.kc_loader),
            ("kc-agent", &report.kc_agent),
        ] {
            println!(
                "{name:<10} {:>12.0} {:>10.0} {:>12.0}",
                s.attach_ms, s.attach_mad_ms, s.detach_ms
            );
        }
        println!("rounds where the families chosen differ: {disagreeing}");
    }
    ensure!(
        disagreeing == 0,
        "kc-agent and kc-loader chose different families in {disagreeing} rounds"
    );
    Ok(())
}
