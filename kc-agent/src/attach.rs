//! One object through aya by its plan: the maps created, each event's family chosen by the
//! plan's rule (the first family in `auto`'s order whose every group has an alternative this
//! kernel has; one that then fails to load or attach is dropped for the event and the next
//! tried), only the chosen programs loaded and attached, the ctrl map set.

use std::collections::BTreeMap;

use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};
use kc_common::plan::{MapRole, ObjectPlan, ProgramPlan, Target};
use kc_common::report::{
    EventReport, ObjectReport, ObjectStatus, PassedOverKind, PassedOverReport, ProgramReport,
    ProgramState,
};
use kc_common::{AttachFamily, AttachMode, PassedOver};

use crate::kernel::Kernel;
use crate::{sys, Options};

/// An object as loaded: aya's handle (its maps and attached programs live as long as it) and
/// what its report says so far.
pub struct Loaded {
    pub plan: ObjectPlan,
    pub ebpf: Option<Ebpf>,
    pub report: ObjectReport,
    /// The families that observe each event.
    pub families: BTreeMap<String, AttachFamily>,
    /// Its programs' recursion_misses when attached.
    pub missed_before: u64,
}

/// An object that could not be attached at all, and why.
pub fn failed(object: &str, o: &Options, error: String) -> Loaded {
    Loaded {
        plan: ObjectPlan {
            object: object.to_string(),
            collector: String::new(),
            events: Vec::new(),
            other_programs: Vec::new(),
            maps: Vec::new(),
            counters: Vec::new(),
        },
        ebpf: None,
        report: ObjectReport {
            object: object.to_string(),
            attach: o.attach,
            status: ObjectStatus::Failed,
            error,
            ..ObjectReport::default()
        },
        families: BTreeMap::new(),
        missed_before: 0,
    }
}

/// Bytes of an object's maps at their sizes: keys and values, each value per CPU where it is
/// (as kc-loader counts them).
pub fn map_bytes(plan: &ObjectPlan, cpus: usize) -> u64 {
    plan.maps
        .iter()
        .map(|m| {
            let value = u64::from(m.value_size.unwrap_or(0)).div_ceil(8) * 8;
            let copies = if sys::PERCPU_MAP_TYPES.contains(&m.map_type) {
                cpus as u64
            } else {
                1
            };
            u64::from(m.max_entries) * (u64::from(m.key_size.unwrap_or(0)) + value * copies)
        })
        .sum()
}

/// Loads `bytes` (the object `plan` describes) and attaches it as `o` says.
pub fn attach(plan: &ObjectPlan, bytes: &[u8], kernel: &Kernel, o: &Options) -> Loaded {
    let mut loaded = Loaded {
        plan: plan.clone(),
        ebpf: None,
        report: ObjectReport {
            object: plan.object.clone(),
            attach: o.attach,
            status: ObjectStatus::Failed,
            programs: plan
                .programs()
                .map(|p| ProgramReport {
                    name: p.program.clone(),
                    target: target_name(&p.target),
                    ..ProgramReport::default()
                })
                .collect(),
            ..ObjectReport::default()
        },
        families: BTreeMap::new(),
        missed_before: 0,
    };
    let mut loader = EbpfLoader::new();
    loader.btf(kernel.btf.as_ref());
    let apps: Vec<&str> = plan
        .maps
        .iter()
        .filter(|m| m.role == MapRole::Apps)
        .map(|m| m.name.as_str())
        .collect();
    if let Some(size) = o.table_size {
        for name in &apps {
            loader.map_max_entries(name, size);
        }
    }
    let mut ebpf = match loader.load(bytes) {
        Ok(e) => e,
        Err(e) => {
            loaded.report.error = format!("load: {e}");
            return loaded;
        }
    };
    if let Err(e) = set_ctrl(&mut ebpf, plan, o) {
        loaded.report.error = format!("writing the ctrl map: {e}");
        return loaded;
    }
    let mut partial = false;
    for event in &plan.events {
        let (family, passed_over) = choose(&mut ebpf, event, kernel, o.attach, &mut loaded.report);
        partial |= family.is_none();
        if let Some(f) = family {
            loaded.families.insert(event.event.clone(), f);
        }
        loaded.report.events.push(EventReport {
            event: event.event.clone(),
            family,
            passed_over,
        });
    }
    for name in &plan.other_programs {
        if let Err(e) = load_and_attach(&mut ebpf, kernel.btf.as_ref(), name, None) {
            loaded.report.error = format!("{name}: {e}");
            return loaded;
        }
    }
    loaded.report.status = if partial {
        ObjectStatus::Partial
    } else {
        ObjectStatus::Ok
    };
    loaded.ebpf = Some(ebpf);
    loaded
}

/// The family that observes `event`, and why each other one was passed over.
fn choose(
    ebpf: &mut Ebpf,
    event: &kc_common::plan::EventPlan,
    kernel: &Kernel,
    mode: AttachMode,
    report: &mut ObjectReport,
) -> (
    Option<AttachFamily>,
    BTreeMap<AttachFamily, PassedOverReport>,
) {
    let mut passed = BTreeMap::new();
    let mut why = |f: AttachFamily, kind: PassedOver, why: String| {
        passed.insert(
            f,
            PassedOverReport {
                kind: PassedOverKind::Why(kind),
                why,
            },
        );
    };
    let mut chosen = None;
    for f in AttachFamily::ALL {
        if chosen.is_some() {
            why(f, PassedOver::Costlier, "a cheaper family fits".into());
            continue;
        }
        if mode != AttachMode::Auto && mode != AttachMode::Only(f) {
            why(
                f,
                PassedOver::NotAsked,
                format!("not asked for (--attach {mode})"),
            );
            continue;
        }
        let Some(groups) = event.families.get(&f) else {
            why(
                f,
                PassedOver::NoProgram,
                format!("the collector has no {f} program for this event"),
            );
            continue;
        };
        // Per group, the first alternative this kernel has.
        let mut programs: Vec<&ProgramPlan> = Vec::new();
        let mut missing = None;
        for g in groups {
            let mut reason = None;
            match g
                .alternatives
                .iter()
                .find(|p| match kernel.has(f, &p.target) {
                    Ok(()) => true,
                    Err(r) => {
                        reason.get_or_insert(r);
                        false
                    }
                }) {
                Some(p) => programs.push(p),
                None => {
                    missing = reason;
                    break;
                }
            }
        }
        if let Some((kind, text)) = missing {
            why(f, kind, text);
            continue;
        }
        let mut attached = Vec::new();
        let mut failure = None;
        for p in &programs {
            match load_and_attach(ebpf, kernel.btf.as_ref(), &p.program, Some(&p.target)) {
                Ok(()) => attached.push(p.program.clone()),
                Err(e) => {
                    failure = Some((p.program.clone(), e));
                    break;
                }
            }
        }
        match failure {
            None => {
                for name in attached {
                    set_state(report, &name, ProgramState::Attached, "");
                }
                chosen = Some(f);
            }
            Some((name, e)) => {
                for done in &attached {
                    unload(ebpf, done);
                }
                set_state(report, &name, ProgramState::Failed, &e.to_string());
                let kind = if refused(&e) {
                    PassedOver::Refused
                } else {
                    PassedOver::Failed
                };
                why(f, kind, format!("{name}: {e}"));
            }
        }
    }
    (chosen, passed)
}

/// An error by which the kernel refuses a kind of program altogether (not ours to fix).
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| matches!(n, libc::EPERM | libc::EOPNOTSUPP | 524 /* ENOTSUPP */))
            || c.to_string().contains("Operation not permitted")
    })
}

fn set_state(report: &mut ObjectReport, name: &str, state: ProgramState, detail: &str) {
    if let Some(p) = report.programs.iter_mut().find(|p| p.name == name) {
        p.state = state;
        p.detail = detail.to_string();
    }
}

fn target_name(t: &Target) -> String {
    match t {
        Target::BtfFunction { function } | Target::Kallsyms { function } => function.clone(),
        Target::BtfTracepoint { tracepoint } => tracepoint.clone(),
        Target::Tracefs { category, name } => format!("{category}/{name}"),
        Target::RawTracepoint { name } => name.clone(),
    }
}

fn load_and_attach(
    ebpf: &mut Ebpf,
    btf: Option<&aya::Btf>,
    name: &str,
    target: Option<&Target>,
) -> anyhow::Result<()> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("the object has no program {name}"))?;
    let need_btf = || btf.ok_or_else(|| anyhow::anyhow!("the kernel exposes no BTF"));
    match (prog, target) {
        (Program::FEntry(p), Some(Target::BtfFunction { function })) => {
            p.load(function, need_btf()?)?;
            p.attach()?;
        }
        (Program::FExit(p), Some(Target::BtfFunction { function })) => {
            p.load(function, need_btf()?)?;
            p.attach()?;
        }
        (Program::BtfTracePoint(p), Some(Target::BtfTracepoint { tracepoint })) => {
            p.load(tracepoint, need_btf()?)?;
            p.attach()?;
        }
        (Program::KProbe(p), Some(Target::Kallsyms { function })) => {
            p.load()?;
            p.attach(function, 0)?;
        }
        (Program::TracePoint(p), Some(Target::Tracefs { category, name })) => {
            p.load()?;
            p.attach(category, name)?;
        }
        (Program::RawTracePoint(p), Some(Target::RawTracepoint { name })) => {
            p.load()?;
            p.attach(name)?;
        }
        (p, t) => anyhow::bail!(
            "{name}: a {:?} program with target {t:?}: not a pair the plan makes",
            p.prog_type()
        ),
    }
    Ok(())
}

fn unload(ebpf: &mut Ebpf, name: &str) {
    let Some(prog) = ebpf.program_mut(name) else {
        return;
    };
    let _ = match prog {
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::TracePoint(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        _ => Ok(()),
    };
}

/// `group_by` into each ctrl map (`struct kc_ctrl`: group_by, insertions, failures).
fn set_ctrl(ebpf: &mut Ebpf, plan: &ObjectPlan, o: &Options) -> std::io::Result<()> {
    for m in plan.maps.iter().filter(|m| m.role == MapRole::Ctrl) {
        let Some(map) = ebpf.map(&m.name) else {
            continue;
        };
        let fd = map_fd(map)?;
        let mut value = vec![0u8; m.value_size.unwrap_or(24) as usize];
        value[..8].copy_from_slice(&o.group_by.value().to_ne_bytes());
        sys::update(fd, &0u32.to_ne_bytes(), &value)?;
    }
    Ok(())
}

/// A map's descriptor (of the map types our objects declare).
pub fn map_fd(map: &aya::maps::Map) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
    use aya::maps::Map;
    use std::os::fd::AsFd;
    let data = match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d) => d,
        _ => {
            return Err(std::io::Error::other(
                "a map type our objects do not declare",
            ))
        }
    };
    Ok(data.fd().as_fd())
}

/// Runs the object's attached programs missed (recursion_misses), summed.
pub fn missed_runs(loaded: &Loaded) -> u64 {
    use std::os::fd::AsFd;
    let Some(ebpf) = &loaded.ebpf else {
        return 0;
    };
    ebpf.programs()
        .filter_map(|(_, p)| p.fd().ok())
        .filter_map(|fd| sys::recursion_misses(fd.as_fd()).ok())
        .sum()
}
