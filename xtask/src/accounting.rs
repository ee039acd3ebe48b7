//! `kernel-accounting.toml`: every counter against the kernel's own accounting, and the judge
//! of one loader report by it (pure). The loader reports, per pass, the kernel's figures for
//! its workload process and the system's deltas over the workload's run (inner) and from
//! before attach to after detach (outer); see the file's header.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use kc_common::report::{Figures, LoaderReport, ObjectReport};
use serde::Deserialize;

pub const FILE: &str = "kernel-accounting.toml";

/// One counter's kernel equivalent, or why it has none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equivalent {
    /// The workload's own row equals these figures of the workload process, summed.
    pub workload: Option<Vec<String>>,
    /// The totals lie between these system figures' inner and outer deltas, summed.
    pub system: Option<Vec<String>>,
    /// The kernel keeps no equivalent: why.
    pub none: Option<String>,
    /// What makes ours and the kernel's the same count.
    pub why: Option<String>,
    /// Our figure is these counters summed (default: the counter alone).
    pub sum: Option<Vec<String>>,
    /// The kernel's workload figure may exceed ours by up to this much: what it counts that
    /// we do not (`why` says what).
    #[serde(default)]
    pub kernel_more: u64,
    /// A system total is judged against the outer window alone: the kernel counts, besides
    /// ours, events no program can see (`why` says which).
    #[serde(default)]
    pub upper_only: bool,
    /// Its events happen in softirq too (packets a device sends and receives there): before
    /// [`MISSES_COUNTED_FROM`] a probe or tracepoint program that fires while another BPF
    /// program runs on its CPU is skipped and counted nowhere (`bpf_prog_active` in
    /// trace_call_bpf), so there, for those families, the total is held to the outer window
    /// alone.
    #[serde(default)]
    pub softirq: bool,
}

/// The first kernel that counts a kprobe's or perf tracepoint's skipped runs in the program's
/// `recursion_misses` (`missed_runs` in the report).
pub const MISSES_COUNTED_FROM: kc_common::KernelVersion = kc_common::KernelVersion::new(6, 7, 0);

/// Whether `object`'s skipped runs in `pass` may go uncounted: a kernel before
/// [`MISSES_COUNTED_FROM`] and an event of the object in the probe or tracepoint family.
fn misses_unreported(object: &ObjectReport, pass: &LoaderReport) -> bool {
    let old = kc_common::KernelVersion::parse(&pass.kernel).is_ok_and(|v| v < MISSES_COUNTED_FROM);
    old && object.events.iter().any(|e| {
        matches!(
            e.family,
            Some(kc_common::AttachFamily::Probe | kc_common::AttachFamily::Tracepoint)
        )
    })
}

/// One counter compared: ours, and the kernel's figure (workload) or window (system) as
/// the lowest and highest it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub counter: String,
    pub ours: u64,
    pub kernel_low: u64,
    pub kernel_high: u64,
}

/// What one report's comparisons came to.
#[derive(Debug, Default)]
pub struct Judged {
    /// Counters compared with a kernel figure.
    pub compared: Vec<Comparison>,
    /// "counter: ours N, the kernel's ..." for each that disagreed.
    pub wrong: Vec<String>,
}

/// Collector → counter → its kernel equivalent.
pub type Table = BTreeMap<String, BTreeMap<String, Equivalent>>;

pub fn load(root: &Path) -> Result<Table> {
    let path = root.join(FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    validate(&table).with_context(|| format!("checking {}", path.display()))?;
    Ok(table)
}

/// Each entry says exactly one of workload, system, none; a comparison says why.
fn validate(table: &Table) -> Result<()> {
    for (collector, counters) in table {
        for (name, e) in counters {
            let forms = [e.workload.is_some(), e.system.is_some(), e.none.is_some()];
            if forms.iter().filter(|f| **f).count() != 1 {
                bail!("{collector}.{name}: give exactly one of workload, system, none");
            }
            if (e.upper_only || e.softirq) && e.system.is_none() {
                bail!("{collector}.{name}: upper_only and softirq bound a system total only");
            }
            if e.none.is_none() && e.why.as_deref().is_none_or(str::is_empty) {
                bail!("{collector}.{name}: say why ours and the kernel's are the same count (why = \"...\")");
            }
        }
    }
    Ok(())
}

/// The sum of `figures` in a report's figure map, a figure this kernel lacks counting 0 (its
/// kernel counts no such thing: swpout_zero before 6.12); None when it lacks them all or the
/// map is null (not judged).
fn figure(map: Option<&Figures>, figures: &[String]) -> Option<u64> {
    let map = map?;
    let present: Vec<u64> = figures.iter().filter_map(|f| map.get(f).copied()).collect();
    (!present.is_empty()).then(|| present.iter().sum())
}

/// Our figure: the named counters of `counters` summed; None when one is unobserved.
fn ours(counters: &BTreeMap<String, Option<u64>>, name: &str, e: &Equivalent) -> Option<u64> {
    let one = |n: &str| counters.get(n).copied().flatten();
    match &e.sum {
        Some(names) => names.iter().map(|n| one(n)).sum(),
        None => one(name),
    }
}

/// Every observed counter of one object in `pass` (a loader report) against the kernel: what
/// disagrees, as "counter: ours N, the kernel's ..." lines. Counters the table lacks are listed
/// as wrong too.
pub fn judge(table: &Table, collector: &str, object: &ObjectReport, pass: &LoaderReport) -> Judged {
    let mut judged = Judged::default();
    let Some(equivalents) = table.get(collector) else {
        judged.wrong.push(format!(
            "{collector} has no table: add [{collector}] to {FILE}"
        ));
        return judged;
    };
    let kernel = &pass.kernel_figures;
    // Runs the kernel skipped (a program already running on that CPU): ours may be low by so
    // many, and the report says so.
    let missed = object.missed_runs;
    let missed_note = match missed {
        0 => String::new(),
        m => format!(", {m} runs of its programs missed"),
    };
    let row = pass
        .workload()
        .and_then(|pid| object.row_of(pid))
        .map(|r| &r.counters);
    let no_counters = BTreeMap::new();
    let totals = object.counters.as_ref().unwrap_or(&no_counters);
    for (name, total) in totals {
        let Some(e) = equivalents.get(name) else {
            judged.wrong.push(format!(
                "{name}: not in {FILE}: add its kernel equivalent or why it has none"
            ));
            continue;
        };
        if total.is_none() {
            continue;
        }
        let why = e.why.as_deref().unwrap_or("");
        if let Some(figures) = &e.workload {
            let (Some(row), Some(theirs)) = (row, figure(kernel.workload.as_ref(), figures)) else {
                continue;
            };
            let Some(n) = ours(row, name, e) else {
                continue;
            };
            judged.compared.push(Comparison {
                counter: name.clone(),
                ours: n,
                kernel_low: theirs,
                kernel_high: theirs,
            });
            if !(n..=n + e.kernel_more + missed).contains(&theirs) {
                let slack = match e.kernel_more {
                    0 => String::new(),
                    m => format!(", at most {m} above ours"),
                };
                judged.wrong.push(format!(
                    "{name}: ours {n} in the workload's row, the kernel's {} {theirs}{slack}{missed_note} ({why})",
                    figures.join(" + ")
                ));
            }
        }
        if let Some(figures) = &e.system {
            let (Some(outer), Some(n)) =
                (figure(Some(&kernel.outer), figures), ours(totals, name, e))
            else {
                continue;
            };
            let inner = figure(kernel.inner.as_ref(), figures).unwrap_or(0);
            judged.compared.push(Comparison {
                counter: name.clone(),
                ours: n,
                kernel_low: inner,
                kernel_high: outer,
            });
            // Held to the workload's window too, unless the kernel counts more than we see or
            // left our skipped runs uncounted.
            let judged_below = !e.upper_only && (!e.softirq || !misses_unreported(object, pass));
            if (n + missed < inner && judged_below) || n > outer {
                judged.wrong.push(format!(
                    "{name}: ours {n} in the totals, the kernel's {} counted {inner} while the workload ran and {outer} from attach to detach{missed_note} ({why})",
                    figures.join(" + ")
                ));
            }
        }
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::{object, report};
    use serde_json::{json, Value};

    fn table() -> Table {
        let t: Table = toml::from_str(
            "[pagefault]\nfault = { workload = [\"stat.minflt\", \"stat.majflt\"], why = \"same faults\" }\n\
             major = { workload = [\"stat.majflt\"], why = \"maj_flt\" }\nerror = { none = \"none kept\" }\n\
             [process]\nfork = { system = [\"stat.processes\"], why = \"total_forks\" }\n",
        )
        .unwrap();
        validate(&t).unwrap();
        t
    }

    fn pass(minflt: u64, inner: u64, outer: u64) -> LoaderReport {
        report(json!({
            "workload_pid": 7,
            "kernel_figures": {
                "workload": {"stat.minflt": minflt, "stat.majflt": 2},
                "inner": {"stat.processes": inner},
                "outer": {"stat.processes": outer}
            }
        }))
    }

    fn faults(fault: u64, major: Value) -> ObjectReport {
        object(json!({
            "counters": {"fault": fault + 10, "major": major, "error": 0},
            "per_process": [{"tgid": 7, "counters": {"fault": fault, "major": major, "error": 0}},
                            {"tgid": 8, "counters": {"fault": 1}}]
        }))
    }

    #[test]
    fn the_workloads_row_must_equal_the_kernels_figures() {
        let t = table();
        assert!(
            judge(&t, "pagefault", &faults(102, 2.into()), &pass(100, 0, 0))
                .wrong
                .is_empty()
        );
        // Every fault counted twice: named with ours and the kernel's.
        let wrong = judge(&t, "pagefault", &faults(204, 4.into()), &pass(100, 0, 0)).wrong;
        assert_eq!(
            wrong,
            [
                "fault: ours 204 in the workload's row, the kernel's stat.minflt + stat.majflt 102 (same faults)",
                "major: ours 4 in the workload's row, the kernel's stat.majflt 2 (maj_flt)"
            ]
        );
        // An unobserved counter is not judged; a kernel without the figure is not either.
        assert!(
            judge(&t, "pagefault", &faults(102, Value::Null), &pass(100, 0, 0))
                .wrong
                .is_empty()
        );
        let mut p = pass(100, 0, 0);
        p.kernel_figures.workload = None;
        let judged = judge(&t, "pagefault", &faults(999, 9.into()), &p);
        assert!(judged.wrong.is_empty() && judged.compared.is_empty());
    }

    #[test]
    fn the_kernel_may_count_more_only_by_what_the_table_says() {
        let t: Table = toml::from_str(
            "[vfs]\nread = { workload = [\"io.syscr\"], kernel_more = 8, why = \"exec's own reads\" }\n",
        )
        .unwrap();
        let report = |read: u64| {
            object(
                json!({"counters": {"read": read}, "per_process": [{"tgid": 7, "counters": {"read": read}}]}),
            )
        };
        let pass = crate::report_fixtures::report(
            json!({"workload_pid": 7, "kernel_figures": {"workload": {"io.syscr": 50}}}),
        );
        assert!(judge(&t, "vfs", &report(42), &pass).wrong.is_empty());
        assert!(judge(&t, "vfs", &report(50), &pass).wrong.is_empty());
        assert_eq!(
            judge(&t, "vfs", &report(41), &pass).wrong,
            ["read: ours 41 in the workload's row, the kernel's io.syscr 50, at most 8 above ours (exec's own reads)"]
        );
        assert_eq!(
            judge(&t, "vfs", &report(51), &pass).wrong.len(),
            1,
            "never below ours"
        );
        // Runs the kernel skipped widen the kernel's side by as many, and are named.
        let mut low = report(40);
        assert_eq!(judge(&t, "vfs", &low, &pass).wrong.len(), 1);
        low.missed_runs = 2;
        assert!(judge(&t, "vfs", &low, &pass).wrong.is_empty());
        low.per_process.as_mut().unwrap()[0]
            .counters
            .insert("read".into(), Some(39));
        assert_eq!(
            judge(&t, "vfs", &low, &pass).wrong,
            ["read: ours 39 in the workload's row, the kernel's io.syscr 50, at most 8 above ours, 2 runs of its programs missed (exec's own reads)"]
        );
    }

    #[test]
    fn totals_must_lie_between_the_windows() {
        let t = table();
        let forks = |n: u64| object(json!({"counters": {"fork": n}}));
        assert!(judge(&t, "process", &forks(6), &pass(0, 6, 9))
            .wrong
            .is_empty());
        assert_eq!(
            judge(&t, "process", &forks(9), &pass(0, 6, 9)).compared,
            [Comparison {
                counter: "fork".into(),
                ours: 9,
                kernel_low: 6,
                kernel_high: 9
            }]
        );
        assert_eq!(
            judge(&t, "process", &forks(5), &pass(0, 6, 9)).wrong,
            ["fork: ours 5 in the totals, the kernel's stat.processes counted 6 while the workload ran and 9 from attach to detach (total_forks)"]
        );
        assert_eq!(
            judge(&t, "process", &forks(10), &pass(0, 6, 9)).wrong.len(),
            1
        );
        // Upper-bounded only: below the workload's window passes, above the outer one fails.
        let mut upper = t.clone();
        if let Some(fork) = upper.get_mut("process").and_then(|p| p.get_mut("fork")) {
            fork.upper_only = true;
        }
        assert!(judge(&upper, "process", &forks(2), &pass(0, 6, 9))
            .wrong
            .is_empty());
        assert_eq!(
            judge(&upper, "process", &forks(10), &pass(0, 6, 9))
                .wrong
                .len(),
            1
        );
        // Softirq's events: below the workload's window passes only before 6.7 and in a family
        // whose skipped runs went uncounted there.
        let mut softirq = t.clone();
        if let Some(fork) = softirq.get_mut("process").and_then(|p| p.get_mut("fork")) {
            fork.softirq = true;
        }
        let in_family = |family: &str| {
            object(
                json!({"counters": {"fork": 5}, "events": [{"event": "kc_process_fork", "family": family}]}),
            )
        };
        let on = |kernel: &str| {
            let mut p = pass(0, 6, 9);
            p.kernel = kernel.into();
            p
        };
        for (family, kernel, wrong) in [
            ("tracepoint", "6.1.0-50-cloud-amd64", 0),
            ("probe", "5.10.0-46-cloud-amd64", 0),
            ("tracepoint", "6.12.117+deb13-cloud-amd64", 1),
            ("trampoline", "5.10.0-46-cloud-amd64", 1),
        ] {
            let judged = judge(&softirq, "process", &in_family(family), &on(kernel));
            assert_eq!(
                judged.wrong.len(),
                wrong,
                "{family} on {kernel}: {:?}",
                judged.wrong
            );
        }
        // A counter the table lacks is reported.
        let wrong = judge(
            &t,
            "process",
            &object(json!({"counters": {"exec": 1}})),
            &pass(0, 0, 0),
        )
        .wrong;
        assert_eq!(
            wrong,
            ["exec: not in kernel-accounting.toml: add its kernel equivalent or why it has none"]
        );
    }

    #[test]
    fn an_entry_says_one_thing_and_why() {
        let both: Table = toml::from_str(
            "[x]\na = { workload = [\"io.syscr\"], system = [\"stat.ctxt\"], why = \"w\" }\n",
        )
        .unwrap();
        assert!(validate(&both)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let no_why: Table = toml::from_str("[x]\na = { workload = [\"io.syscr\"] }\n").unwrap();
        assert!(validate(&no_why)
            .unwrap_err()
            .to_string()
            .contains("say why"));
    }

    #[test]
    fn the_repository_table_covers_every_counter() {
        let root = crate::paths::project_root();
        let kernel = load(&root).unwrap();
        let counters = crate::vmtest::expect::load(&root).unwrap();
        for (collector, names) in &counters {
            for name in names.keys() {
                assert!(
                    kernel.get(collector).is_some_and(|k| k.contains_key(name)),
                    "{FILE} has no {collector}.{name}"
                );
            }
        }
        for (collector, names) in &kernel {
            for name in names.keys() {
                assert!(
                    counters
                        .get(collector)
                        .is_some_and(|c| c.contains_key(name)),
                    "{FILE} names {collector}.{name}, which counters.toml does not know"
                );
            }
        }
    }
}
