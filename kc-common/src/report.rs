//! `kc-loader --json`: one report per pass, as a type. Every field the C loader prints
//! (`co-re/loader/kc_output.c`, `kc_maps.c`) is here and nothing else is accepted: a field
//! added, renamed or printed twice on one side and not the other fails to parse. With the
//! `schema` feature the type also describes itself as a JSON Schema, which the release ships
//! (`loader-report.schema.json`) for agents written in other languages.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::attach::{AttachFamily, AttachMode, PassedOver};
use crate::dns::{DnsServer, ServerTable};
use crate::flow::{Flow, FlowClose, FlowTable};

/// One pass of the loader over its objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LoaderReport {
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
    /// The pass's `--attach` mode.
    pub attach: AttachMode,
    /// The workload's pid (0: none ran).
    pub workload_pid: u32,
    /// The signal that ended the collection early.
    pub stopped_by: Option<StopSignal>,
    pub ms: PassTimes,
    /// The kernel's own accounting of the pass.
    pub kernel_figures: KernelFigures,
    pub objects: Vec<ObjectReport>,
}

impl LoaderReport {
    /// The pass's report of `object` (its file name).
    pub fn object(&self, object: &str) -> Option<&ObjectReport> {
        self.objects.iter().find(|o| o.object == object)
    }

    /// The workload's pid, None where no workload ran.
    pub fn workload(&self) -> Option<u32> {
        (self.workload_pid != 0).then_some(self.workload_pid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StopSignal {
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGHUP")]
    Hup,
}

/// Milliseconds spent in each phase of the pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KernelFigures {
    pub workload: Option<Figures>,
    pub inner: Option<Figures>,
    pub outer: Figures,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ObjectStatus {
    Ok,
    /// An event no family can observe on this kernel.
    Partial,
    #[default]
    Failed,
    /// Sat a forced pass out: the auto pass counts it.
    AsAuto,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    #[default]
    Skipped,
    Loaded,
    Attached,
    Failed,
}

/// One object in one pass; its maps' contents where it took part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ObjectReport {
    /// Its file name.
    pub object: String,
    pub attach: AttachMode,
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
    /// The rows of its flow table (`<collector>_flows`), closed ones reported once.
    pub flows: Option<Vec<Flow>>,
    pub flow_table: Option<FlowTable>,
    /// The rows of its DNS server table (`<collector>_servers`).
    pub dns_servers: Option<Vec<DnsServer>>,
    pub server_table: Option<ServerTable>,
    /// What each stream map (a ring buffer) delivered in the pass, by map name.
    pub streams: Option<BTreeMap<String, StreamReport>>,
    /// The kernel's own figure of the memory its maps hold: the sum of each map's `memlock`
    /// (its fd's fdinfo, bpftool's `bytes_memlock`); None where one could not be read.
    pub memory_bytes: Option<u64>,
}

impl ObjectReport {
    /// The total of `counter`: None where it is unobserved or the object has no such counter.
    pub fn total(&self, counter: &str) -> Option<u64> {
        self.counters.as_ref()?.get(counter).copied().flatten()
    }

    /// Why `counter` was not observed, where the report says.
    pub fn unobserved_because(&self, counter: &str) -> Option<&str> {
        self.unobserved
            .as_ref()?
            .get(counter)
            .map(String::as_str)
            .filter(|why| !why.is_empty())
    }

    /// The per-application rows, by process or by cgroup.
    pub fn rows(&self) -> &[Row] {
        self.per_process
            .as_deref()
            .or(self.per_cgroup.as_deref())
            .unwrap_or_default()
    }

    /// The row of process `tgid`: in the table, or, once the process was released and its
    /// row moved into a stream with its exit, in that exit's record.
    pub fn row_of(&self, tgid: u32) -> Option<&Row> {
        let in_table = self
            .per_process
            .as_deref()
            .and_then(|rows| rows.iter().find(|r| r.tgid == Some(tgid)));
        in_table.or_else(|| self.exit_of(tgid)?.row.as_ref())
    }

    /// Every process exit the object's streams delivered.
    pub fn exits(&self) -> impl Iterator<Item = &ProcessExit> {
        self.streams
            .iter()
            .flat_map(|s| s.values())
            .flat_map(|s| s.exits.iter().flatten())
    }

    /// Every flow close the object's streams delivered.
    pub fn closes(&self) -> impl Iterator<Item = &FlowClose> {
        self.streams
            .iter()
            .flat_map(|s| s.values())
            .flat_map(|s| s.closes.iter().flatten())
    }

    /// The streamed exit of process `tgid`.
    pub fn exit_of(&self, tgid: u32) -> Option<&ProcessExit> {
        self.exits().find(|e| e.tgid == tgid)
    }

    /// Every program that failed to load or attach, as "name: detail".
    pub fn failed_programs(&self) -> Vec<String> {
        self.programs
            .iter()
            .filter(|p| p.state == ProgramState::Failed)
            .map(|p| format!("{}: {}", p.name, p.detail))
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ObjectTimes {
    pub choose: f64,
    pub load: f64,
    pub attach: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EventReport {
    pub event: String,
    /// The family that observes it, or None.
    pub family: Option<AttachFamily>,
    /// Every family not used for it, and why (the used one says `used`).
    #[cfg_attr(
        feature = "schema",
        schemars(extend("propertyNames" = {"$ref": "#/$defs/AttachFamily"}))
    )]
    pub passed_over: BTreeMap<AttachFamily, PassedOverReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PassedOverReport {
    pub kind: PassedOverKind,
    pub why: String,
}

/// A family's state for an event: passed over (and why), or `used` by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum PassedOverKind {
    Why(PassedOver),
    Used(Used),
}

impl PassedOverKind {
    /// Why the family was passed over; None where it was used.
    pub fn passed_over(self) -> Option<PassedOver> {
        match self {
            PassedOverKind::Why(why) => Some(why),
            PassedOverKind::Used(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Used {
    Used,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgramReport {
    pub name: String,
    pub target: String,
    pub state: ProgramState,
    pub detail: String,
    /// What the verifier said of the program's load (its `BPF_LOG_STATS` lines), when it
    /// loaded and the consumer asked; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<VerifierStats>,
}

/// The verifier's statistics of one program's load, as the kernel's BPF CI (veristat) reads
/// them from the log's closing lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifierStats {
    /// Instructions processed (`processed N insns`): what the complexity limit bounds.
    pub insns: u32,
    /// The kernel's complexity limit (`(limit L)`).
    pub limit: u32,
    /// Verifier states created (`total_states`).
    pub states: u32,
    /// The most states held at once (`peak_states`).
    pub peak_states: u32,
    pub max_states_per_insn: u32,
    /// Verification time (`verification time N usec`).
    pub usec: u64,
}

/// One application's row: keyed by process (`tgid`) or cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub tgid: Option<u32>,
    pub cgroup: Option<u64>,
    /// Its process had exited when the row was read (reported once, then removed).
    pub exited: bool,
    pub counters: BTreeMap<String, Option<u64>>,
}

impl Row {
    /// Its tgid or cgroup id, for a message.
    pub fn key(&self) -> String {
        match (self.tgid, self.cgroup) {
            (Some(tgid), _) => tgid.to_string(),
            (None, Some(cgroup)) => format!("cgroup {cgroup}"),
            (None, None) => "?".into(),
        }
    }
}

/// What one stream map delivered in a pass. Records it had no room for are the collector's own
/// counter (`stream_lost` of process), counted as the ring refused them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamReport {
    /// The records' C type (the map's `kc_record:` tag): `kc_process_exit`, `kc_flow_close`.
    pub record: String,
    pub received: u64,
    pub bytes: u64,
    /// Records shorter than their type.
    pub malformed: u64,
    /// Records that carried their table row (the row left the table).
    pub rows: u64,
    /// Records received beyond those listed.
    pub not_listed: u64,
    /// The records, where they are process exits.
    pub exits: Option<Vec<ProcessExit>>,
    /// The records, where they are flow closes.
    pub closes: Option<Vec<FlowClose>>,
}

/// A process whose threads are all gone (`struct kc_process_exit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcessExit {
    pub tgid: u32,
    /// Its parent's tgid at release (the reaper, if it was reparented).
    pub ppid: u32,
    pub comm: String,
    /// As wait(2) reports it: the exit status << 8, or the signal that killed it.
    pub exit_code: u32,
    /// CLOCK_MONOTONIC at fork and at release (in the tracepoint family, at the exit of its
    /// last thread).
    pub start_ns: u64,
    pub exit_ns: u64,
    /// Its final row of the table keyed by process, which left the table with it; None when
    /// the table is not keyed by process or it had none.
    pub row: Option<Row>,
}

/// `kc-loader --group-by`: what the per-application table is keyed by.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// No table: totals only.
    None,
    #[default]
    Process,
    Cgroup,
}

impl GroupBy {
    pub const ALL: [GroupBy; 3] = [GroupBy::None, GroupBy::Process, GroupBy::Cgroup];

    /// Its value in the ctrl map (`enum kc_group_by` in includes/kc_common.h).
    pub const fn value(self) -> u64 {
        match self {
            GroupBy::None => 0,
            GroupBy::Process => 1,
            GroupBy::Cgroup => 2,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::Process => "process",
            GroupBy::Cgroup => "cgroup",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("group-by {0:?}: use none, process or cgroup")]
pub struct GroupByError(String);

impl FromStr for GroupBy {
    type Err = GroupByError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| GroupByError(s.to_string()))
    }
}

/// `--map-reads`: how a collection reads each table (kc-loader's `enum kc_map_reads`,
/// `co-re/loader/kc_map_walk.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MapReads {
    /// `BPF_MAP_LOOKUP_BATCH` (5.6+), a thousand entries a call; one key at a time where the
    /// kernel has no batches for the map.
    #[default]
    Batch,
    /// `BPF_MAP_GET_NEXT_KEY` and a lookup per entry.
    PerKey,
}

impl MapReads {
    pub const ALL: [MapReads; 2] = [MapReads::Batch, MapReads::PerKey];

    pub const fn as_str(self) -> &'static str {
        match self {
            MapReads::Batch => "batch",
            MapReads::PerKey => "per-key",
        }
    }
}

impl fmt::Display for MapReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("map-reads {0:?}: use batch or per-key")]
pub struct MapReadsError(String);

impl FromStr for MapReads {
    type Err = MapReadsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MapReads::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| MapReadsError(s.to_string()))
    }
}

/// The per-application table's statistics over the pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AppsTable {
    pub group_by: GroupBy,
    pub table_size: u64,
    pub rows: u64,
    pub insertions: u64,
    pub evicted: u64,
    pub failures: u64,
    pub removed_exited: u64,
}

/// An LRU table's evictions, which it makes silently: every row the programs inserted is
/// still there (`rows`, read before any removal), moved out with a stream's record
/// (`streamed`), or was evicted to make room. As kc-loader works it out (kc_map_evicted).
pub fn evicted(insertions: u64, rows: u64, streamed: u64) -> u64 {
    insertions.saturating_sub(rows + streamed)
}

/// Every report in `text` (one JSON document per pass, as `kc-loader --json` prints them).
pub fn parse_reports(text: &str) -> Result<Vec<LoaderReport>, serde_json::Error> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<LoaderReport>()
        .collect()
}

/// The report's JSON Schema (draft 2020-12), as the release ships it.
#[cfg(feature = "schema")]
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(LoaderReport);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
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
            o.events[0].passed_over[&AttachFamily::Trampoline].kind,
            PassedOverKind::Why(PassedOver::Refused)
        );
        assert_eq!(r.attach, AttachMode::Only(AttachFamily::Tracepoint));
        assert_eq!(o.apps.as_ref().unwrap().group_by, GroupBy::Process);
        assert_eq!(o.row_of(7).unwrap().counters["exception"], Some(80));
        assert_eq!(o.total("exception"), Some(80));
        assert_eq!(o.total("fault"), None);
        assert_eq!(
            o.unobserved_because("fault"),
            Some("no family observes its event")
        );
        assert_eq!(r.kernel_figures.outer["stat.ctxt"], 12);
    }

    #[test]
    fn a_field_printed_twice_or_unknown_fails() {
        // The loader once printed "kernel" twice (its release, then its figures).
        let twice = PASS.replacen("\"kernel_figures\"", "\"kernel\"", 1);
        assert!(parse_reports(&twice).is_err());
        let without = PASS.replacen("\"kernel_figures\"", "\"figures\"", 1);
        assert!(
            parse_reports(&without).is_err(),
            "an old loader's report, without the kernel's figures"
        );
        let unknown = PASS.replacen("\"missed_runs\"", "\"missed\"", 1);
        assert!(parse_reports(&unknown).is_err());
        let family = PASS.replacen("\"trampoline\": {", "\"kprobe\": {", 1);
        assert!(parse_reports(&family).is_err(), "a family the type lacks");
    }

    #[test]
    fn group_by_names_round_trip() {
        for g in GroupBy::ALL {
            assert_eq!(g.to_string().parse::<GroupBy>().unwrap(), g);
        }
        assert!("thread".parse::<GroupBy>().is_err());
    }

    #[test]
    fn map_reads_names_round_trip() {
        for r in MapReads::ALL {
            assert_eq!(r.to_string().parse::<MapReads>().unwrap(), r);
        }
        assert!("per_key".parse::<MapReads>().is_err());
    }
}
