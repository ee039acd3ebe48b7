//! `counters.toml`: what the vmtest workload must make every counter count, and the judge of
//! one loader report against it (pure).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use kc_common::attach::AttachFamily;
use kc_common::report::{EventReport, ObjectReport, Row};
use serde::Deserialize;

/// One counter's expectation (see the file's header).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub row: Option<u64>,
    pub row_min: Option<u64>,
    pub total: Option<u64>,
    pub total_min: Option<u64>,
    pub none: Option<String>,
    /// Where nothing observes it, so that the report must say `null` with a reason: `"p"`
    /// (entry-only objects) and the families blind to it.
    #[serde(default)]
    pub unobserved: Vec<Unseen>,
    pub event: Option<String>,
    /// Other events it counts from, each of which must be observed too (the loader's rule:
    /// every `KC_FROM` event of the counter), named in full (`kc_dns_exit`).
    #[serde(default)]
    pub needs: Vec<String>,
    pub trampoline: Option<u64>,
    pub probe: Option<u64>,
    pub tracepoint: Option<u64>,
    /// The module the counter's event lives in (vmtest loads it in the guest; where the
    /// kernel's packages lack it, the counter is not judged).
    pub module: Option<String>,
    /// The device (`major:minor`) whose entry in the collector's `_devices` map must hold
    /// the whole total.
    pub device: Option<String>,
    /// In return mode, the id of the collector's `_latency` histogram that holds one sample
    /// per count.
    pub latency: Option<u64>,
}

/// A run in which a counter is not observed: an entry-only object, or a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unseen {
    /// `p` objects: entry probes only.
    P,
    Trampoline,
    Probe,
    Tracepoint,
}

impl Unseen {
    fn family(self) -> Option<AttachFamily> {
        match self {
            Unseen::P => None,
            Unseen::Trampoline => Some(AttachFamily::Trampoline),
            Unseen::Probe => Some(AttachFamily::Probe),
            Unseen::Tracepoint => Some(AttachFamily::Tracepoint),
        }
    }
}

/// Collector → counter → expectation.
pub type Table = BTreeMap<String, BTreeMap<String, Expect>>;

/// The modules counters name: vmtest puts them (and what they depend on) in every guest.
pub fn modules(table: &Table) -> Vec<String> {
    let mut m: Vec<String> = table
        .values()
        .flat_map(|c| c.values().filter_map(|e| e.module.clone()))
        .collect();
    m.sort();
    m.dedup();
    m
}

/// How many processes the workload forks (and reaps): the process collector's `fork` row.
pub fn workload_children(table: &Table) -> Option<u64> {
    table.get("process")?.get("fork")?.row
}

/// What one loader run of one object was: whose row is the workload's, whether the object is
/// a `p` object, and which modules this kernel could not load (name → why).
pub struct Run<'a> {
    pub workload_pid: Option<u32>,
    pub entry_mode: bool,
    pub absent_modules: &'a BTreeMap<String, String>,
}

pub fn load(root: &Path) -> Result<Table> {
    let path = root.join("counters.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The event that feeds `counter`: the named one, else the longest event name (after
/// `kc_<collector>_`) that prefixes the counter's.
fn event_of<'a>(
    collector: &str,
    counter: &str,
    e: &Expect,
    events: &'a [EventReport],
) -> Option<&'a EventReport> {
    if let Some(name) = &e.event {
        return events.iter().find(|ev| ev.event == *name);
    }
    let prefix = format!("kc_{collector}_");
    events
        .iter()
        .filter(|ev| {
            ev.event
                .strip_prefix(&prefix)
                .is_some_and(|short| counter.starts_with(short))
        })
        .max_by_key(|ev| ev.event.len())
}

/// Why counters.toml says nothing observes `name` in this run (so the report must say null),
/// or None when something must count it.
fn expected_unobserved(
    e: &Expect,
    entry_mode: bool,
    event: Option<&EventReport>,
    family: Option<AttachFamily>,
    events: &[EventReport],
) -> Option<String> {
    if entry_mode && e.unobserved.contains(&Unseen::P) {
        return Some("an entry-only (p) object does not count it".into());
    }
    let Some(ev) = event else {
        return Some("the object has no program for its event".into());
    };
    let Some(family) = family else {
        return Some(format!("no family observes {:?}", ev.event));
    };
    if e.unobserved.iter().any(|u| u.family() == Some(family)) {
        return Some(format!("the {family} family is blind to it"));
    }
    e.needs
        .iter()
        .find_map(|name| match events.iter().find(|ev| ev.event == *name) {
            None => Some(format!("the object has no program for {name:?}")),
            Some(ev) if ev.family.is_none() => Some(format!("no family observes {name:?}")),
            Some(_) => None,
        })
}

/// How a counter was observed, as counters.toml says it must be.
enum Seen {
    /// It has a number; its event's family, when known.
    Counted(Option<AttachFamily>),
    /// It is null with a reason, in the totals and in every row.
    Unobserved,
}

/// Whether the report observed counter `name` as counters.toml says it must; `Err` says what
/// is wrong. A 0 where nothing observes the counter is a false number; a null where something
/// does is a lost one.
fn observed(
    name: &str,
    e: &Expect,
    object: &ObjectReport,
    entry_mode: bool,
    event: Option<&EventReport>,
) -> Result<Seen, String> {
    let family = event.and_then(|ev| ev.family);
    let reason = object.unobserved_because(name);
    match (
        expected_unobserved(e, entry_mode, event, family, &object.events),
        object.total(name),
    ) {
        (Some(why), Some(n)) => Err(format!(
            "{name}: counted {n} where nothing observes it ({why}): the report must say null, not a number"
        )),
        (Some(_), None) if reason.is_none() => Err(format!(
            "{name}: unobserved without a reason in the report's \"unobserved\""
        )),
        (Some(_), None) => match object
            .rows()
            .iter()
            .find_map(|r| Some((r, r.counters.get(name).copied().flatten()?)))
        {
            Some((r, n)) => Err(format!(
                "{name}: unobserved in the totals but {n} in the row of {}",
                r.key()
            )),
            None => Ok(Seen::Unobserved),
        },
        (None, None) => Err(format!(
            "{name}: reported unobserved ({}) where {} must count it",
            reason.unwrap_or("no reason given"),
            family.map_or("this object".to_string(), |f| format!("the {f} family"))
        )),
        (None, Some(_)) => Ok(Seen::Counted(family)),
    }
}

/// One counter of an object's report: its expectation (None: counters.toml lacks it) and the
/// event that feeds it.
struct Entry<'a> {
    name: &'a str,
    expect: Option<&'a Expect>,
    event: Option<&'a EventReport>,
}

/// Every counter of one object's report with its expectation and event; `Err` is the one line
/// that stops the judging (no table for the collector, no counters in the report).
fn entries<'a>(
    table: &'a Table,
    collector: &str,
    object: &'a ObjectReport,
) -> Result<Vec<Entry<'a>>, String> {
    let Some(expect) = table.get(collector) else {
        return Err(format!(
            "{collector} has no table: add [{collector}] to counters.toml"
        ));
    };
    let events = &object.events;
    let Some(totals) = &object.counters else {
        return Err("the report has no counters (the loader read none of its maps)".into());
    };
    Ok(totals
        .keys()
        .map(|name| {
            let e = expect.get(name);
            Entry {
                name,
                expect: e,
                event: e.and_then(|e| event_of(collector, name, e, events)),
            }
        })
        .collect())
}

fn no_expectation(name: &str) -> String {
    format!("{name}: no expectation: add one to counters.toml")
}

/// Every counter of one object's report that is a number where nothing observes it or null
/// where something does (see [`observed`]): what any report, on any kernel and workload, must
/// get right. A counter counters.toml does not know is reported too.
pub fn judge_observed(
    table: &Table,
    collector: &str,
    object: &ObjectReport,
    entry_mode: bool,
) -> Vec<String> {
    match entries(table, collector, object) {
        Err(line) => vec![line],
        Ok(entries) => entries
            .iter()
            .filter_map(|c| match c.expect {
                None => Some(no_expectation(c.name)),
                Some(e) => observed(c.name, e, object, entry_mode, c.event).err(),
            })
            .collect(),
    }
}

/// Every wrong count of one object's report: "counter: expected X, got Y" lines, and every
/// counter observed where it must not be or unobserved where it must be.
pub fn judge(table: &Table, collector: &str, object: &ObjectReport, run: &Run) -> Vec<String> {
    let entries = match entries(table, collector, object) {
        Err(line) => return vec![line],
        Ok(entries) => entries,
    };
    let row = run.workload_pid.and_then(|pid| object.row_of(pid));
    let mut wrong = Vec::new();
    for c in entries {
        let Some(e) = c.expect else {
            wrong.push(no_expectation(c.name));
            continue;
        };
        if e.module
            .as_ref()
            .is_some_and(|m| run.absent_modules.contains_key(m))
        {
            continue;
        }
        match observed(c.name, e, object, run.entry_mode, c.event) {
            Err(line) => wrong.push(line),
            Ok(Seen::Counted(family)) if e.none.is_none() => {
                judge_counts(c.name, e, object, row, run, family, &mut wrong);
            }
            Ok(_) => {}
        }
    }
    wrong
}

/// An observed counter's figures against its expectation.
fn judge_counts(
    name: &str,
    e: &Expect,
    object: &ObjectReport,
    row: Option<&Row>,
    run: &Run,
    family: Option<AttachFamily>,
    wrong: &mut Vec<String>,
) {
    let by_family = match family {
        Some(AttachFamily::Trampoline) => e.trampoline,
        Some(AttachFamily::Probe) => e.probe,
        Some(AttachFamily::Tracepoint) => e.tracepoint,
        None => None,
    };
    let exact = by_family.or(e.row);
    let got_row = row
        .and_then(|r| r.counters.get(name).copied().flatten())
        .unwrap_or(0);
    let got_total = object.total(name).unwrap_or(0);
    // Runs the kernel skipped (a program already running on that CPU, preempted): a count may
    // be low by as many, never high.
    let missed = object.missed_runs;
    if let Some(want) = exact {
        if !(want.saturating_sub(missed)..=want).contains(&got_row) {
            let how = if row.is_none() {
                " (the workload has no row)"
            } else {
                ""
            };
            wrong.push(format!(
                "{name}: expected {want} in the workload's row, got {got_row}{how}"
            ));
        }
    }
    // An exact value for this family replaces the bound.
    if let Some(min) = e.row_min.filter(|_| by_family.is_none()) {
        if got_row + missed < min {
            wrong.push(format!(
                "{name}: expected at least {min} in the workload's row, got {got_row}"
            ));
        }
    }
    if let Some(want) = e.total {
        if !(want.saturating_sub(missed)..=want).contains(&got_total) {
            wrong.push(format!(
                "{name}: expected {want} in the totals, got {got_total}"
            ));
        }
    }
    if let Some(min) = e.total_min {
        if got_total + missed < min {
            wrong.push(format!(
                "{name}: expected at least {min} in the totals, got {got_total}"
            ));
        }
    }
    if let Some(dev) = &e.device {
        let got: u64 = object
            .devices
            .iter()
            .flat_map(|maps| maps.values())
            .filter_map(|m| m.get(dev))
            .sum();
        if got != got_total {
            wrong.push(format!(
                "{name}: device {dev} holds {got} of the total {got_total}"
            ));
        }
    }
    if let Some(id) = e.latency.filter(|_| !run.entry_mode) {
        let id = id.to_string();
        let got: u64 = object
            .histograms
            .iter()
            .flat_map(|maps| maps.values())
            .filter_map(|m| m.get(&id))
            .flatten()
            .sum();
        if got != got_total {
            wrong.push(format!(
                "{name}: latency histogram {id} holds {got} samples for {got_total} calls"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::object;

    fn run(workload_pid: Option<u32>, entry_mode: bool) -> Run<'static> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        Run {
            workload_pid,
            entry_mode,
            absent_modules: &NONE,
        }
    }

    fn table() -> Table {
        toml::from_str(
            "[vfs]\nopen = { row = 6, tracepoint = 7 }\nopen_error = { row = 0, tracepoint = 1, unobserved = [\"p\"] }\n\
             read = { row_min = 2, total_min = 3 }\nfsync = { none = \"not here\" }\n",
        )
        .unwrap()
    }

    /// A report as the loader writes it: `open_error` is null (with its reason) when `None`.
    fn report(family: &str, open: u64, open_error: Option<u64>, read: u64) -> serde_json::Value {
        let unobserved = match open_error {
            None => serde_json::json!({"open_error": "an entry-only (p) object does not count it"}),
            Some(_) => serde_json::json!({}),
        };
        serde_json::json!({
            "events": [
                {"event": "kc_vfs_open", "family": family},
                {"event": "kc_vfs_read", "family": family},
                {"event": "kc_vfs_fsync", "family": null}
            ],
            "counters": {"open": open, "open_error": open_error, "read": read + 1, "fsync": null},
            "unobserved": unobserved,
            "per_process": [
                {"tgid": 7, "counters": {"open": open, "open_error": open_error, "read": read, "fsync": null}},
                {"tgid": 8, "counters": {"open": 100}}
            ]
        })
    }

    #[test]
    fn counts_by_family_mode_and_row() {
        let t = table();
        let mut ok = report("probe", 6, Some(0), 2);
        ok["unobserved"]["fsync"] = "no family observes kc_vfs_fsync".into();
        assert!(judge(&t, "vfs", &object(ok.clone()), &run(Some(7), false)).is_empty());
        let mut ok = report("tracepoint", 7, Some(1), 2);
        ok["unobserved"]["fsync"] = "no family".into();
        assert!(judge(&t, "vfs", &object(ok.clone()), &run(Some(7), false)).is_empty());
        let mut p = report("tracepoint", 7, None, 2);
        p["unobserved"]["fsync"] = "no family".into();
        assert!(
            judge(&t, "vfs", &object(p.clone()), &run(Some(7), true)).is_empty(),
            "p objects count no errors: null, with a reason"
        );
        let mut bad = report("probe", 7, Some(0), 1);
        bad["unobserved"]["fsync"] = "no family".into();
        let wrong = judge(&t, "vfs", &object(bad.clone()), &run(Some(7), false));
        assert_eq!(wrong.len(), 3, "{wrong:?}");
        assert!(
            wrong[0].starts_with("open: expected 6 in the workload's row, got 7"),
            "{wrong:?}"
        );
        assert!(wrong
            .iter()
            .any(|w| w.starts_with("read: expected at least 2")));
        assert!(wrong
            .iter()
            .any(|w| w.starts_with("read: expected at least 3 in the totals")));
        let wrong = judge(&t, "vfs", &object(ok.clone()), &run(Some(99), false));
        assert!(wrong[0].contains("the workload has no row"), "{wrong:?}");
        // A run the kernel skipped may leave a count low by one, never high.
        let mut missed = report("probe", 5, Some(0), 2);
        missed["unobserved"]["fsync"] = "no family".into();
        assert_eq!(
            judge(&t, "vfs", &object(missed.clone()), &run(Some(7), false)).len(),
            1
        );
        missed["missed_runs"] = 1.into();
        assert!(judge(&t, "vfs", &object(missed.clone()), &run(Some(7), false)).is_empty());
    }

    #[test]
    fn a_false_zero_fails_and_so_does_a_missing_number() {
        let t: Table = toml::from_str(
            "[vfs]\nopen = { row = 7 }\nopen_error = { row = 1, unobserved = [\"p\"] }\n\
             read = { row_min = 2, unobserved = [\"tracepoint\"] }\nfsync = { none = \"not here\" }\n",
        )
        .unwrap();
        // A blind family's 0, a p object's 0, an unobserved event's 0: false numbers.
        let mut r = report("tracepoint", 7, Some(1), 0);
        r["counters"]["fsync"] = 0.into();
        let wrong = judge(&t, "vfs", &object(r.clone()), &run(Some(7), false));
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert!(
            wrong[0].starts_with(
                "fsync: counted 0 where nothing observes it (no family observes \"kc_vfs_fsync\")"
            ),
            "{wrong:?}"
        );
        assert!(
            wrong[1].starts_with(
                "read: counted 1 where nothing observes it (the tracepoint family is blind to it)"
            ),
            "{wrong:?}"
        );
        let mut r = report("probe", 7, Some(0), 2);
        r["counters"]["fsync"] = serde_json::Value::Null;
        r["unobserved"]["fsync"] = "no family".into();
        let wrong = judge(&t, "vfs", &object(r.clone()), &run(Some(7), true));
        assert_eq!(
            wrong,
            ["open_error: counted 0 where nothing observes it (an entry-only (p) object does not count it): the report must say null, not a number"]
        );
        // Null in the totals but a number in a row: the same false number, per process.
        let mut r = report("probe", 7, Some(1), 2);
        r["per_process"][1]["counters"]["fsync"] = 0.into();
        r["unobserved"]["fsync"] = "no family".into();
        assert_eq!(
            judge_observed(&t, "vfs", &object(r.clone()), false),
            ["fsync: unobserved in the totals but 0 in the row of 8"]
        );
        // Null where a family counts it, and null without a reason.
        let mut r = report("probe", 7, Some(1), 2);
        r["counters"]["read"] = serde_json::Value::Null;
        r["unobserved"]["read"] = "blind".into();
        r["counters"]["fsync"] = serde_json::Value::Null;
        let wrong = judge(&t, "vfs", &object(r.clone()), &run(Some(7), false));
        assert_eq!(
            wrong,
            [
                "fsync: unobserved without a reason in the report's \"unobserved\"",
                "read: reported unobserved (blind) where the probe family must count it"
            ]
        );
    }

    #[test]
    fn a_counter_from_two_events_needs_both_observed() {
        let t: Table = toml::from_str(
            "[vfs]\nopen = { row = 6, needs = [\"kc_vfs_fsync\"] }\nopen_error = { row = 0 }\n\
             read = { row_min = 2 }\nfsync = { none = \"not here\" }\n",
        )
        .unwrap();
        // kc_vfs_fsync has no family: open, observed by its own event, must still be null.
        let mut r = report("probe", 6, Some(0), 2);
        r["unobserved"]["fsync"] = "no family".into();
        let wrong = judge(&t, "vfs", &object(r.clone()), &run(Some(7), false));
        assert_eq!(
            wrong,
            ["open: counted 6 where nothing observes it (no family observes \"kc_vfs_fsync\"): the report must say null, not a number"]
        );
        r["counters"]["open"] = serde_json::Value::Null;
        r["per_process"][0]["counters"]["open"] = serde_json::Value::Null;
        r["per_process"][1]["counters"]["open"] = serde_json::Value::Null;
        r["unobserved"]["open"] = "no family observes its event kc_vfs_fsync".into();
        assert!(judge(&t, "vfs", &object(r.clone()), &run(Some(7), false)).is_empty());
        // Both observed: a number, judged.
        r["events"][2]["family"] = "probe".into();
        r["counters"]["open"] = 6.into();
        r["per_process"][0]["counters"]["open"] = 6.into();
        r["per_process"][1]["counters"]["open"] = 100.into();
        r["unobserved"] = serde_json::json!({});
        r["counters"]["fsync"] = 0.into();
        let wrong = judge(&t, "vfs", &object(r.clone()), &run(Some(7), false));
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn a_counter_without_expectation_fails() {
        let mut r = report("probe", 6, Some(0), 2);
        r["unobserved"]["fsync"] = "no family".into();
        r["counters"]["new_counter"] = 1.into();
        let wrong = judge(&table(), "vfs", &object(r.clone()), &run(Some(7), false));
        assert_eq!(
            wrong,
            ["new_counter: no expectation: add one to counters.toml"]
        );
    }

    #[test]
    fn devices_latency_and_absent_modules() {
        let t: Table = toml::from_str(
            "[md]\nflush = { total_min = 1, device = \"9:0\", module = \"raid1\" }\n\
             read = { total = 2, latency = 4 }\n",
        )
        .unwrap();
        let report = |dev: u64, slots: [u64; 2]| {
            serde_json::json!({
                "events": [{"event": "kc_md_flush", "family": "probe"},
                           {"event": "kc_md_read", "family": "probe"}],
                "counters": {"flush": 3, "read": 2},
                "devices": {"md_devices": {"9:0": dev, "8:0": 5}},
                "histograms": {"md_latency": {"4": [slots[0], slots[1]], "5": [7]}}
            })
        };
        assert!(judge(&t, "md", &object(report(3, [1, 1])), &run(None, false)).is_empty());
        let wrong = judge(&t, "md", &object(report(2, [2, 1])), &run(None, false));
        assert_eq!(
            wrong,
            [
                "flush: device 9:0 holds 2 of the total 3",
                "read: latency histogram 4 holds 3 samples for 2 calls"
            ]
        );
        // p objects keep no histograms; a kernel without the module is not judged on it.
        let absent = BTreeMap::from([("raid1".to_string(), "not packaged".to_string())]);
        let run = Run {
            workload_pid: None,
            entry_mode: true,
            absent_modules: &absent,
        };
        assert!(judge(&t, "md", &object(report(0, [0, 0])), &run).is_empty());
        assert_eq!(modules(&t), ["raid1"]);
    }

    #[test]
    fn the_repository_table_parses_and_covers_every_collector() {
        let root = crate::paths::project_root();
        let t = load(&root).unwrap();
        for c in crate::collectors::load_from(&root).unwrap() {
            assert!(t.contains_key(&c.name), "counters.toml has no [{}]", c.name);
        }
    }
}
