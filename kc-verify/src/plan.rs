//! An object's attach plan (`kc_common::plan`), generated from what the object holds: its
//! programs' names and sections (`<event>__<family>[_<role>][__<variant>]`, see
//! `includes/kc_bpf.h`), its maps' BTF definitions and its counter struct's source tags. And
//! the check of a plan against its object: a plan that names a program, map or counter the
//! object lacks, or leaves one out, is wrong.

use std::collections::BTreeMap;

use kc_common::plan::{
    CounterPlan, EventPlan, GroupPlan, MapPlan, MapRole, ObjectPlan, ProgramPlan, Role, Target,
};
use kc_common::AttachFamily;

use crate::families;
use crate::object::{ObjectKind, Report};

/// A program name that follows the convention, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramName<'a> {
    pub event: &'a str,
    pub family: AttachFamily,
    /// The name without its `__<variant>`.
    pub group: &'a str,
    pub role: Role,
    pub variant: Option<&'a str>,
}

/// `<event>__<family>[_ret][_<what>][__<variant>]`; None for a program outside the families.
pub fn parse_program_name(name: &str) -> Option<ProgramName<'_>> {
    let (event, rest) = name.split_once("__")?;
    let family = AttachFamily::ALL
        .into_iter()
        .find(|f| rest.split('_').next() == Some(f.as_str()))?;
    let after = &rest[family.as_str().len()..];
    let (role_part, variant) = match after.split_once("__") {
        Some((r, v)) => (r, Some(v)),
        None => (after, None),
    };
    let group = &name[..name.len() - variant.map_or(0, |v| v.len() + 2)];
    let returns = role_part == "_ret" || role_part.starts_with("_ret_");
    (!event.is_empty()).then_some(ProgramName {
        event,
        family,
        group,
        role: if returns { Role::Return } else { Role::Entry },
        variant,
    })
}

/// Where a program of `section` attaches and how a kernel is asked for it.
pub fn target_of(section: &str) -> Option<Target> {
    let (kind, rest) = section.split_once('/')?;
    let rest = rest.to_string();
    Some(match kind {
        "fentry" | "fexit" => Target::BtfFunction { function: rest },
        "tp_btf" => Target::BtfTracepoint { tracepoint: rest },
        "kprobe" | "kretprobe" | "ksyscall" | "kretsyscall" => Target::Kallsyms { function: rest },
        "tracepoint" | "tp" => {
            let (category, name) = rest.split_once('/')?;
            Target::Tracefs {
                category: category.into(),
                name: name.into(),
            }
        }
        "raw_tp" | "raw_tracepoint" => Target::RawTracepoint { name: rest },
        _ => return None,
    })
}

/// `BPF_MAP_TYPE_RINGBUF`.
const MAP_TYPE_RINGBUF: u32 = 27;

/// What a map named `name` of `collector` is for.
pub fn map_role(collector: &str, name: &str, map_type: u32) -> MapRole {
    if map_type == MAP_TYPE_RINGBUF {
        return MapRole::Stream;
    }
    match name
        .strip_prefix(collector)
        .and_then(|n| n.strip_prefix('_'))
    {
        Some("counters") => MapRole::Totals,
        Some("apps") => MapRole::Apps,
        Some("ctrl") => MapRole::Ctrl,
        Some("flows") => MapRole::Flows,
        Some("servers") => MapRole::DnsServers,
        _ if name.ends_with("_latency") => MapRole::Histogram,
        _ if name.ends_with("_devices") => MapRole::Devices,
        _ => MapRole::Internal,
    }
}

/// The collector an object file belongs to.
fn collector_of(file_name: &str) -> Result<String, String> {
    match ObjectKind::from_file_name(file_name) {
        ObjectKind::Legacy { collector, .. } | ObjectKind::CoRe { collector } => Ok(collector),
        ObjectKind::Other => Err(format!(
            "{file_name}: not an object of ours ({{p|r}}kc_<collector>.<bucket>.o or <collector>.bpf.o)"
        )),
    }
}

/// The plan of object `file_name`, from its verification report.
pub fn plan_of(file_name: &str, r: &Report) -> Result<ObjectPlan, String> {
    let collector = collector_of(file_name)?;
    let mut events: Vec<EventPlan> = Vec::new();
    let mut other_programs = Vec::new();
    for f in r.functions.iter().filter(|f| f.section != ".text") {
        let (Some(name), Some(target)) = (parse_program_name(&f.name), target_of(&f.section))
        else {
            other_programs.push(f.name.clone());
            continue;
        };
        if families::section_family(&f.section) != Some(name.family.as_str()) {
            other_programs.push(f.name.clone());
            continue;
        }
        let at = match events.iter().position(|e| e.event == name.event) {
            Some(at) => at,
            None => {
                events.push(EventPlan {
                    event: name.event.to_string(),
                    families: BTreeMap::new(),
                });
                events.len() - 1
            }
        };
        let groups = events[at].families.entry(name.family).or_default();
        let program = ProgramPlan {
            program: f.name.clone(),
            section: f.section.clone(),
            variant: name.variant.map(str::to_string),
            target,
        };
        match groups.iter_mut().find(|g| g.group == name.group) {
            Some(g) => g.alternatives.push(program),
            None => groups.push(GroupPlan {
                group: name.group.to_string(),
                role: name.role,
                alternatives: vec![program],
            }),
        }
    }
    let maps = r
        .map_defs
        .iter()
        .map(|m| {
            let (Some(map_type), Some(max_entries)) = (m.map_type, m.max_entries) else {
                return Err(format!(
                    "{file_name}: map {} does not declare its type and max_entries",
                    m.name
                ));
            };
            Ok(MapPlan {
                name: m.name.clone(),
                role: map_role(&collector, &m.name, map_type),
                map_type,
                max_entries,
                key_size: m.key_size,
                value_size: m.value_size,
                value_type: m.value_type.clone(),
                value_fields: m.value_fields.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let counters = r
        .counters
        .iter()
        .map(|c| counter_plan(&collector, &c.name, &c.tags))
        .collect();
    Ok(ObjectPlan {
        object: file_name.to_string(),
        collector,
        events,
        other_programs,
        maps,
        counters,
    })
}

/// A counter's plan from its source tags (`kc_event:`, `kc_unobserved:`, `kc_blind:`).
fn counter_plan(collector: &str, name: &str, tags: &[String]) -> CounterPlan {
    let mut c = CounterPlan {
        name: name.to_string(),
        events: Vec::new(),
        unobserved: None,
        blind: BTreeMap::new(),
    };
    for t in tags {
        if let Some(ev) = t.strip_prefix("kc_event:") {
            c.events.push(format!("kc_{collector}_{ev}"));
        } else if let Some(why) = t.strip_prefix("kc_unobserved:") {
            c.unobserved = Some(why.to_string());
        } else if let Some((family, why)) =
            t.strip_prefix("kc_blind:").and_then(|b| b.split_once(':'))
        {
            if let Ok(f) = family.parse() {
                c.blind.insert(f, why.to_string());
            }
        }
    }
    c
}

/// What is wrong with `plan` as the plan of the object `r` reports on: each program, map or
/// counter it names that the object lacks, each the object has that it leaves out, and any
/// other difference from the object's own plan.
pub fn check(plan: &ObjectPlan, file_name: &str, r: &Report) -> Vec<String> {
    let generated = match plan_of(file_name, r) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    if *plan == generated {
        return Vec::new();
    }
    let mut wrong = Vec::new();
    let mut compare = |what: &str, planned: Vec<String>, present: Vec<String>| {
        for p in planned.iter().filter(|p| !present.contains(p)) {
            wrong.push(format!("the plan names {what} {p}, which the object lacks"));
        }
        for p in present.iter().filter(|p| !planned.contains(p)) {
            wrong.push(format!("the object's {what} {p} is not in the plan"));
        }
    };
    let programs = |p: &ObjectPlan| -> Vec<String> {
        p.programs()
            .map(|p| p.program.clone())
            .chain(p.other_programs.iter().cloned())
            .collect()
    };
    compare("program", programs(plan), programs(&generated));
    let maps = |p: &ObjectPlan| -> Vec<String> { p.maps.iter().map(|m| m.name.clone()).collect() };
    compare("map", maps(plan), maps(&generated));
    let counters =
        |p: &ObjectPlan| -> Vec<String> { p.counters.iter().map(|c| c.name.clone()).collect() };
    compare("counter", counters(plan), counters(&generated));
    if wrong.is_empty() {
        wrong.push(format!(
            "the plan of {file_name} differs from what the object holds (its sections, map definitions or counter tags): regenerate it with cargo xtask package"
        ));
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names_come_apart() {
        let p = parse_program_name("kc_vfs_read__probe_ret").unwrap();
        assert_eq!(
            (p.event, p.family, p.group, p.role, p.variant),
            (
                "kc_vfs_read",
                AttachFamily::Probe,
                "kc_vfs_read__probe_ret",
                Role::Return,
                None
            )
        );
        let p = parse_program_name("kc_cachestat_dirty__tracepoint__folio").unwrap();
        assert_eq!(
            (p.group, p.role, p.variant),
            ("kc_cachestat_dirty__tracepoint", Role::Entry, Some("folio"))
        );
        let p = parse_program_name("kc_sync_fsync__trampoline_ret_fdatasync").unwrap();
        assert_eq!(p.role, Role::Return);
        let p = parse_program_name("kc_process_fork__tracepoint_retries").unwrap();
        assert_eq!(p.role, Role::Entry, "_retries is not _ret");
        assert!(parse_program_name("kc_helper").is_none());
        assert!(parse_program_name("kc_x__kprobe").is_none());
        assert!(parse_program_name("__probe").is_none());
    }

    #[test]
    fn sections_say_where_and_how_to_ask() {
        assert_eq!(
            target_of("fexit/vfs_read"),
            Some(Target::BtfFunction {
                function: "vfs_read".into()
            })
        );
        assert_eq!(
            target_of("tracepoint/syscalls/sys_exit_read"),
            Some(Target::Tracefs {
                category: "syscalls".into(),
                name: "sys_exit_read".into()
            })
        );
        assert_eq!(
            target_of("raw_tp/sched_switch"),
            Some(Target::RawTracepoint {
                name: "sched_switch".into()
            })
        );
        assert_eq!(target_of("tracepoint/nocategory"), None);
        assert_eq!(target_of("license"), None);
        assert_eq!(map_role("vfs", "vfs_counters", 6), MapRole::Totals);
        assert_eq!(
            map_role("hardirq", "hardirq_latency", 1),
            MapRole::Histogram
        );
        assert_eq!(map_role("disk", "disk_starts", 1), MapRole::Internal);
        assert_eq!(map_role("process", "process_exits", 27), MapRole::Stream);
        assert_eq!(
            map_role("connections", "connections_flows", 9),
            MapRole::Flows
        );
        assert_eq!(map_role("dns", "dns_servers", 9), MapRole::DnsServers);
    }
}
