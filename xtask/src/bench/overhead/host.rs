//! The cases on this host's kernel, with the release's loader.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use super::{event_family, round_order, summarize, Case, CaseReport, Objects, Results, Run};
use crate::compile::cell;
use crate::process;

/// Runs every case `rounds` times in each mode, in each round's own order.
pub(super) fn run(
    cases: &[&Case],
    objects: &Objects,
    rounds: usize,
    workload: &Path,
) -> Result<Vec<CaseReport>> {
    let loader = objects.cell.join(cell::LOADER);
    if !loader.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build` first",
            loader.display()
        );
    }
    let scratch = tempfile::tempdir()?;
    let out = scratch.path().join("ns");
    let sh = process::shell();
    let mut results = Results::new();
    let bar = indicatif::ProgressBar::new((rounds * cases.len() * Run::all().len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("host {bar:30} {pos}/{len} {msg}")
            .expect("progress template"),
    );
    for round in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            let (op, n) = (c.op, c.n.to_string());
            bar.set_message(format!("round {} {}", round + 1, c.collector));
            for run in round_order(round) {
                let _ = std::fs::remove_file(&out);
                let entry = results.entry((i, run.name())).or_default();
                match (objects.for_run(c.collector, run), run.attach()) {
                    (Some(object), Some(mode)) => {
                        let (report, _) = process::json::<kc_common::report::LoaderReport>(cmd!(
                            sh,
                            "{loader} --json --attach {mode} {object} -- {workload} {op} {n} {out}"
                        ))?;
                        if round == 0 {
                            (entry.family, entry.why_not) = event_family(&report, c.event);
                        }
                    }
                    _ => {
                        process::output(cmd!(sh, "{workload} {op} {n} {out}"))?;
                    }
                }
                bar.inc(1);
                let ns: f64 = std::fs::read_to_string(&out)
                    .with_context(|| format!("the {op} workload left no figure"))?
                    .trim()
                    .parse()?;
                entry.ns.insert(round, ns);
            }
        }
    }
    bar.finish_and_clear();
    Ok(summarize(cases, &results))
}
