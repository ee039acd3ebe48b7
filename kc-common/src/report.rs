//! `kc-loader --json`: one report per pass, as a type. Every field the C loader prints
//! (`co-re/loader/kc_output.c`, `kc_maps.c`) is here and nothing else is accepted: a field
//! added, renamed or printed twice on one side and not the other fails to parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attach::PassedOver;

/// One pass of the loader over its objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderReport {
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
    /// The pass's `--attach` mode: `auto` or a family.
    pub attach: String,
    /// The workload's pid (0: none ran).
    pub workload_pid: i64,
    /// The signal that ended the collection early.
    pub stopped_by: Option<StopSignal>,
    pub ms: PassTimes,
    /// The kernel's own accounting of the pass.
    pub kernel_figures: KernelFigures,
    pub objects: Vec<ObjectReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopSignal {
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGHUP")]
    Hup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassTimes {
    pub attach: f64,
    pub workload: f64,
    pub detach: f64,
    pub read: f64,
}

/// Named figures (`io.syscr`, `vmstat.pgfault`...).
pub type Figures = BTreeMap<String, u64>;

/// The workload's final figures, and the system's deltas over the workload's run (`inner`)
/// and from before attach to after detach (`outer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelFigures {
    pub workload: Option<Figures>,
    pub inner: Option<Figures>,
    pub outer: Figures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectStatus {
    Ok,
    /// An event no family can observe on this kernel.
    Partial,
    Failed,
    /// Sat a forced pass out: the auto pass counts it.
    AsAuto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    Skipped,
    Loaded,
    Attached,
    Failed,
}

/// One object in one pass; its maps' contents where it took part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectReport {
    pub object: String,
    pub attach: String,
    pub status: ObjectStatus,
    pub error: String,
    pub events: Vec<EventReport>,
    pub ms: ObjectTimes,
    /// Runs of its programs the kernel skipped in this pass (recursion_misses).
    pub missed_runs: u64,
    pub log_tail: String,
    pub programs: Vec<ProgramReport>,
    /// Totals by counter name: None where the pass did not observe it.
    pub counters: Option<BTreeMap<String, Option<u64>>>,
    /// Why each unobserved counter was not observed.
    pub unobserved: Option<BTreeMap<String, String>>,
    pub per_process: Option<Vec<Row>>,
    pub per_cgroup: Option<Vec<Row>>,
    pub apps: Option<AppsTable>,
    /// Latency histograms: map → id → slot counts.
    pub histograms: Option<BTreeMap<String, BTreeMap<String, Vec<u64>>>>,
    /// Counts per device: map → `major:minor` → count.
    pub devices: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectTimes {
    pub choose: f64,
    pub load: f64,
    pub attach: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventReport {
    pub event: String,
    /// The family that observes it, or None.
    pub family: Option<String>,
    pub passed_over: BTreeMap<String, PassedOverReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassedOverReport {
    pub kind: PassedOverKind,
    pub why: String,
}

/// A family's state for an event: passed over (and why), or `used` by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PassedOverKind {
    Why(PassedOver),
    Used(Used),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Used {
    Used,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramReport {
    pub name: String,
    pub target: String,
    pub state: ProgramState,
    pub detail: String,
}

/// One application's row: keyed by process (`tgid`) or cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub tgid: Option<u64>,
    pub cgroup: Option<u64>,
    pub exited: bool,
    pub counters: BTreeMap<String, Option<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppsTable {
    pub group_by: String,
    pub table_size: u64,
    pub rows: u64,
    pub insertions: u64,
    pub evicted: u64,
    pub failures: u64,
    pub removed_exited: u64,
}

/// Every report in `text` (one JSON document per pass, as `kc-loader --json` prints them).
pub fn parse_reports(text: &str) -> Result<Vec<LoaderReport>, serde_json::Error> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<LoaderReport>()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = r#"{"kernel": "6.18.1", "attach": "tracepoint", "workload_pid": 7, "stopped_by": null,
      "ms": {"attach": 1.0, "workload": 2.0, "detach": 3.0, "read": 0.5},
      "kernel_figures": {"workload": {"io.syscr": 3}, "inner": {"stat.ctxt": 9}, "outer": {"stat.ctxt": 12}},
      "objects": [
      {"object": "pagefault.bpf.o", "attach": "tracepoint", "status": "ok", "error": "",
       "events": [{"event": "kc_pagefault_fault", "family": null, "passed_over": {"trampoline": {"kind": "refused", "why": "EPERM"}}}],
       "ms": {"choose": 0.1, "load": 2.0, "attach": 0.3}, "missed_runs": 0, "log_tail": "",
       "programs": [{"name": "kc_pagefault_exception__tracepoint", "target": "exceptions/page_fault_user", "state": "attached", "detail": ""}],
       "counters": {"fault": null, "exception": 80}, "unobserved": {"fault": "no family observes its event"},
       "per_process": [{"tgid": 7, "exited": true, "counters": {"fault": null, "exception": 80}}],
       "apps": {"group_by": "process", "table_size": 4096, "rows": 1, "insertions": 1, "evicted": 0, "failures": 0, "removed_exited": 1},
       "histograms": {}, "devices": {}, "memory_bytes": 1024}]}"#;

    #[test]
    fn a_report_parses_with_its_nulls_and_reasons() {
        let r = &parse_reports(PASS).unwrap()[0];
        let o = &r.objects[0];
        assert_eq!(o.status, ObjectStatus::Ok);
        assert_eq!(o.counters.as_ref().unwrap()["fault"], None);
        assert_eq!(o.counters.as_ref().unwrap()["exception"], Some(80));
        assert_eq!(
            o.events[0].passed_over["trampoline"].kind,
            PassedOverKind::Why(PassedOver::Refused)
        );
        assert_eq!(r.kernel_figures.outer["stat.ctxt"], 12);
    }

    #[test]
    fn a_field_printed_twice_or_unknown_fails() {
        // The loader once printed "kernel" twice (its release, then its figures).
        let twice = PASS.replacen("\"kernel_figures\"", "\"kernel\"", 1);
        assert!(parse_reports(&twice).is_err());
        let unknown = PASS.replacen("\"missed_runs\"", "\"missed\"", 1);
        assert!(parse_reports(&unknown).is_err());
    }
}
