//! The cases in a guest of the matrix: every mode of every case in one boot (init reads the
//! plan from the initramfs and prints each figure and report on the console).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kc_common::report::LoaderReport;
use kc_common::{Arch, Bucket};

use super::{event_family, summarize, Case, CaseReport, Objects, Results, Run};
use crate::cpio::{self, Member};
use crate::kernels::{self, fetch::Fetcher};
use crate::{atomic, paths, vmtest};

/// Runs every case in a guest of `series` (default: the newest kernel of the matrix).
pub(super) fn run(
    cases: &[&Case],
    objects: &Objects,
    rounds: usize,
    series: Option<Bucket>,
    bins: &vmtest::GuestBinaries,
) -> Result<(String, Vec<CaseReport>)> {
    let (_, lock) = kernels::load_checked_lock()?;
    let k = kernels::one_or_newest(&lock, series)?;
    let vmlinuz = Fetcher::new(paths::cache_dir()).image(k)?;
    let mut plan = format!("{rounds}\n");
    let mut files = Vec::new();
    for c in cases {
        plan.push_str(&format!("{} {} {}\n", c.collector, c.op, c.n / 10));
        // The init's names for them (`bench` in kc-vmtest-init.c); once per collector, though
        // several cases share it.
        let floor = objects.floors.get(c.collector).cloned();
        for (name, path) in [
            ("bpf.o", Some(objects.of(c.collector))),
            ("floor.bpf.o", floor),
        ] {
            let name = format!("objects/{}.{name}", c.collector);
            if files.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let path =
                path.with_context(|| format!("{name}: no floor was built for {}", c.collector))?;
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((name, data));
        }
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
    members.extend(files.iter().map(|(n, d)| Member::File {
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
        cases.len(),
        Run::all().len()
    );
    let (how, console, _) = vmtest::boot(
        &k.release,
        vmtest::Vm::one_cpu(Arch::Amd64, accel),
        &vmlinuz,
        &initramfs,
        vmtest::Deadline::of_cpu(Duration::from_secs(1800)),
        &log,
    )?;
    if how != vmtest::BootEnd::Reported {
        bail!(
            "the benchmark guest ({}) {how}; its console is in {}",
            k.release,
            log.display()
        );
    }
    let results = read_console(cases, &console);
    Ok((
        format!("{} ({}, {})", k.release, k.series, accel.qemu_name()),
        summarize(cases, &results),
    ))
}

/// Each case's figures by round and mode, and the family each run gave its event, from the
/// guest's console.
fn read_console(cases: &[&Case], console: &str) -> Results {
    let mut results = Results::new();
    // Each line names its case by its line of the plan (the cases' order) and its collector.
    let case_of = |line: Option<&&str>, collector: Option<&&str>| {
        let i: usize = line?.parse().ok()?;
        (cases.get(i)?.collector == *collector?).then_some(i)
    };
    for line in console.lines().filter_map(|l| l.strip_prefix("KC-BENCH ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(i), Some(m)) = (
            case_of(f.get(1), f.get(2)),
            f.get(3).and_then(|name| Run::named(name)),
        ) else {
            continue;
        };
        let round: Option<usize> = f.first().and_then(|s| s.parse().ok());
        let ns: f64 = f.get(4).and_then(|s| s.parse().ok()).unwrap_or(-1.0);
        if let (Some(round), true) = (round, ns >= 0.0) {
            results
                .entry((i, m.name()))
                .or_default()
                .ns
                .insert(round, ns);
        }
    }
    for chunk in console.split("KC-BENCH-REPORT ").skip(1) {
        let (head, rest) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let body = rest.split("KC-BENCH-REPORT-END").next().unwrap_or("");
        let words: Vec<&str> = head.split_whitespace().collect();
        let (Some(i), Some(mode)) = (case_of(words.first(), words.get(1)), words.get(2)) else {
            continue;
        };
        let Some(m) = Run::named(mode).filter(|m| *m != Run::Alone) else {
            continue;
        };
        let e = results.entry((i, m.name())).or_default();
        (e.family, e.why_not) = match serde_json::from_str::<LoaderReport>(body.trim()) {
            Ok(report) => event_family(&report, cases[i].event),
            Err(e) => (
                None,
                format!("the guest's report is not a LoaderReport: {e}"),
            ),
        };
    }
    for i in 0..cases.len() {
        for m in Run::all() {
            results.entry((i, m.name())).or_default();
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::super::select_cases;
    use super::*;

    #[test]
    fn each_case_takes_its_own_lines_though_two_share_a_collector() {
        let cases = select_cases(&["pagefault".into()]).unwrap();
        assert_eq!(cases.len(), 2, "pagefault has two cases");
        let console = "\
KC-BENCH 0 0 pagefault none 100.0 0
KC-BENCH 0 1 pagefault none 200.0 0
KC-BENCH 0 1 pagefault floor-probe 250.0 0
KC-BENCH 0 1 vfs none 999.0 0
KC-BENCH 0 7 pagefault none 999.0 0
";
        let results = read_console(&cases, console);
        let ns = |i: usize, mode: &'static str| results[&(i, mode)].ns.get(&0).copied();
        assert_eq!(ns(0, "none"), Some(100.0));
        assert_eq!(ns(1, "none"), Some(200.0));
        assert_eq!(ns(1, "floor-probe"), Some(250.0));
        assert_eq!(ns(0, "floor-probe"), None);
        // Every case has every mode, measured or not.
        assert_eq!(results.len(), 2 * Run::all().len());
    }
}
