//! One scrape's metric families from the reports of the objects' maps (`kc_agent`'s
//! snapshots), the selection kc-select made, and the exporter's state across scrapes.
//!
//! Names: a total is `kc_<collector>_<counter>_total`; a per-application row
//! `kc_<collector>_<counter>_by_process_total{pid,comm}` (or `_by_cgroup_total{cgroup}`), the
//! rows beyond `--max-series` summed into `comm="other"` (`cgroup="other"`); a latency
//! histogram `kc_<map>_seconds` with the kernel's log2 buckets as bounds; counts per device
//! `kc_<map>_total{device}`; a DNS server's figures `kc_dns_server_*{server}`. The exporter's own
//! health is under `kc_exporter_`.

use std::collections::BTreeMap;

use kc_common::report::{GroupBy, LoaderReport, ObjectReport, ObjectStatus, ProgramState};
use kc_common::select::{Kind, Selection};

use crate::exposition::{Family, Value};
use crate::series::{Carry, RowRead, Rows};

/// Slots of a kernel latency histogram (`KC_HIST_SLOTS`): slot `s` holds durations of
/// `[2^s, 2^(s+1))` microseconds (slot 0 also below 1 µs), the last one everything longer.
pub const HIST_SLOTS: usize = 32;

/// The upper bound in seconds of histogram slot `s` (`+Inf` for the last).
pub fn slot_bound(s: usize) -> f64 {
    if s + 1 >= HIST_SLOTS {
        f64::INFINITY
    } else {
        (1u64 << (s + 1)) as f64 * 1e-6
    }
}

/// The collector an object serves, from its file name (`vfs.bpf.o`, `rkc_vfs.6.1.o`).
pub fn collector_of(object: &str) -> String {
    let file = object.rsplit('/').next().unwrap_or(object);
    file.strip_suffix(".bpf.o")
        .map(str::to_string)
        .or_else(|| kc_common::names::parse_legacy_object(file).map(|(c, _, _)| c))
        .unwrap_or_else(|| file.to_string())
}

/// Whether an object loaded and attached (partial: an event without a family here).
pub fn serving(o: &ObjectReport) -> bool {
    matches!(o.status, ObjectStatus::Ok | ObjectStatus::Partial)
}

/// What a row is (`process`, `cgroup`) and the label its `other` row is named by.
fn by_name(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Cgroup => "cgroup",
        _ => "process",
    }
}

fn other_name(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Cgroup => "cgroup",
        _ => "comm",
    }
}

/// How a row's id becomes its labels, and whether a row gone from its table may come back.
pub trait RowLabels {
    /// `[("pid", "12"), ("comm", "dd")]`, or `[("cgroup", "/system.slice/x")]`.
    fn labels(&mut self, group_by: GroupBy, id: u64) -> Vec<(String, String)>;
    fn alive(&self, group_by: GroupBy, id: u64) -> bool;
}

/// What the exporter keeps across scrapes.
#[derive(Debug, Default)]
pub struct State {
    rows: Rows,
    carry: Carry,
    /// Rows of exited processes removed from each table since its objects were attached.
    removed: BTreeMap<String, u64>,
    /// What the flows that ended carried (the exporter's own sum: it outlives reattaches).
    ended: crate::flows::Ended,
}

impl State {
    /// The objects were loaded and attached again (their maps start from zero).
    pub fn reattached(&mut self) {
        self.removed.clear();
    }
}

/// One scrape's inputs.
pub struct Scrape<'a> {
    pub reports: &'a [LoaderReport],
    pub selections: &'a [Selection],
    pub group_by: GroupBy,
    pub max_series: usize,
}

/// The families of one scrape (the exporter adds its scrape duration).
pub fn families(state: &mut State, s: &Scrape, labels: &mut dyn RowLabels) -> Vec<Family> {
    let objects: Vec<&ObjectReport> = s.reports.iter().flat_map(|r| &r.objects).collect();
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut add = |name: String, help: String, l: Vec<(String, String)>, v: Value| {
        let f = out
            .entry(name.clone())
            .or_insert_with(|| Family::new(name, help));
        f.samples.push(crate::exposition::Sample {
            labels: l,
            value: v,
        });
    };
    let lbl = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for sel in s.selections {
        let (object, why) = match &sel.object {
            Some(o) => (o.as_str(), String::new()),
            None => ("", sel.passed_over.join("; ")),
        };
        let kind = sel.kind.to_string();
        let mut pairs = vec![
            ("collector", sel.collector.as_str()),
            ("kind", kind.as_str()),
            ("object", object),
        ];
        if sel.kind == Kind::None {
            pairs.push(("why", why.as_str()));
        }
        add(
            "kc_exporter_collector_selected".into(),
            "The object kc-select chose for each collector on this kernel (kind none: nothing serves it, and why).".into(),
            lbl(&pairs),
            Value::Gauge(1.0),
        );
    }
    // Per-application rows of every table, bounded together.
    let mut tables: BTreeMap<String, Vec<RowRead>> = BTreeMap::new();
    let mut counter_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &objects {
        let names: Vec<String> = o
            .counters
            .as_ref()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        if o.apps.is_some() {
            // A released process's row comes in its streamed exit, having left the table.
            let streamed = o.exits().filter_map(|e| e.row.as_ref());
            let rows = o
                .rows()
                .iter()
                .chain(streamed)
                .map(|r| RowRead {
                    id: r.tgid.map(u64::from).or(r.cgroup).unwrap_or(0),
                    exited: r.exited,
                    values: names
                        .iter()
                        .map(|n| r.counters.get(n).copied().flatten())
                        .collect(),
                })
                .collect();
            tables.insert(o.object.clone(), rows);
        }
        counter_names.insert(o.object.clone(), names);
    }
    let group_by = s.group_by;
    let alive = |id: u64| labels.alive(group_by, id);
    let exported = state.rows.scrape(&tables, s.max_series, &alive);
    let mut series = 0u64;
    for o in &objects {
        let object = o.object.as_str();
        let collector = collector_of(object);
        let up = serving(o);
        add(
            "kc_exporter_object_up".into(),
            "1 where the object loaded and attached (partial: some event has no family here), else 0.".into(),
            lbl(&[("object", object), ("collector", &collector)]),
            Value::Gauge(if up { 1.0 } else { 0.0 }),
        );
        if !up {
            add(
                "kc_exporter_object_error".into(),
                "Why an object is not serving (its load or attach error).".into(),
                lbl(&[("object", object), ("error", &o.error)]),
                Value::Gauge(1.0),
            );
        }
        let failed = o
            .programs
            .iter()
            .filter(|p| p.state == ProgramState::Failed)
            .count();
        add(
            "kc_exporter_failed_programs".into(),
            "Programs of the object that failed to load or attach (their family was passed over)."
                .into(),
            lbl(&[("object", object)]),
            Value::Gauge(failed as f64),
        );
        for e in &o.events {
            let family = e
                .family
                .map_or_else(|| "none".to_string(), |f| f.to_string());
            add(
                "kc_exporter_event_family".into(),
                "The attach family that observes each event (none: no family can here).".into(),
                lbl(&[("object", object), ("event", &e.event), ("family", &family)]),
                Value::Gauge(1.0),
            );
        }
        if !up {
            continue;
        }
        let mut carried = |name: &str, l: &[(String, String)], raw: u64| {
            state.carry.value(&format!("{name}{l:?}"), raw)
        };
        let v = carried("missed", &lbl(&[("object", object)]), o.missed_runs);
        add(
            "kc_exporter_missed_runs".into(),
            "Runs of the object's programs the kernel skipped (recursion).".into(),
            lbl(&[("object", object)]),
            Value::Counter(v),
        );
        if let Some(bytes) = o.memory_bytes {
            add(
                "kc_exporter_map_memory_bytes".into(),
                "The kernel's memlock figure of the object's maps.".into(),
                lbl(&[("object", object)]),
                Value::Gauge(bytes as f64),
            );
        }
        for (counter, value) in o.counters.iter().flatten() {
            // Unobserved: absent, never 0.
            let Some(raw) = value else { continue };
            let name = format!("kc_{collector}_{counter}");
            let v = carried(&name, &[], *raw);
            add(
                name,
                format!(
                    "{collector}: {counter}, counted by the kernel since the exporter attached"
                ),
                Vec::new(),
                Value::Counter(v),
            );
        }
        for (map, ids) in o.histograms.iter().flatten() {
            let name = format!("kc_{map}_seconds");
            for (id, slots) in ids {
                let buckets = slots
                    .iter()
                    .enumerate()
                    .map(|(s, &n)| {
                        let le = slot_bound(s);
                        (le, carried(&format!("{name}{id}/{s}"), &[], n))
                    })
                    .collect();
                add(
                    name.clone(),
                    format!("{collector}: latency ({map}), in the kernel's log2 buckets; the kernel keeps no sum (NaN)"),
                    lbl(&[("id", id)]),
                    Value::Histogram(buckets),
                );
            }
        }
        for (map, devices) in o.devices.iter().flatten() {
            let name = format!("kc_{map}");
            for (device, &n) in devices {
                let v = carried(&name, &lbl(&[("device", device)]), n);
                add(
                    name.clone(),
                    format!("{collector}: counts per device ({map}), by major:minor"),
                    lbl(&[("device", device)]),
                    Value::Counter(v),
                );
            }
        }
        for (name, help, l, v) in crate::dns::samples(o, &mut carried) {
            add(name.into(), help.into(), l, v);
        }
        for (name, help, l, v) in crate::flows::samples(&mut state.ended, o) {
            add(name.into(), help.into(), l, v);
        }
        let (Some(apps), Some(t)) = (&o.apps, exported.get(object)) else {
            continue;
        };
        let removed = state.removed.entry(object.to_string()).or_default();
        *removed += apps.removed_exited;
        let evicted = apps.insertions.saturating_sub(apps.rows + *removed);
        let l = lbl(&[("object", object)]);
        for (name, help, v) in [
            ("kc_exporter_table_insertions", "Rows inserted into the object's per-application table.", apps.insertions),
            ("kc_exporter_table_evictions", "Rows the LRU table evicted to make room (their process counts again from zero in a new row).", evicted),
            ("kc_exporter_table_failures", "Rows the table could not insert.", apps.failures),
            ("kc_exporter_table_exited_removed", "Rows of exited processes reported once, then removed.", *removed),
            ("kc_exporter_row_restarts", "Rows seen counting again from zero after an eviction (their series carry on from the last value).", t.restarts),
        ] {
            let v = carried(name, &l, v);
            add(name.into(), help.into(), l.clone(), Value::Counter(v));
        }
        for (name, help, v) in [
            (
                "kc_exporter_table_rows",
                "Rows in the object's per-application table.",
                apps.rows,
            ),
            (
                "kc_exporter_table_size",
                "The per-application table's size (--table-size).",
                apps.table_size,
            ),
            (
                "kc_exporter_rows_folded",
                "Rows this scrape summed into the other row (over --max-series).",
                t.folded,
            ),
        ] {
            add(name.into(), help.into(), l.clone(), Value::Gauge(v as f64));
        }
        let names = &counter_names[object];
        let row_help = |counter: &str| {
            format!(
                "{collector}: {counter} per {} (the rows beyond --max-series summed into {}=\"other\")",
                by_name(group_by),
                other_name(group_by)
            )
        };
        let (by, other_label) = match group_by {
            GroupBy::Cgroup => ("by_cgroup", ("cgroup", "other")),
            _ => ("by_process", ("comm", "other")),
        };
        for row in &t.rows {
            let l = labels.labels(group_by, row.id);
            for (counter, v) in names.iter().zip(&row.values) {
                let Some(v) = v else { continue };
                series += 1;
                add(
                    format!("kc_{collector}_{counter}_{by}"),
                    row_help(counter),
                    l.clone(),
                    Value::Counter(*v),
                );
            }
        }
        let observed = |i: usize| {
            o.counters
                .as_ref()
                .and_then(|c| c.get(&names[i]).copied().flatten())
                .is_some()
        };
        for (i, (counter, v)) in names.iter().zip(&t.other).enumerate() {
            if !observed(i) {
                continue;
            }
            series += 1;
            add(
                format!("kc_{collector}_{counter}_{by}"),
                row_help(counter),
                lbl(&[other_label]),
                Value::Counter(*v),
            );
        }
    }
    add(
        "kc_exporter_row_series".into(),
        "Per-application series in this scrape (bounded by --max-series, plus each table's other row).".into(),
        Vec::new(),
        Value::Gauge(series as f64),
    );
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_common::report::{AppsTable, Row};

    struct Fixed;

    impl RowLabels for Fixed {
        fn labels(&mut self, _: GroupBy, id: u64) -> Vec<(String, String)> {
            vec![
                ("pid".into(), id.to_string()),
                ("comm".into(), format!("p{id}")),
            ]
        }
        fn alive(&self, _: GroupBy, _: u64) -> bool {
            true
        }
    }

    fn counters(read: Option<u64>, write: Option<u64>) -> BTreeMap<String, Option<u64>> {
        BTreeMap::from([("read".into(), read), ("write".into(), write)])
    }

    /// vfs attached, its `write` unobserved, two rows; fd failed to load.
    fn report() -> LoaderReport {
        let row = |tgid, n| Row {
            tgid: Some(tgid),
            cgroup: None,
            exited: false,
            counters: counters(Some(n), None),
        };
        LoaderReport {
            objects: vec![
                ObjectReport {
                    object: "vfs.bpf.o".into(),
                    status: ObjectStatus::Ok,
                    counters: Some(counters(Some(30), None)),
                    per_process: Some(vec![row(1, 10), row(2, 20)]),
                    apps: Some(AppsTable {
                        group_by: GroupBy::Process,
                        table_size: 4096,
                        rows: 2,
                        insertions: 5,
                        ..AppsTable::default()
                    }),
                    histograms: Some(BTreeMap::from([(
                        "vfs_latency".into(),
                        BTreeMap::from([("0".into(), {
                            let mut slots = vec![0u64; HIST_SLOTS];
                            slots[1] = 3;
                            slots[HIST_SLOTS - 1] = 1;
                            slots
                        })]),
                    )])),
                    ..ObjectReport::default()
                },
                ObjectReport {
                    object: "fd.bpf.o".into(),
                    status: ObjectStatus::Failed,
                    error: "load: Operation not permitted".into(),
                    ..ObjectReport::default()
                },
            ],
            ..LoaderReport::default()
        }
    }

    fn scrape(state: &mut State, max_series: usize) -> String {
        let reports = [report()];
        let families = families(
            state,
            &Scrape {
                reports: &reports,
                selections: &[],
                group_by: GroupBy::Process,
                max_series,
            },
            &mut Fixed,
        );
        crate::exposition::encode(families, crate::exposition::Format::Text)
    }

    #[test]
    fn observed_counters_rows_and_health_are_served_and_the_unobserved_are_absent() {
        let text = scrape(&mut State::default(), 100);
        for line in [
            "kc_vfs_read_total 30",
            "kc_vfs_read_by_process_total{pid=\"1\",comm=\"p1\"} 10",
            "kc_vfs_read_by_process_total{pid=\"2\",comm=\"p2\"} 20",
            "kc_vfs_read_by_process_total{comm=\"other\"} 0",
            "kc_exporter_object_up{object=\"vfs.bpf.o\",collector=\"vfs\"} 1.0",
            "kc_exporter_object_up{object=\"fd.bpf.o\",collector=\"fd\"} 0.0",
            "kc_exporter_object_error{object=\"fd.bpf.o\",error=\"load: Operation not permitted\"} 1.0",
            // Five inserted, two here, none removed: three evicted.
            "kc_exporter_table_evictions_total{object=\"vfs.bpf.o\"} 3",
            "kc_vfs_latency_seconds_bucket{le=\"0.000004\",id=\"0\"} 3",
            "kc_vfs_latency_seconds_bucket{le=\"+Inf\",id=\"0\"} 4",
            "kc_vfs_latency_seconds_count{id=\"0\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(
            !text.contains("kc_vfs_write"),
            "unobserved, yet served:\n{text}"
        );
        assert!(
            !text.contains("kc_fd_"),
            "a failed object's counters:\n{text}"
        );
    }

    #[test]
    fn rows_beyond_max_series_go_to_other() {
        let text = scrape(&mut State::default(), 1);
        assert!(
            text.contains("kc_vfs_read_by_process_total{pid=\"2\",comm=\"p2\"} 20"),
            "{text}"
        );
        assert!(!text.contains("pid=\"1\""), "{text}");
        assert!(
            text.contains("kc_vfs_read_by_process_total{comm=\"other\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("kc_exporter_rows_folded{object=\"vfs.bpf.o\"} 1.0"),
            "{text}"
        );
    }

    #[test]
    fn slot_bounds_are_the_kernels_log2_microseconds() {
        assert_eq!(slot_bound(0), 2e-6);
        assert_eq!(slot_bound(9), 1024e-6);
        assert!(slot_bound(HIST_SLOTS - 1).is_infinite());
        assert_eq!(collector_of("co-re/vfs.bpf.o"), "vfs");
        assert_eq!(collector_of("rkc_vfs.6.1.o"), "vfs");
    }
}
