//! `counters.toml`: what the vmtest workload must make every counter count, and the judge of
//! one loader report against it (pure).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
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
    pub entry_mode: Option<u64>,
    pub event: Option<String>,
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

/// What one loader run of one object was: whose row is the workload's, whether the object is
/// a `p` object, and which modules this kernel could not load (name → why).
pub struct Run<'a> {
    pub workload_pid: u64,
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
    events: &'a [serde_json::Value],
) -> Option<&'a serde_json::Value> {
    if let Some(name) = &e.event {
        return events.iter().find(|ev| ev["event"] == name.as_str());
    }
    let prefix = format!("kc_{collector}_");
    events
        .iter()
        .filter(|ev| {
            ev["event"]
                .as_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|short| counter.starts_with(short))
        })
        .max_by_key(|ev| ev["event"].as_str().map_or(0, str::len))
}

/// Every wrong count of one object's report: "counter: expected X, got Y" lines.
pub fn judge(table: &Table, collector: &str, object: &serde_json::Value, run: &Run) -> Vec<String> {
    let Run {
        workload_pid,
        entry_mode,
        absent_modules,
    } = *run;
    let mut wrong = Vec::new();
    let Some(expect) = table.get(collector) else {
        return vec![format!(
            "{collector} has no table: add [{collector}] to counters.toml"
        )];
    };
    let empty = Vec::new();
    let events = object["events"].as_array().unwrap_or(&empty);
    let Some(totals) = object["counters"].as_object() else {
        return vec!["the report has no counters (the loader read none of its maps)".into()];
    };
    let row = object["per_process"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["tgid"].as_u64() == Some(workload_pid))
        })
        .map(|r| r["counters"].clone());
    for (name, total) in totals {
        let Some(e) = expect.get(name) else {
            wrong.push(format!("{name}: no expectation: add one to counters.toml"));
            continue;
        };
        if e.none.is_some()
            || e.module
                .as_ref()
                .is_some_and(|m| absent_modules.contains_key(m))
        {
            continue;
        }
        // Not judged where no family observes its event in this run.
        let event = event_of(collector, name, e, events);
        let family = match event {
            Some(ev) if ev["family"].is_null() => continue,
            Some(ev) => ev["family"].as_str().map(str::to_string),
            None if events.is_empty() => None,
            None => {
                // The object has no program for it (return-mode events of a `p` object).
                if total.as_u64() != Some(0) {
                    wrong.push(format!(
                        "{name}: no event of this object feeds it, yet it counted {total}"
                    ));
                }
                continue;
            }
        };
        let by_family = match family.as_deref() {
            Some("trampoline") => e.trampoline,
            Some("probe") => e.probe,
            Some("tracepoint") => e.tracepoint,
            _ => None,
        };
        let exact = if entry_mode {
            e.entry_mode.or(by_family).or(e.row)
        } else {
            by_family.or(e.row)
        };
        let got_row = row.as_ref().and_then(|r| r[name].as_u64()).unwrap_or(0);
        let got_total = total.as_u64().unwrap_or(0);
        if let Some(want) = exact {
            if got_row != want {
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
        // An exact value for this object's mode or this family replaces the bound.
        let overridden = (entry_mode && e.entry_mode.is_some()) || by_family.is_some();
        if let Some(min) = e.row_min.filter(|_| !overridden) {
            if got_row < min {
                wrong.push(format!(
                    "{name}: expected at least {min} in the workload's row, got {got_row}"
                ));
            }
        }
        if let Some(want) = e.total {
            if got_total != want {
                wrong.push(format!(
                    "{name}: expected {want} in the totals, got {got_total}"
                ));
            }
        }
        if let Some(min) = e
            .total_min
            .filter(|_| !(entry_mode && e.entry_mode == Some(0)))
        {
            if got_total < min {
                wrong.push(format!(
                    "{name}: expected at least {min} in the totals, got {got_total}"
                ));
            }
        }
        if let Some(dev) = &e.device {
            let got = sum_of(&object["devices"], |m| m[dev].as_u64().unwrap_or(0));
            if got != got_total {
                wrong.push(format!(
                    "{name}: device {dev} holds {got} of the total {got_total}"
                ));
            }
        }
        if let Some(id) = e.latency.filter(|_| !entry_mode) {
            let got = sum_of(&object["histograms"], |m| {
                m[id.to_string()]
                    .as_array()
                    .map_or(0, |slots| slots.iter().filter_map(|v| v.as_u64()).sum())
            });
            if got != got_total {
                wrong.push(format!(
                    "{name}: latency histogram {id} holds {got} samples for {got_total} calls"
                ));
            }
        }
    }
    wrong
}

/// `per_map` summed over the maps of a report's `devices` or `histograms`.
fn sum_of(maps: &serde_json::Value, per_map: impl Fn(&serde_json::Value) -> u64) -> u64 {
    maps.as_object()
        .map_or(0, |maps| maps.values().map(per_map).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(workload_pid: u64, entry_mode: bool) -> Run<'static> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        Run {
            workload_pid,
            entry_mode,
            absent_modules: &NONE,
        }
    }

    fn table() -> Table {
        toml::from_str(
            "[vfs]\nopen = { row = 6, tracepoint = 7 }\nopen_error = { row = 0, tracepoint = 1, entry_mode = 0 }\n\
             read = { row_min = 2, total_min = 3 }\nfsync = { none = \"not here\" }\n",
        )
        .unwrap()
    }

    fn report(family: &str, open: u64, open_error: u64, read: u64) -> serde_json::Value {
        serde_json::json!({
            "events": [
                {"event": "kc_vfs_open", "family": family},
                {"event": "kc_vfs_read", "family": family},
                {"event": "kc_vfs_fsync", "family": null}
            ],
            "counters": {"open": open, "open_error": open_error, "read": read + 1, "fsync": 9},
            "per_process": [
                {"tgid": 7, "counters": {"open": open, "open_error": open_error, "read": read, "fsync": 1}},
                {"tgid": 8, "counters": {"open": 100}}
            ]
        })
    }

    #[test]
    fn counts_by_family_mode_and_row() {
        let t = table();
        assert!(judge(&t, "vfs", &report("probe", 6, 0, 2), &run(7, false)).is_empty());
        assert!(judge(&t, "vfs", &report("tracepoint", 7, 1, 2), &run(7, false)).is_empty());
        assert!(
            judge(&t, "vfs", &report("tracepoint", 7, 0, 2), &run(7, true)).is_empty(),
            "p objects count no errors"
        );
        let wrong = judge(&t, "vfs", &report("probe", 7, 0, 1), &run(7, false));
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
        // A family's exact value replaces the row's bound (pagefault's major: no result in
        // the tracepoint family).
        let exact: Table = toml::from_str(
            "[vfs]\nopen = { row = 7 }\nopen_error = { row = 1 }\nread = { row_min = 2, tracepoint = 0 }\n\
             fsync = { none = \"not here\" }\n",
        )
        .unwrap();
        assert!(judge(
            &exact,
            "vfs",
            &report("tracepoint", 7, 1, 0),
            &run(7, false)
        )
        .is_empty());
        let wrong = judge(&exact, "vfs", &report("probe", 7, 1, 0), &run(7, false));
        assert!(
            wrong[0].starts_with("read: expected at least 2"),
            "{wrong:?}"
        );
        let wrong = judge(&t, "vfs", &report("probe", 6, 0, 2), &run(99, false));
        assert!(wrong[0].contains("the workload has no row"), "{wrong:?}");
    }

    #[test]
    fn a_counter_without_expectation_fails() {
        let mut r = report("probe", 6, 0, 2);
        r["counters"]["new_counter"] = 1.into();
        let wrong = judge(&table(), "vfs", &r, &run(7, false));
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
        assert!(judge(&t, "md", &report(3, [1, 1]), &run(0, false)).is_empty());
        let wrong = judge(&t, "md", &report(2, [2, 1]), &run(0, false));
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
            workload_pid: 0,
            entry_mode: true,
            absent_modules: &absent,
        };
        assert!(judge(&t, "md", &report(0, [0, 0]), &run).is_empty());
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
