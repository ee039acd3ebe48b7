//! Judging the guests' reports (pure): per (kernel, object, attach mode) whether it loaded,
//! attached what this kernel can attach, and counted; and the kernel x collector table.

use kc_common::report::{LoaderReport, ObjectReport, ObjectStatus};
use kc_common::{Arch, AttachFamily, AttachMode, KernelVersion, PassedOver};
use serde::Serialize;

use super::{KernelOutcome, BEGIN, END};
use crate::collectors::Collector;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectOutcome {
    pub object: String,
    pub collector: String,
    /// `legacy` or `co-re` (run by kc-loader), or [`AGENT_KIND`].
    pub kind: String,
    /// The `--attach` mode of the loader run.
    pub attach: String,
    /// `ok`, `failed`, or `skipped: reason`
    pub verdict: String,
    pub detail: String,
    pub counted: u64,
}

fn collector_of(object: &str) -> (String, String) {
    match kc_verify::ObjectKind::from_file_name(object) {
        kc_verify::ObjectKind::Legacy { collector, .. } => (collector, "legacy".into()),
        kc_verify::ObjectKind::CoRe { collector } => (collector, "co-re".into()),
        kc_verify::ObjectKind::Other => (object.to_string(), "?".into()),
    }
}

/// The kind of a CO-RE object's outcome when the Rust consumer (kc-agent) ran it.
pub const AGENT_KIND: &str = "kc-agent";

/// An event that no family observed, and why each family was passed over.
#[derive(Debug, Clone)]
pub struct Unobserved {
    pub event: String,
    pub reasons: Vec<(AttachFamily, Option<PassedOver>, String)>,
}

impl Unobserved {
    /// Every family tried cannot exist for it on this kernel: the collector declares none,
    /// the kernel lacks the target, or the kernel refused a family it `lacks` altogether.
    pub fn cannot_exist_without(&self, lacks: &[AttachFamily]) -> bool {
        self.reasons.iter().all(|(family, k, _)| {
            k.is_some_and(PassedOver::cannot_exist)
                || (*k == Some(PassedOver::Refused) && lacks.contains(family))
        })
    }

    pub fn has(&self, kind: PassedOver) -> bool {
        self.reasons.iter().any(|(_, k, _)| *k == Some(kind))
    }

    pub fn line(&self) -> String {
        let why: Vec<String> = self
            .reasons
            .iter()
            .map(|(f, _, w)| format!("{f}: {w}"))
            .collect();
        format!("{} ({})", self.event, why.join("; "))
    }
}

/// The attach families a kernel of `arch` cannot attach at all, by when its architecture
/// gained them: there the kernel's refusal is the expected answer, elsewhere a failure.
pub fn families_lacking(arch: Arch, kernel: &KernelVersion) -> Vec<AttachFamily> {
    match arch {
        // A trampoline on a kernel function is entered through an ftrace direct call, which
        // arm64 gained in 6.4 (its JIT makes trampolines from 6.0): before, fentry programs
        // load but every attach returns ENOTSUPP (seen on 5.10 and 6.1).
        Arch::Arm64 if kernel.code() < KernelVersion::new(6, 4, 0).code() => {
            vec![AttachFamily::Trampoline]
        }
        _ => vec![],
    }
}

/// How many events of a loader report's object were observed, and those that were not.
pub fn unobserved(o: &ObjectReport) -> (usize, Vec<Unobserved>) {
    let (observed, missing): (Vec<_>, Vec<_>) = o.events.iter().partition(|e| e.family.is_some());
    let missing = missing
        .into_iter()
        .map(|e| Unobserved {
            event: e.event.clone(),
            reasons: e
                .passed_over
                .iter()
                .map(|(family, p)| (*family, p.kind.passed_over(), p.why.clone()))
                .filter(|(_, k, _)| *k != Some(PassedOver::NotAsked))
                .collect(),
        })
        .collect();
    (observed.len(), missing)
}

fn log_tail(o: &ObjectReport) -> String {
    let lines: Vec<&str> = o.log_tail.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

/// An object's status (and its verdict) in a forced family's pass that would have attached
/// exactly what the auto pass attaches: it sat the pass out and the auto pass counted it.
const AS_AUTO: &str = "as-auto";

/// What the reports of one guest are judged against: the collectors, `counters.toml` and
/// `kernel-accounting.toml`, the guest's kernel and architecture, and the modules its kernel
/// could not load (name → why).
pub struct Guest<'a> {
    pub collectors: &'a [Collector],
    pub counters: &'a super::expect::Table,
    pub accounting: &'a crate::accounting::Table,
    pub kernel: &'a KernelVersion,
    pub arch: Arch,
    pub absent_modules: &'a std::collections::BTreeMap<String, String>,
}

/// The family each event of `object` got in `report`, in order; `None` where the report has
/// no such object.
fn event_families(report: &LoaderReport, object: &str) -> Option<Vec<Option<AttachFamily>>> {
    Some(
        report
            .object(object)?
            .events
            .iter()
            .map(|e| e.family)
            .collect(),
    )
}

/// Judges every pass of one guest's loader run: each report on its own, then each object
/// that sat a forced pass out (`as-auto`) against the auto pass, which must have used that
/// pass's family for every event (else the forced family was never proven for it).
pub fn judge_passes(reports: &[LoaderReport], guest: &Guest) -> Vec<ObjectOutcome> {
    let auto = reports.iter().find(|r| r.attach == AttachMode::Auto);
    let mut outcomes = Vec::new();
    for report in reports {
        let mode = report.attach;
        for mut outcome in judge(report, guest) {
            if outcome.verdict == AS_AUTO {
                let forced = event_families(report, &outcome.object);
                let chose = auto.and_then(|a| event_families(a, &outcome.object));
                if forced.is_none() || chose != forced {
                    outcome.verdict = "failed".into();
                    outcome.detail = format!(
                        "sat the {mode} pass out as the auto pass would attach the same families ({forced:?}), but auto attached {chose:?}"
                    );
                }
            }
            outcomes.push(outcome);
        }
    }
    outcomes
}

/// Judges one loader report (one `--attach` mode) against what each collector is expected to do.
pub fn judge(report: &LoaderReport, guest: &Guest) -> Vec<ObjectOutcome> {
    let Guest {
        collectors,
        counters,
        accounting,
        kernel,
        arch,
        absent_modules,
    } = *guest;
    let lacks = families_lacking(arch, kernel);
    let mode = report.attach;
    report
        .objects
        .iter()
        .filter(|o| !not_applicable(o, mode))
        .map(|o| {
            let object = o.object.clone();
            let (collector, kind) = collector_of(&object);
            if o.status == ObjectStatus::AsAuto {
                // Checked against the auto pass by `judge_passes`.
                return ObjectOutcome {
                    object,
                    collector,
                    kind,
                    attach: mode.to_string(),
                    verdict: AS_AUTO.into(),
                    detail: String::new(),
                    counted: 0,
                };
            }
            let entry_mode = matches!(
                kc_verify::ObjectKind::from_file_name(&object),
                kc_verify::ObjectKind::Legacy { mode: 'p', .. }
            );
            let run = super::expect::Run {
                workload_pid: report.workload(),
                entry_mode,
                absent_modules,
            };
            let mut wrong_counts = super::expect::judge(counters, &collector, o, &run);
            wrong_counts.extend(super::streams::judge(
                o,
                run.workload_pid,
                super::expect::workload_children(counters),
            ));
            if collector == "connections" {
                wrong_counts.extend(super::flows::judge(o, run.workload_pid, kind == "co-re"));
            }
            if collector == "dns" {
                wrong_counts.extend(super::dns_servers::judge(o, run.entry_mode));
            }
            wrong_counts.extend(
                crate::accounting::judge(accounting, &collector, o, report)
                    .wrong
                    .into_iter()
                    .map(|w| format!("against the kernel: {w}")),
            );
            let counted: u64 = o.counters.iter().flat_map(|c| c.values().flatten()).sum();
            let c = collectors.iter().find(|c| c.name == collector);
            let (observed, missing) = unobserved(o);
            let wrong: Vec<String> = missing
                .iter()
                .filter(|m| !m.cannot_exist_without(&lacks))
                .map(Unobserved::line)
                .collect();
            let skipped: Vec<String> = missing
                .iter()
                .filter(|m| m.cannot_exist_without(&lacks))
                .map(Unobserved::line)
                .collect();
            let (verdict, detail) = if let Some(reason) = c.and_then(|c| c.unsupported_on(kernel)) {
                (format!("skipped: {reason}"), String::new())
            } else if o.status == ObjectStatus::Failed {
                let detail = format!(
                    "{} {} {}",
                    o.error,
                    o.failed_programs().join("; "),
                    log_tail(o)
                );
                ("failed".into(), detail)
            } else if !wrong.is_empty() {
                let events: Vec<&str> = wrong.iter().map(|s| s.as_str()).collect();
                (
                    "failed".into(),
                    format!(
                        "events not observed though they could be: {}",
                        events.join(", ")
                    ),
                )
            } else if observed == 0 && !skipped.is_empty() {
                let events: Vec<&str> = skipped.iter().map(|s| s.as_str()).collect();
                (
                    format!(
                        "skipped: no event can be observed so: {}",
                        events.join(", ")
                    ),
                    String::new(),
                )
            } else if !wrong_counts.is_empty() {
                (
                    "failed".into(),
                    format!("wrong counts: {}", wrong_counts.join("; ")),
                )
            } else {
                ("ok".into(), String::new())
            };
            ObjectOutcome {
                object,
                collector,
                kind,
                attach: mode.to_string(),
                verdict,
                detail,
                counted,
            }
        })
        .collect()
}

/// The loader's reports in a guest's console, and those that are not reports.
#[derive(Debug, Default)]
pub struct Passes {
    pub reports: Vec<LoaderReport>,
    /// Each document that is not a `kc_common::report::LoaderReport`: the C loader printed a
    /// field the type lacks, or lacks one the type has ("--attach MODE: why").
    pub malformed: Vec<String>,
}

/// Who printed a block of reports in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// kc-loader, on the objects kc-select chose.
    Loader,
    /// kc-agent (the Rust consumer), on the release's CO-RE objects.
    Agent,
}

impl Reporter {
    /// Its block's label after the markers.
    const fn label(self) -> &'static str {
        match self {
            Reporter::Loader => "passes",
            Reporter::Agent => "agent",
        }
    }
}

/// The reports between `who`'s markers in the console output: one JSON document per
/// pass (`--attach trampoline,probe,tracepoint,auto`), each naming its mode in `attach`. The
/// console carries other lines between them (the workload's own warnings on stderr, kernel
/// messages): each document starts on a line of its own, and a document cut short is left out.
pub fn extract_reports(console: &str, who: Reporter) -> Passes {
    let mut passes = Passes::default();
    for doc in between(console, BEGIN, END)
        .into_iter()
        .filter(|(label, _)| label.trim() == who.label())
        .flat_map(|(_, body)| documents(body))
    {
        let mode = doc["attach"].as_str().unwrap_or("?").to_string();
        let invalid = crate::schema::problems(&doc);
        match serde_json::from_value::<LoaderReport>(doc) {
            Ok(report) if invalid.is_empty() => passes.reports.push(report),
            Ok(_) => passes.malformed.push(format!(
                "--attach {mode}: the report is not valid against {}: {}",
                crate::schema::FILE,
                invalid.join("; ")
            )),
            Err(e) => passes.malformed.push(format!(
                "--attach {mode}: the report does not match kc_common::report::LoaderReport: {e}"
            )),
        }
    }
    passes
}

/// The JSON documents in `text` that start at the beginning of a line, in order.
fn documents(text: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let line_end = text[at..].find('\n').map_or(text.len(), |n| at + n + 1);
        if text[at..].trim_start_matches([' ', '\r']).starts_with('{') {
            let mut stream =
                serde_json::Deserializer::from_str(&text[at..]).into_iter::<serde_json::Value>();
            if let Some(Ok(doc)) = stream.next() {
                out.push(doc);
                at += stream.byte_offset();
                continue;
            }
        }
        at = line_end;
    }
    out
}

/// An object run in a forced family it has no program of at all (a legacy object has no
/// trampolines): not a run of that object, and not judged.
fn not_applicable(o: &ObjectReport, mode: AttachMode) -> bool {
    let AttachMode::Only(family) = mode else {
        return false;
    };
    !o.events.is_empty()
        && o.events.iter().all(|e| {
            e.passed_over
                .get(&family)
                .and_then(|p| p.kind.passed_over())
                == Some(PassedOver::NoProgram)
        })
}

/// The last `n` lines of a guest's console that say something (a guest that never reported:
/// where it died, for the reader of a CI log that is gone with its runner).
pub fn console_tail(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = console
        .lines()
        .map(|l| l.trim_end_matches('\r').trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().filter(|c| !c.is_control()).collect())
        .collect()
}

/// What kc-loader and kc-agent left in the guest's `kprobe_events` after they exited (the
/// guest prints the file between `probe-events` markers): each line a probe one of them made
/// (its group says which) and did not remove.
pub fn leftover_probe_events(console: &str) -> Vec<String> {
    between(console, BEGIN, END)
        .into_iter()
        .filter(|(label, _)| label.trim() == "probe-events")
        .flat_map(|(_, body)| body.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| format!("left in kprobe_events after the consumers exited: {line}"))
        .collect()
}

/// Each (label, body) that the guest printed as `begin label\nbody end`, in order; a block
/// cut off by the end of the console is left out.
pub(super) fn between<'a>(console: &'a str, begin: &str, end: &str) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    let mut rest = console;
    while let Some(at) = rest.find(begin) {
        let after = &rest[at + begin.len()..];
        let Some(stop) = after.find(end) else { break };
        out.push(
            after[..stop]
                .split_once('\n')
                .unwrap_or(("", &after[..stop])),
        );
        rest = &after[stop + end.len()..];
    }
    out
}

/// One character per attach mode (trampoline, probe, tracepoint, auto) for a table cell.
fn mode_char(mine: &[&ObjectOutcome], mode: AttachMode) -> char {
    let runs: Vec<&&ObjectOutcome> = mine.iter().filter(|o| o.attach == mode.as_str()).collect();
    if runs.is_empty() {
        '.'
    } else if runs.iter().any(|o| o.verdict == "failed") {
        'F'
    } else if runs.iter().all(|o| o.verdict == AS_AUTO) {
        '='
    } else if runs.iter().all(|o| o.verdict.starts_with("skipped")) {
        's'
    } else {
        'o'
    }
}

/// The kernel x collector table, one cell per (kernel, collector): a character per mode.
pub fn table(results: &[KernelOutcome], collectors: &[Collector]) -> String {
    let mut out = String::new();
    let mut header = format!("{:<10}", "collector");
    for r in results {
        header.push_str(&format!(" {:>7}", r.series));
    }
    for kind in ["co-re", "legacy", AGENT_KIND] {
        if !results
            .iter()
            .any(|r| r.objects.iter().any(|o| o.kind == kind))
        {
            continue;
        }
        out.push_str(&format!(
            "\n{kind} objects, one character per --attach mode (trampoline, probe, tracepoint, auto): \
             o = loaded, attached what this kernel has, counted what counters.toml says; \
             s = skipped (declared unsupported, or no event has that family here); \
             = = the same programs as auto's pass, counted there; F = failed; . = not run\n{header}\n"
        ));
        for c in collectors {
            let mut line = format!("{:<10}", c.name);
            for r in results {
                let mine: Vec<&ObjectOutcome> = r
                    .objects
                    .iter()
                    .filter(|o| o.collector == c.name && o.kind == kind)
                    .collect();
                let cell: String = AttachMode::ALL
                    .iter()
                    .map(|&m| mode_char(&mine, m))
                    .collect();
                line.push_str(&format!(" {cell:>7}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors;
    use crate::report_fixtures::{object, report};
    use serde_json::json;

    static NO_ABSENT_MODULES: std::collections::BTreeMap<String, String> =
        std::collections::BTreeMap::new();
    /// The repository's table: the made-up reports here carry no kernel figures, so it judges
    /// nothing in them, but it knows every counter they name.
    fn accounting() -> &'static crate::accounting::Table {
        static TABLE: std::sync::OnceLock<crate::accounting::Table> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| crate::accounting::load(&crate::paths::project_root()).unwrap())
    }

    fn guest<'a>(
        collectors: &'a [Collector],
        counters: &'a crate::vmtest::expect::Table,
        kernel: &'a KernelVersion,
        arch: Arch,
    ) -> Guest<'a> {
        Guest {
            collectors,
            counters,
            accounting: accounting(),
            kernel,
            arch,
            absent_modules: &NO_ABSENT_MODULES,
        }
    }

    fn collectors() -> Vec<Collector> {
        collectors::parse(
            "[[collector]]\nname = \"vfs\"\ndescription = \"d\"\nmin_kernel = \"5.10\"\n\
             [[collector]]\nname = \"swap\"\ndescription = \"d\"\nmin_kernel = \"5.10\"\n\
             [[collector]]\nname = \"new\"\ndescription = \"d\"\nmin_kernel = \"6.12\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_silent_guest_shows_the_last_lines_it_printed() {
        let console =
            "early\r\n\n[    2.1] Kernel panic - not syncing: VFS\r\n\x1b[0m---[ end ]---\r\n\n";
        assert_eq!(
            console_tail(console, 2),
            [
                "[    2.1] Kernel panic - not syncing: VFS",
                "[0m---[ end ]---"
            ]
        );
        assert_eq!(console_tail(console, 10).len(), 3);
        assert!(console_tail("", 5).is_empty());
    }

    #[test]
    fn a_probe_left_in_kprobe_events_is_named() {
        let clean = "KC-VMTEST-BEGIN probe-events\n\nKC-VMTEST-END probe-events\n";
        assert!(leftover_probe_events(clean).is_empty());
        let leaked = "KC-VMTEST-BEGIN passes\n{}\nKC-VMTEST-END passes status=0\n\
                      KC-VMTEST-BEGIN probe-events\nr64:kc_loader/kc_81_0 handle_mm_fault\n\n\
                      KC-VMTEST-END probe-events\n";
        assert_eq!(
            leftover_probe_events(leaked),
            ["left in kprobe_events after the consumers exited: r64:kc_loader/kc_81_0 handle_mm_fault"]
        );
    }

    /// A pass's report as the loader prints it, on a line of its own.
    fn printed(mode: &str) -> String {
        serde_json::to_string(&report(json!({"attach": mode}))).unwrap()
    }

    #[test]
    fn each_pass_is_a_report_of_its_mode() {
        let (probe, auto, tracepoint) = (printed("probe"), printed("auto"), printed("tracepoint"));
        let console = format!(
            "noise\nKC-VMTEST-BEGIN passes\n{probe}\n{auto}\n{tracepoint}\nKC-VMTEST-END passes status=0\n"
        );
        let passes = extract_reports(&console, Reporter::Loader);
        let modes: Vec<String> = passes
            .reports
            .iter()
            .map(|r| r.attach.to_string())
            .collect();
        assert_eq!(modes, ["probe", "auto", "tracepoint"]);
        assert!(passes.malformed.is_empty());
        // kc-agent's block is its own: neither is read as the other's.
        let both =
            format!("{console}KC-VMTEST-BEGIN agent\n{auto}\nKC-VMTEST-END agent status=0\n");
        assert_eq!(extract_reports(&both, Reporter::Loader).reports.len(), 3);
        let agent = extract_reports(&both, Reporter::Agent).reports;
        assert_eq!(agent.len(), 1);
        assert_eq!(agent[0].attach, AttachMode::Auto);
        // The workload's warnings land between documents on the console.
        let trampoline = printed("trampoline");
        let noisy = format!(
            "KC-VMTEST-BEGIN passes\n{trampoline}\nkc-vmtest: page-out left 516 of 1024 pages {{resident}}\r\n\
             {probe}\n[   12.5] a kernel message\n{auto}\nKC-VMTEST-END passes status=0"
        );
        let modes: Vec<String> = extract_reports(&noisy, Reporter::Loader)
            .reports
            .iter()
            .map(|r| r.attach.to_string())
            .collect();
        assert_eq!(modes, ["trampoline", "probe", "auto"]);
        // A guest that died in its second pass: the first is judged, the rest is missing.
        let cut = format!(
            "KC-VMTEST-BEGIN passes\n{trampoline}\n{}\nKC-VMTEST-END passes status=139",
            &probe[..probe.len() / 2]
        );
        let passes = extract_reports(&cut, Reporter::Loader);
        assert_eq!((passes.reports.len(), passes.malformed.len()), (1, 0));
        assert!(extract_reports("nothing", Reporter::Loader)
            .reports
            .is_empty());
    }

    #[test]
    fn a_report_the_type_does_not_describe_is_malformed() {
        let console = "KC-VMTEST-BEGIN passes\n{\"kernel\": \"6.1.1\", \"attach\": \"auto\", \"objects\": []}\n\
                       {\"attach\": \"sideways\"}\nKC-VMTEST-END passes status=0";
        let passes = extract_reports(console, Reporter::Loader);
        assert!(passes.reports.is_empty());
        let lines = passes.malformed;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("--attach auto: the report does not match"),
            "{lines:?}"
        );
        assert!(lines[0].contains("missing field"), "{lines:?}");
        assert!(lines[1].starts_with("--attach sideways: "), "{lines:?}");
    }

    #[test]
    fn an_object_without_programs_of_the_forced_family_is_not_judged_in_its_pass() {
        let legacy = object(
            json!({"object": "pkc_vfs.6.1.o", "status": "partial", "events": [
            {"event": "kc_vfs_read", "family": null, "passed_over": {"trampoline": {"kind": "no-program", "why": ""}}}]}),
        );
        let trampoline = AttachMode::Only(AttachFamily::Trampoline);
        assert!(not_applicable(&legacy, trampoline));
        assert!(!not_applicable(&legacy, AttachMode::Auto));
        assert!(!not_applicable(
            &legacy,
            AttachMode::Only(AttachFamily::Probe)
        ));
        // A failed object reports no events: judged (and failed), never dropped.
        let failed = object(json!({"object": "vfs.bpf.o", "status": "failed", "events": []}));
        assert!(!not_applicable(&failed, trampoline));
    }

    fn event(name: &str, family: Option<&str>, kind: &str) -> serde_json::Value {
        json!({"event": name, "family": family, "passed_over": {"probe": {"kind": kind, "why": "because"}}})
    }

    #[test]
    fn verdicts() {
        let report = report(json!({"workload_pid": 7, "objects": [
            {"object": "vfs.bpf.o", "status": "ok", "counters": {"read": 12}, "per_process": [{"tgid": 7, "counters": {"read": 12}}], "programs": [], "events": [event("kc_vfs_read", Some("probe"), "costlier")]},
            {"object": "rkc_vfs.6.1.o", "status": "ok", "counters": {"read": 0}, "programs": [], "events": [event("kc_vfs_read", Some("probe"), "costlier")]},
            {"object": "swap.bpf.o", "status": "ok", "counters": {"read": 0}, "programs": [], "events": [event("kc_swap_read", Some("probe"), "costlier")]},
            {"object": "new.bpf.o", "status": "failed", "error": "load", "log_tail": "", "programs": []},
            {"object": "pkc_vfs.6.1.o", "status": "failed", "error": "load: Invalid argument", "log_tail": "R1 invalid mem access", "programs": []},
            {"object": "vfs.bpf.o", "status": "partial", "counters": {"read": 12}, "per_process": [{"tgid": 7, "counters": {"read": 12}}], "programs": [], "events": [event("kc_vfs_read", Some("probe"), "used"), event("kc_vfs_write", None, "absent")]},
            {"object": "vfs.bpf.o", "status": "partial", "counters": {"read": 12}, "programs": [], "events": [event("kc_vfs_read", Some("probe"), "used"), event("b", None, "refused")]},
            {"object": "vfs.bpf.o", "status": "partial", "counters": {}, "programs": [], "events": [event("b", None, "no-program")]},
            {"object": "vfs.bpf.o", "status": "ok", "programs": [], "events": [event("kc_vfs_read", Some("probe"), "costlier")]}
        ]}));
        let counters: crate::vmtest::expect::Table =
            toml::from_str("[vfs]\nread = { row = 12 }\n[swap]\nread = { total = 0 }\n[new]\n")
                .unwrap();
        let (collectors, kernel) = (collectors(), KernelVersion::new(6, 1, 0));
        let v = judge(
            &report,
            &guest(&collectors, &counters, &kernel, Arch::Amd64),
        );
        assert_eq!(v[0].verdict, "ok");
        assert!(
            v[1].verdict == "failed"
                && v[1]
                    .detail
                    .contains("read: expected 12 in the workload's row, got 0"),
            "counted nothing: {:?}",
            v[1]
        );
        assert_eq!(v[2].verdict, "ok", "a counter expected to stay 0");
        assert!(
            v[3].verdict.starts_with("skipped: needs kernel 6.12"),
            "{}",
            v[3].verdict
        );
        assert!(v[4].verdict == "failed" && v[4].detail.contains("R1 invalid mem access"));
        assert_eq!(
            v[5].verdict, "ok",
            "an event whose target this kernel lacks is a declared skip"
        );
        assert!(
            v[6].verdict == "failed" && v[6].detail.contains("b (probe: because)"),
            "{:?}",
            v[6]
        );
        assert!(
            v[7].verdict.starts_with("skipped: no event"),
            "{}",
            v[7].verdict
        );
        assert!(
            v[8].verdict == "failed" && v[8].detail.contains("the report has no counters"),
            "{:?}",
            v[8]
        );
    }

    /// A trampoline the kernel refuses: expected on arm64 before 6.4 (no ftrace direct calls),
    /// a failure wherever the kernel has them.
    #[test]
    fn a_refused_trampoline_is_a_skip_only_where_the_kernel_has_none() {
        let refused = report(
            json!({"attach": "trampoline", "workload_pid": 7, "objects": [
                {"object": "vfs.bpf.o", "status": "partial", "counters": {}, "programs": [],
                 "events": [{"event": "kc_vfs_read", "family": null, "passed_over": {
                    "trampoline": {"kind": "refused", "why": "this kernel attaches no trampolines"}}}]}
            ]}),
        );
        let counters: crate::vmtest::expect::Table = toml::from_str("[vfs]\n").unwrap();
        let collectors = collectors();
        let verdict = |arch, kernel: KernelVersion| {
            judge(&refused, &guest(&collectors, &counters, &kernel, arch))[0]
                .verdict
                .clone()
        };
        let old = KernelVersion::new(5, 10, 0);
        let new = KernelVersion::new(6, 4, 0);
        assert!(verdict(Arch::Arm64, old).starts_with("skipped: no event"));
        assert_eq!(verdict(Arch::Arm64, new), "failed");
        assert_eq!(verdict(Arch::Amd64, old), "failed");
        assert_eq!(
            families_lacking(Arch::Arm64, &old),
            [AttachFamily::Trampoline]
        );
        assert!(families_lacking(Arch::Amd64, &old).is_empty());
    }

    /// An object that sat a forced pass out is proven by the auto pass only where auto used
    /// that family for every event.
    #[test]
    fn an_object_that_sat_a_pass_out_is_held_to_the_auto_pass() {
        let pass = |mode: &str, status: &str, family: &str| {
            report(json!({"attach": mode, "workload_pid": 7, "objects": [
                {"object": "pkc_vfs.6.1.o", "status": status, "counters": {"read": 12},
                 "per_process": [{"tgid": 7, "counters": {"read": 12}}], "programs": [],
                 "events": [event("kc_vfs_read", Some(family), "costlier")]}]}))
        };
        let counters: crate::vmtest::expect::Table =
            toml::from_str("[vfs]\nread = { row = 12 }\n").unwrap();
        let probe = AttachMode::Only(AttachFamily::Probe);
        let (collectors, kernel) = (collectors(), KernelVersion::new(6, 1, 0));
        let guest = guest(&collectors, &counters, &kernel, Arch::Amd64);
        let verdicts = |reports: &[LoaderReport]| -> Vec<(String, String)> {
            judge_passes(reports, &guest)
                .into_iter()
                .map(|o| (o.attach, o.verdict))
                .collect()
        };
        let same = [
            pass("probe", "as-auto", "probe"),
            pass("auto", "ok", "probe"),
        ];
        assert_eq!(
            verdicts(&same),
            [
                ("probe".into(), "as-auto".into()),
                ("auto".into(), "ok".into())
            ]
        );
        assert_eq!(mode_char(&[&judge_passes(&same, &guest)[0]], probe), '=');
        let differed = [
            pass("probe", "as-auto", "probe"),
            pass("auto", "ok", "tracepoint"),
        ];
        assert_eq!(verdicts(&differed)[0].1, "failed");
        let no_auto = [pass("probe", "as-auto", "probe")];
        assert_eq!(verdicts(&no_auto)[0].1, "failed");
    }
}
