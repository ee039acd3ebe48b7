//! The attach plan: what an agent needs to use a release's objects without re-deriving our
//! naming conventions. One `attach-plan.json` per tarball, generated from the objects
//! themselves (kc-verify's `plan`: program sections and names, the maps' BTF definitions,
//! the counter struct's source tags) and checked against them by `cargo xtask verify`.
//!
//! How to use it (what kc-loader does): for each event of an object, take the first family in
//! [`AttachPlan::order`] that *fits* this kernel: every one of its groups has an alternative
//! whose [`Target`] the kernel has (the first such alternative, in order, is the one to load);
//! a family that then fails to load or attach is dropped for that event and the next one
//! tried. Programs of families not chosen are not loaded (libbpf's
//! `bpf_program__set_autoload(prog, false)`, aya's and cilium/ebpf's: simply not loaded).
//! After load, write `group_by` into the ctrl map; read counters from the totals map (one
//! value per CPU: sum them), rows from the apps map. A counter is observed only where every one
//! of its [`CounterPlan::events`] was observed by a family not blind to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attach::AttachFamily;
use crate::report::GroupBy;

/// The plan's file name in each tarball.
pub const PLAN_FILE: &str = "attach-plan.json";

/// Every object of one tarball.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AttachPlan {
    /// The families in the order `auto` prefers them (cheapest first).
    pub order: Vec<AttachFamily>,
    /// The ctrl map's `group_by` values.
    pub group_by: BTreeMap<GroupBy, u64>,
    pub objects: Vec<ObjectPlan>,
}

impl AttachPlan {
    pub fn object(&self, name: &str) -> Option<&ObjectPlan> {
        self.objects.iter().find(|o| o.object == name)
    }
}

/// One object: its events and how to attach each, its maps and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ObjectPlan {
    /// The object's file name.
    pub object: String,
    pub collector: String,
    pub events: Vec<EventPlan>,
    /// Programs outside every family: always loaded and attached.
    pub other_programs: Vec<String>,
    pub maps: Vec<MapPlan>,
    /// The counters of the totals map's value, in order (each a u64).
    pub counters: Vec<CounterPlan>,
}

impl ObjectPlan {
    /// Every program the plan names.
    pub fn programs(&self) -> impl Iterator<Item = &ProgramPlan> {
        self.events
            .iter()
            .flat_map(|e| e.families.values().flatten())
            .flat_map(|g| &g.alternatives)
    }
}

/// The suffix of a stream's event (`kc_<collector>_stream`, includes/kc_bpf.h).
const STREAM_EVENT: &str = "_stream";

impl EventPlan {
    /// Whether its programs fill a stream map: an agent that does not poll streams (or a
    /// kernel without ring buffers) leaves it out, and the tables keep every row.
    pub fn is_stream(&self) -> bool {
        self.event.ends_with(STREAM_EVENT)
    }
}

/// `--streams`: whether the stream events load (kc-loader's and kc-agent's option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Streams {
    #[default]
    On,
    /// No stream event loads: released processes' rows stay in the tables.
    Off,
}

impl Streams {
    pub const ALL: [Streams; 2] = [Streams::On, Streams::Off];

    pub const fn as_str(self) -> &'static str {
        match self {
            Streams::On => "on",
            Streams::Off => "off",
        }
    }
}

impl std::fmt::Display for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("streams {0:?}: use on or off")]
pub struct StreamsError(String);

impl std::str::FromStr for Streams {
    type Err = StreamsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Streams::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| StreamsError(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EventPlan {
    /// `kc_<collector>_<event>`.
    pub event: String,
    /// Each family that has programs for it: the groups that must all attach.
    #[cfg_attr(
        feature = "schema",
        schemars(extend("propertyNames" = {"$ref": "#/$defs/AttachFamily"}))
    )]
    pub families: BTreeMap<AttachFamily, Vec<GroupPlan>>,
}

/// Programs that are alternatives for one another (a function or tracepoint renamed across
/// kernels): the first whose target the kernel has is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupPlan {
    /// The programs' common name (`<event>__<family>[_<role>]`).
    pub group: String,
    pub role: Role,
    pub alternatives: Vec<ProgramPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// At the function's (or system call's) entry.
    Entry,
    /// At its return (return-mode counters: errors, bytes, latency).
    Return,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgramPlan {
    pub program: String,
    /// Its ELF section (libbpf's program type and attach target).
    pub section: String,
    /// The `__<variant>` its name ends with, if any.
    pub variant: Option<String>,
    pub target: Target,
}

/// Where a program attaches, and how to tell whether this kernel has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "check", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    /// A kernel function in the kernel's (or a module's) BTF: a FUNC named `function`
    /// (fentry/fexit).
    BtfFunction { function: String },
    /// A tracepoint with BTF: the typedef `btf_trace_<tracepoint>` (tp_btf).
    BtfTracepoint { tracepoint: String },
    /// A kernel function in `/proc/kallsyms`, not in the kprobe blacklist (kprobe/kretprobe).
    Kallsyms { function: String },
    /// `<tracefs>/events/<category>/<name>` (classic tracepoints).
    Tracefs { category: String, name: String },
    /// A raw tracepoint: `<tracefs>/events/*/<name>`.
    RawTracepoint { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MapPlan {
    pub name: String,
    pub role: MapRole,
    /// `BPF_MAP_TYPE_*` (include/uapi/linux/bpf.h).
    pub map_type: u32,
    pub max_entries: u32,
    pub key_size: Option<u32>,
    pub value_size: Option<u32>,
    /// The value's C type (`struct kc_vfs_counters`); a stream's records' type.
    pub value_type: Option<String>,
    /// The value struct's fields, in order (the ctrl map's, the counters').
    pub value_fields: Vec<String>,
}

/// `BPF_MAP_TYPE_HASH`.
const MAP_TYPE_HASH: u32 = 1;
/// `BPF_F_NO_PREALLOC`: a hash map's elements allocated as they are inserted.
pub const BPF_F_NO_PREALLOC: u32 = 1;

impl MapPlan {
    /// Whether a consumer loads this map with [`BPF_F_NO_PREALLOC`] on `kernel`: a start-time
    /// hash (`<name>_starts` of type hash, includes/kc_bpf.h's KC_START_MAP, keyed by request:
    /// the calls in flight, a few hundred at most, in room for 8,192; those keyed by thread
    /// are LRU hashes, always preallocated) from 6.1 on, whose BPF memory allocator made
    /// allocating safe in any context a tracing program runs in (before, under the locks of
    /// the event traced, it could deadlock). kc-loader (co-re/loader/kc_maps.c) and the Go
    /// consumer apply the same rule: their reports of map memory agree.
    pub fn allocates_as_it_goes(&self, kernel: &crate::kernel::KernelVersion) -> bool {
        self.map_type == MAP_TYPE_HASH
            && self.name.ends_with("_starts")
            && *kernel >= crate::kernel::KernelVersion::new(6, 1, 0)
    }
}

/// What a map is for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MapRole {
    /// `<collector>_counters`: the totals, one counter struct per CPU.
    Totals,
    /// `<collector>_apps`: per-application rows (key: tgid or cgroup id), an LRU table.
    Apps,
    /// `<collector>_ctrl`: one `struct kc_ctrl`; the agent writes `group_by`.
    Ctrl,
    /// `*_latency`: histograms keyed by `struct kc_hist_key`.
    Histogram,
    /// `*_devices`: counts per device (`major << 20 | minor`).
    Devices,
    /// `<collector>_flows`: one `struct kc_flow` per network flow, keyed by its socket's
    /// address (an LRU table; closed rows are the agent's to report once and remove, where no
    /// stream took them).
    Flows,
    /// `<collector>_servers`: one `struct kc_dns_server` per DNS server, keyed by `struct
    /// kc_dns_server_key` (an LRU table; rows stay: a server's figures only grow).
    DnsServers,
    /// A ring buffer (`BPF_MAP_TYPE_RINGBUF`) of records, whose type is the plan's
    /// `value_type` (`struct kc_process_exit`): poll it while the programs run. Records it had
    /// no room for are counted by the collector (`stream_lost`).
    Stream,
    /// The programs' own bookkeeping (start times of calls in flight...): not for agents.
    Internal,
}

/// One counter: the events that feed it, and where it is not observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CounterPlan {
    pub name: String,
    /// The events (`kc_<collector>_<event>`) whose programs count it.
    pub events: Vec<String>,
    /// Why this object never observes it, if so.
    pub unobserved: Option<String>,
    /// Families that see its events but cannot know it, and why.
    #[cfg_attr(
        feature = "schema",
        schemars(extend("propertyNames" = {"$ref": "#/$defs/AttachFamily"}))
    )]
    pub blind: BTreeMap<AttachFamily, String>,
}

/// The plan's JSON Schema (draft 2020-12).
#[cfg(feature = "schema")]
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(AttachPlan);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::{MapPlan, MapRole};
    use crate::kernel::KernelVersion;

    fn map(name: &str, map_type: u32) -> MapPlan {
        MapPlan {
            name: name.into(),
            role: MapRole::Internal,
            map_type,
            max_entries: 8192,
            key_size: Some(4),
            value_size: Some(8),
            value_type: None,
            value_fields: Vec::new(),
        }
    }

    #[test]
    fn a_stream_event_is_named_so_and_streams_parse() {
        let event = |name: &str| super::EventPlan {
            event: name.into(),
            families: Default::default(),
        };
        assert!(event("kc_process_stream").is_stream());
        assert!(!event("kc_process_exit").is_stream());
        assert_eq!(
            "off".parse::<super::Streams>().unwrap(),
            super::Streams::Off
        );
        assert_eq!(
            "no".parse::<super::Streams>().unwrap_err().to_string(),
            "streams \"no\": use on or off"
        );
    }

    #[test]
    fn start_hashes_allocate_as_they_go_from_6_1() {
        let (old, new) = (KernelVersion::new(6, 0, 19), KernelVersion::new(6, 1, 0));
        assert!(!map("disk_starts", 1).allocates_as_it_goes(&old));
        assert!(map("disk_starts", 1).allocates_as_it_goes(&new));
        assert!(map("disk_starts", 1).allocates_as_it_goes(&KernelVersion::new(7, 3, 0)));
        // A handler's per-CPU start slot, a thread's LRU slot (BPF_MAP_TYPE_LRU_HASH, 9), and
        // hashes that are not start times, stay as they are.
        assert!(!map("hardirq_starts", 6).allocates_as_it_goes(&new));
        assert!(!map("schedlat_starts", 9).allocates_as_it_goes(&new));
        assert!(!map("schedlat_latency", 1).allocates_as_it_goes(&new));
    }
}
