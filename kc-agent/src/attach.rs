//! One object through aya by its plan: loaded once (its maps created), then attached once per
//! pass: each event's family chosen by the plan's rule (the first family in `auto`'s order
//! whose every group has an alternative this kernel has; one that then fails to load or attach
//! is dropped for the event and the next tried), a program loaded the first time a pass needs
//! it and kept loaded for the next (the verifier sees it once), the ctrl map set, the maps
//! emptied between passes.

use std::collections::BTreeMap;
use std::time::Instant;

use aya::programs::{fentry, fexit, kprobe, raw_trace_point, tp_btf, trace_point, Program};
use aya::{Ebpf, EbpfLoader};
use kc_common::kernel::KernelVersion;
use kc_common::plan::{MapRole, ObjectPlan, ProgramPlan, Streams, Target};
use kc_common::report::{
    EventReport, ObjectReport, ObjectStatus, ObjectTimes, PassedOverKind, PassedOverReport,
    ProgramReport, ProgramState,
};
use kc_common::{AttachFamily, AttachMode, PassedOver};

use crate::handover::Handover;
use crate::kernel::Kernel;
use crate::TableSizes;
use crate::{ms, probe_events, sys, Options};

/// An attachment of one program; dropping it detaches the program (which stays loaded).
#[allow(dead_code)] // held for its Drop
pub enum Link {
    FEntry(fentry::FEntryLink),
    FExit(fexit::FExitLink),
    BtfTracePoint(tp_btf::BtfTracePointLink),
    KProbe(kprobe::KProbeLink),
    /// A kprobe attached by address (`sys::kprobe_at`): the perf event.
    KProbeAt(std::os::fd::OwnedFd),
    /// A return probe made in `kprobe_events` with room for the calls in flight.
    ReturnProbe(probe_events::ReturnProbeEvent),
    TracePoint(trace_point::TracePointLink),
    RawTracePoint(raw_trace_point::RawTracePointLink),
}

/// An object as loaded: aya's handle (its maps and loaded programs live as long as it), the
/// links of the pass under way, and what the pass's report says so far.
pub struct Loaded {
    pub plan: ObjectPlan,
    pub ebpf: Option<Ebpf>,
    /// Why the object could not be loaded, where `ebpf` is None.
    load_error: String,
    /// Milliseconds spent creating its maps, told in the first pass's report.
    load_ms: f64,
    /// The maps hold a pass's counts: empty them before the next.
    counted: bool,
    links: Vec<Link>,
    pub report: ObjectReport,
    /// The families that observe each event in this pass.
    pub families: BTreeMap<String, AttachFamily>,
    /// Its programs' recursion_misses when this pass attached.
    pub missed_before: u64,
    /// Calls its return probes missed this pass, read as their links were taken.
    probes_missed: u64,
}

impl Link {
    /// Calls it did not see, where the kernel counts them (a `kprobe_events` return probe).
    fn missed(&self) -> Option<u64> {
        match self {
            Link::ReturnProbe(p) => p.missed(),
            _ => None,
        }
    }
}

impl Loaded {
    /// Whether this pass attached it (in whole or in part): its maps count.
    pub fn attached(&self) -> bool {
        self.ebpf.is_some() && self.report.status != ObjectStatus::Failed
    }

    /// Detaches every program of the pass (they stay loaded for the next).
    pub fn detach(&mut self) {
        drop(self.take_links());
    }

    /// The pass's links, for the caller to detach (by dropping them); what their probes
    /// missed is kept for the report.
    pub fn take_links(&mut self) -> Vec<Link> {
        self.probes_missed += self.links.iter().filter_map(Link::missed).sum::<u64>();
        std::mem::take(&mut self.links)
    }
}

/// An object that could not be loaded at all, and why.
pub fn failed(object: &str, error: String) -> Loaded {
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
        load_error: error,
        load_ms: 0.0,
        counted: false,
        links: Vec::new(),
        report: ObjectReport::default(),
        families: BTreeMap::new(),
        missed_before: 0,
        probes_missed: 0,
    }
}

/// The kernel's own figure of the memory of the object's maps (the plan's): the sum of each
/// map's `memlock` in its fd's fdinfo, as kc-loader reports it; None where one cannot be read.
pub fn map_memlock(loaded: &Loaded) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let ebpf = loaded.ebpf.as_ref()?;
    loaded
        .plan
        .maps
        .iter()
        .map(|m| {
            let fd = map_fd(ebpf.map(&m.name)?).ok()?;
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
            sys::fdinfo_field(&info, "memlock")
        })
        .sum()
}

/// Loads `bytes` (the object `plan` describes): its maps created, its tables sized as `sizes`
/// says; no program yet.
pub fn load(plan: &ObjectPlan, bytes: &[u8], kernel: &Kernel, sizes: TableSizes) -> Loaded {
    let t = Instant::now();
    let mut loader = EbpfLoader::new();
    loader.btf(kernel.btf.as_ref());
    for m in &plan.maps {
        let size = match m.role {
            MapRole::Apps => sizes.apps,
            MapRole::Flows => sizes.flows,
            _ => None,
        };
        if let Some(size) = size {
            loader.map_max_entries(&m.name, size);
        }
    }
    // Held until aya has the maps: dropping it removes their pins.
    let handover = match KernelVersion::parse(&kernel.release) {
        Ok(version) => Handover::prepare(plan, &version, &mut loader)
            .map_err(|e| {
                eprintln!(
                    "kc-agent: {}: its start-time hashes stay preallocated: {e}",
                    plan.object
                )
            })
            .ok(),
        Err(_) => None,
    };
    let mut loaded = failed(&plan.object, String::new());
    loaded.plan = plan.clone();
    match loader.load(bytes) {
        Ok(e) => loaded.ebpf = Some(e),
        Err(e) => loaded.load_error = format!("load: {e}"),
    }
    drop(handover);
    loaded.load_ms = ms(t);
    loaded
}

/// One pass: attaches `loaded` as `o` says, its maps emptied first where a pass counted in
/// them. The report says what attached, or why the object did not.
pub fn attach(loaded: &mut Loaded, kernel: &Kernel, o: &Options, cpus: usize) {
    loaded.detach();
    loaded.probes_missed = 0;
    loaded.families.clear();
    loaded.report = ObjectReport {
        object: loaded.plan.object.clone(),
        attach: o.attach,
        status: ObjectStatus::Failed,
        programs: loaded
            .plan
            .programs()
            .map(|p| ProgramReport {
                name: p.program.clone(),
                target: target_name(&p.target),
                ..ProgramReport::default()
            })
            .collect(),
        ..ObjectReport::default()
    };
    loaded.report.ms.load = std::mem::take(&mut loaded.load_ms);
    let Some(ebpf) = loaded.ebpf.as_mut() else {
        loaded.report.error = loaded.load_error.clone();
        return;
    };
    let report = &mut loaded.report;
    if loaded.counted {
        if let Err(e) = empty_maps(ebpf, cpus) {
            report.error = format!("emptying the maps the last pass counted in: {e}");
            return;
        }
    }
    loaded.counted = true;
    if let Err(e) = set_ctrl(ebpf, &loaded.plan, o) {
        report.error = format!("writing the ctrl map: {e}");
        return;
    }
    let mut partial = false;
    for event in &loaded.plan.events {
        let (family, passed_over) = choose(
            ebpf,
            event,
            kernel,
            (o.attach, o.streams),
            report,
            &mut loaded.links,
        );
        // A stream left out by choice (--streams off) is not an event this kernel cannot see.
        partial |= family.is_none() && !(event.is_stream() && o.streams == Streams::Off);
        if let Some(f) = family {
            loaded.families.insert(event.event.clone(), f);
        }
        report.events.push(EventReport {
            event: event.event.clone(),
            family,
            passed_over,
        });
    }
    for name in &loaded.plan.other_programs {
        match load_and_attach(ebpf, kernel, name, None, &mut report.ms) {
            Ok(link) => loaded.links.push(link),
            Err(e) => {
                report.error = format!("{name}: {e}");
                loaded.links.clear(); // the object failed: nothing of it stays attached
                loaded.families.clear();
                return;
            }
        }
    }
    report.status = if partial {
        ObjectStatus::Partial
    } else {
        ObjectStatus::Ok
    };
}

/// The family that observes `event`, and why each other one was passed over.
fn choose(
    ebpf: &mut Ebpf,
    event: &kc_common::plan::EventPlan,
    kernel: &Kernel,
    (mode, streams): (AttachMode, Streams),
    report: &mut ObjectReport,
    links: &mut Vec<Link>,
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
        if event.is_stream() && streams == Streams::Off {
            why(
                f,
                PassedOver::NotAsked,
                "not asked for (--streams off): the table keeps the rows".into(),
            );
            continue;
        }
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
            let target = Some(&p.target);
            match load_and_attach(ebpf, kernel, &p.program, target, &mut report.ms) {
                Ok(link) => attached.push((p.program.clone(), link)),
                Err(e) => {
                    failure = Some((p.program.clone(), e));
                    break;
                }
            }
        }
        match failure {
            None => {
                for (name, link) in attached {
                    set_state(report, &name, ProgramState::Attached, "");
                    links.push(link);
                }
                chosen = Some(f);
            }
            Some((name, e)) => {
                // The group attaches whole or not at all: its attached part detaches here.
                drop(attached);
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

/// Attaches program `name` to `target`, loading it first where no pass has; the time each
/// step took is added to `times`.
fn load_and_attach(
    ebpf: &mut Ebpf,
    kernel: &Kernel,
    name: &str,
    target: Option<&Target>,
    times: &mut ObjectTimes,
) -> anyhow::Result<Link> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("the object has no program {name}"))?;
    if prog.fd().is_err() {
        let t = Instant::now();
        load_program(prog, kernel, name, target)?;
        times.load += ms(t);
    }
    let t = Instant::now();
    let link = attach_program(prog, kernel, name, target)?;
    times.attach += ms(t);
    Ok(link)
}

fn not_a_plan_pair(name: &str, prog: &Program, target: Option<&Target>) -> anyhow::Error {
    anyhow::anyhow!(
        "{name}: a {:?} program with target {target:?}: not a pair the plan makes",
        prog.prog_type()
    )
}

/// Loads program `name` (the verifier runs) for `target`.
fn load_program(
    prog: &mut Program,
    kernel: &Kernel,
    name: &str,
    target: Option<&Target>,
) -> anyhow::Result<()> {
    let btf = || {
        kernel
            .btf
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the kernel exposes no BTF"))
    };
    match (prog, target) {
        (Program::FEntry(p), Some(Target::BtfFunction { function })) => p.load(function, btf()?)?,
        (Program::FExit(p), Some(Target::BtfFunction { function })) => p.load(function, btf()?)?,
        (Program::BtfTracePoint(p), Some(Target::BtfTracepoint { tracepoint })) => {
            p.load(tracepoint, btf()?)?
        }
        (Program::KProbe(p), Some(Target::Kallsyms { .. })) => p.load()?,
        (Program::TracePoint(p), Some(Target::Tracefs { .. })) => p.load()?,
        (Program::RawTracePoint(p), Some(Target::RawTracepoint { .. })) => p.load()?,
        (p, t) => return Err(not_a_plan_pair(name, p, t)),
    }
    Ok(())
}

/// Attaches loaded program `name` to `target`. Where the kernel looks a kprobe's function up
/// slowly, the kprobe goes by address (see [`Kernel::kprobe_address`]).
fn attach_program(
    prog: &mut Program,
    kernel: &Kernel,
    name: &str,
    target: Option<&Target>,
) -> anyhow::Result<Link> {
    Ok(match (prog, target) {
        (Program::FEntry(p), Some(Target::BtfFunction { .. })) => {
            let id = p.attach()?;
            Link::FEntry(p.take_link(id)?)
        }
        (Program::FExit(p), Some(Target::BtfFunction { .. })) => {
            let id = p.attach()?;
            Link::FExit(p.take_link(id)?)
        }
        (Program::BtfTracePoint(p), Some(Target::BtfTracepoint { .. })) => {
            let id = p.attach()?;
            Link::BtfTracePoint(p.take_link(id)?)
        }
        (Program::KProbe(p), Some(Target::Kallsyms { function })) => {
            let retprobe = matches!(p.kind(), aya::programs::ProbeKind::Return);
            let address = kernel.kprobe_address(function);
            // A return probe goes through kprobe_events, with room for the calls in flight;
            // through the kprobe PMU where that fails.
            if let (true, Some(tracefs)) = (retprobe, kernel.tracefs()) {
                let at = address.map_or_else(|| function.clone(), |(_, a)| format!("{a:#x}"));
                let fd = std::os::fd::AsFd::as_fd(p.fd()?);
                if let Ok(probe) = probe_events::ReturnProbeEvent::attach(
                    fd,
                    tracefs,
                    &at,
                    kernel.return_probe_room,
                ) {
                    return Ok(Link::ReturnProbe(probe));
                }
            }
            match address {
                Some((pmu, address)) => {
                    let fd = std::os::fd::AsFd::as_fd(p.fd()?);
                    Link::KProbeAt(sys::kprobe_at(fd, pmu, address, retprobe)?)
                }
                None => {
                    let id = p.attach(function, 0)?;
                    Link::KProbe(p.take_link(id)?)
                }
            }
        }
        (Program::TracePoint(p), Some(Target::Tracefs { category, name })) => {
            let id = p.attach(category, name)?;
            Link::TracePoint(p.take_link(id)?)
        }
        (Program::RawTracePoint(p), Some(Target::RawTracepoint { name })) => {
            let id = p.attach(name)?;
            Link::RawTracePoint(p.take_link(id)?)
        }
        (p, t) => return Err(not_a_plan_pair(name, p, t)),
    })
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

/// Every map of the object back to as loaded: arrays zeroed, hashes emptied (the internal
/// `.rodata`/`.bss` maps are the programs' own and stay as they are).
fn empty_maps(ebpf: &Ebpf, cpus: usize) -> std::io::Result<()> {
    use aya::maps::Map;
    use std::os::fd::AsFd;
    for (name, map) in ebpf.maps().filter(|(name, _)| !name.starts_with('.')) {
        if matches!(map, Map::RingBuf(_)) {
            // A stream: drained by each read, nothing to empty.
            continue;
        }
        let data = map_data(map)?;
        let info = data
            .info()
            .map_err(|e| std::io::Error::other(format!("{name}: {e}")))?;
        let fd = data.fd().as_fd();
        match map {
            Map::Array(_) | Map::PerCpuArray(_) => {
                let copies = if matches!(map, Map::PerCpuArray(_)) {
                    cpus
                } else {
                    1
                };
                let zero = vec![0u8; sys::value_slot(info.value_size()) * copies];
                for index in 0..info.max_entries() {
                    sys::update(fd, &index.to_ne_bytes(), &zero)?;
                }
            }
            _ => sys::empty(fd, info.key_size() as usize)?,
        }
    }
    Ok(())
}

/// A map's kernel object (of the map types our objects declare).
fn map_data(map: &aya::maps::Map) -> std::io::Result<&aya::maps::MapData> {
    use aya::maps::Map;
    match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::RingBuf(d) => Ok(d),
        _ => Err(std::io::Error::other(
            "a map type our objects do not declare",
        )),
    }
}

/// A map's descriptor (of the map types our objects declare).
pub fn map_fd(map: &aya::maps::Map) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsFd;
    Ok(map_data(map)?.fd().as_fd())
}
/// Runs the object's attached programs missed (recursion_misses) and calls its return
/// probes missed this pass, summed.
pub fn missed_runs(loaded: &Loaded) -> u64 {
    use std::os::fd::AsFd;
    let Some(ebpf) = &loaded.ebpf else {
        return 0;
    };
    let runs: u64 = ebpf
        .programs()
        .filter_map(|(_, p)| p.fd().ok())
        .filter_map(|fd| sys::recursion_misses(fd.as_fd()).ok())
        .sum();
    let calls: u64 = loaded.links.iter().filter_map(Link::missed).sum();
    runs + calls + loaded.probes_missed
}
