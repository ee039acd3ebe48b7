//! The verifier's cost of every program on every kernel, held to a baseline kept in the
//! repository (`verifier-baseline.json`), as the kernel's BPF CI holds its selftests with
//! veristat. kc-loader reports each loaded program's `BPF_LOG_STATS` lines; a program whose
//! processed instructions or states grew more than 10 % over the baseline, or that comes
//! within 20 % of the kernel's complexity limit, fails the kernel's check with both figures.
//! `vmtest --update-baseline` records this run's figures on purpose.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use kc_common::report::{LoaderReport, ProgramState, VerifierStats};
use kc_common::Arch;
use serde::Deserialize;

use super::KernelOutcome;
use crate::atomic;

/// The baseline's file, at the project's root.
pub const BASELINE: &str = "verifier-baseline.json";
/// How much a program's processed instructions or states may grow over the baseline.
const GROWTH: f64 = 0.10;
/// The share of the kernel's complexity limit a program may reach.
const NEAR_LIMIT: f64 = 0.80;

/// What the verifier reported of each program (`object/program`) on one kernel.
pub type Costs = BTreeMap<String, VerifierStats>;

/// Each loaded program's statistics over every pass (the verifier is deterministic: every
/// pass that loads a program reports the same figures; the first is kept).
pub fn costs(reports: &[LoaderReport]) -> Costs {
    let mut out = Costs::new();
    for o in reports.iter().flat_map(|r| &r.objects) {
        for p in &o.programs {
            if let Some(v) = p.verifier {
                out.entry(format!("{}/{}", o.object, p.name)).or_insert(v);
            }
        }
    }
    out
}

/// Programs kc-loader attached (so loaded) without reporting the verifier's figures: its
/// parser (`co-re/loader/kc_verifier.c`) did not read this kernel's log, and the baseline
/// would hold nothing to account there.
pub fn unreported(reports: &[LoaderReport]) -> Vec<String> {
    let costs = costs(reports);
    let mut missing: Vec<String> = reports
        .iter()
        .flat_map(|r| &r.objects)
        .flat_map(|o| o.programs.iter().map(move |p| (o, p)))
        .filter(|(_, p)| p.state == ProgramState::Attached)
        .map(|(o, p)| format!("{}/{}", o.object, p.name))
        .filter(|key| !costs.contains_key(key))
        .collect();
    missing.sort();
    missing.dedup();
    missing
        .into_iter()
        .map(|p| format!("verifier: {p} was attached, and kc-loader reported no verifier figures for it: read this kernel's statistics log (co-re/loader/kc_verifier.c)"))
        .collect()
}

/// Each object's load time (ms) in the `auto` pass, or in the first pass that loaded it.
pub fn load_ms(reports: &[LoaderReport]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let auto_first = reports
        .iter()
        .filter(|r| r.attach == kc_common::AttachMode::Auto)
        .chain(
            reports
                .iter()
                .filter(|r| r.attach != kc_common::AttachMode::Auto),
        );
    for o in auto_first.flat_map(|r| &r.objects) {
        out.entry(o.object.clone()).or_insert(o.ms.load);
    }
    out
}

/// The figures a baseline keeps of a program: what the verifier's limits bound. In the file,
/// `[insns, states]`: one line per program (some 12,000 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "(u32, u32)")]
pub struct Recorded {
    pub insns: u32,
    pub states: u32,
}

impl From<(u32, u32)> for Recorded {
    fn from((insns, states): (u32, u32)) -> Self {
        Self { insns, states }
    }
}

/// `"<arch> <series>"` → `object/program` → figures.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Baseline(BTreeMap<String, BTreeMap<String, Recorded>>);

fn kernel_key(arch: Arch, series: &str) -> String {
    format!("{arch} {series}")
}

impl Baseline {
    /// The repository's baseline; none yet is an empty one.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(BASELINE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a verifier baseline (rewrite it: `cargo xtask vmtest --update-baseline`)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records what the kernels of `results` reported (the other kernels are kept).
    pub fn record(&mut self, arch: Arch, results: &[KernelOutcome]) {
        for r in results.iter().filter(|r| !r.verifier.is_empty()) {
            self.record_kernel(&kernel_key(arch, &r.series), &r.verifier);
        }
    }

    /// Replaces the figures of every object `costs` holds on kernel `key`: a program such an
    /// object no longer has goes, and the objects a run did not load (`--collector`) keep theirs.
    fn record_kernel(&mut self, key: &str, costs: &Costs) {
        let object = |program: &str| {
            program
                .split_once('/')
                .map_or(program, |(o, _)| o)
                .to_string()
        };
        let loaded: std::collections::BTreeSet<String> = costs.keys().map(|p| object(p)).collect();
        let kernel = self.0.entry(key.to_string()).or_default();
        kernel.retain(|p, _| !loaded.contains(&object(p)));
        for (p, v) in costs {
            let figures = Recorded {
                insns: v.insns,
                states: v.states,
            };
            kernel.insert(p.clone(), figures);
        }
    }

    /// The file's text: JSON, a kernel per block and a program per line, in key order.
    fn render(&self) -> Result<String> {
        let mut out = String::from("{\n");
        for (k, (kernel, programs)) in self.0.iter().enumerate() {
            out += &format!("  {}: {{\n", serde_json::to_string(kernel)?);
            for (i, (program, r)) in programs.iter().enumerate() {
                let comma = if i + 1 < programs.len() { "," } else { "" };
                out += &format!(
                    "    {}: [{}, {}]{comma}\n",
                    serde_json::to_string(program)?,
                    r.insns,
                    r.states
                );
            }
            out += if k + 1 < self.0.len() {
                "  },\n"
            } else {
                "  }\n"
            };
        }
        out.push_str("}\n");
        Ok(out)
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let text = self.render()?;
        let path = root.join(BASELINE);
        atomic::write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// The failures of one kernel's programs, and how many have no baseline.
    pub fn judge(&self, arch: Arch, series: &str, costs: &Costs) -> (Vec<String>, usize) {
        let recorded = self.0.get(&kernel_key(arch, series));
        let mut failures = Vec::new();
        let mut unrecorded = 0;
        for (program, v) in costs {
            if v.limit > 0 && f64::from(v.insns) >= NEAR_LIMIT * f64::from(v.limit) {
                failures.push(format!(
                    "verifier: {program}: {} instructions processed, within {:.0} % of the kernel's limit of {}",
                    v.insns,
                    (1.0 - NEAR_LIMIT) * 100.0,
                    v.limit
                ));
            }
            let Some(base) = recorded.and_then(|k| k.get(program)) else {
                unrecorded += 1;
                continue;
            };
            for (what, now, then) in [
                ("instructions processed", v.insns, base.insns),
                ("states", v.states, base.states),
            ] {
                if f64::from(now) > (1.0 + GROWTH) * f64::from(then) {
                    failures.push(format!(
                        "verifier: {program}: {now} {what}, the baseline {then} ({:+.0} %, more than {:.0} %): `cargo xtask vmtest --update-baseline` if meant",
                        (f64::from(now) / f64::from(then).max(1.0) - 1.0) * 100.0,
                        GROWTH * 100.0
                    ));
                }
            }
        }
        (failures, unrecorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(insns: u32, states: u32, limit: u32) -> VerifierStats {
        VerifierStats {
            insns,
            limit,
            states,
            peak_states: states,
            max_states_per_insn: 1,
            usec: 100,
        }
    }

    fn baseline(programs: &[(&str, u32, u32)]) -> Baseline {
        let kernel = programs
            .iter()
            .map(|(p, insns, states)| {
                let r = Recorded {
                    insns: *insns,
                    states: *states,
                };
                (p.to_string(), r)
            })
            .collect();
        Baseline([(kernel_key(Arch::Amd64, "6.1"), kernel)].into())
    }

    #[test]
    fn growth_past_ten_percent_fails_with_both_figures() {
        let b = baseline(&[("vfs.bpf.o/kc_vfs_read", 1000, 50)]);
        let grown: Costs = [("vfs.bpf.o/kc_vfs_read".into(), stats(1101, 50, 1_000_000))].into();
        let (failures, unrecorded) = b.judge(Arch::Amd64, "6.1", &grown);
        assert_eq!(unrecorded, 0);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains(
                "vfs.bpf.o/kc_vfs_read: 1101 instructions processed, the baseline 1000 (+10 %"
            ),
            "{}",
            failures[0]
        );
        let within: Costs = [("vfs.bpf.o/kc_vfs_read".into(), stats(1100, 55, 1_000_000))].into();
        assert!(b.judge(Arch::Amd64, "6.1", &within).0.is_empty());
        let states: Costs = [("vfs.bpf.o/kc_vfs_read".into(), stats(900, 56, 1_000_000))].into();
        let (failures, _) = b.judge(Arch::Amd64, "6.1", &states);
        assert!(
            failures[0].contains("56 states, the baseline 50"),
            "{failures:?}"
        );
    }

    #[test]
    fn the_file_reads_back_what_was_written() {
        let b = baseline(&[("a.bpf.o/x", 10, 2), ("b.bpf.o/y", 7, 1)]);
        let text = b.render().unwrap();
        assert!(text.contains("    \"a.bpf.o/x\": [10, 2],\n"), "{text}");
        let again: Baseline = serde_json::from_str(&text).unwrap();
        assert_eq!(again.0, b.0);
        assert_eq!(Baseline::default().render().unwrap(), "{\n}\n");
    }

    #[test]
    fn near_the_limit_fails_even_without_a_baseline() {
        let b = Baseline::default();
        let near: Costs = [(
            "disk.bpf.o/kc_disk_issue".into(),
            stats(800_000, 9, 1_000_000),
        )]
        .into();
        let (failures, unrecorded) = b.judge(Arch::Arm64, "5.10", &near);
        assert_eq!(unrecorded, 1);
        assert!(
            failures[0].contains(
                "800000 instructions processed, within 20 % of the kernel's limit of 1000000"
            ),
            "{failures:?}"
        );
        let far: Costs = [(
            "disk.bpf.o/kc_disk_issue".into(),
            stats(799_999, 9, 1_000_000),
        )]
        .into();
        assert!(b.judge(Arch::Arm64, "5.10", &far).0.is_empty());
    }

    #[test]
    fn recording_some_objects_keeps_the_others_and_drops_their_gone_programs() {
        let mut b = baseline(&[
            ("dns.bpf.o/gone", 10, 1),
            ("dns.bpf.o/kept", 10, 1),
            ("vfs.bpf.o/read", 7, 1),
        ]);
        let costs: Costs = [
            ("dns.bpf.o/kept".to_string(), stats(20, 2, 0)),
            ("dns.bpf.o/new".to_string(), stats(30, 3, 0)),
        ]
        .into();
        b.record_kernel(&kernel_key(Arch::Amd64, "6.1"), &costs);
        let kernel = &b.0[&kernel_key(Arch::Amd64, "6.1")];
        let figures: Vec<(&str, u32)> = kernel.iter().map(|(p, r)| (p.as_str(), r.insns)).collect();
        assert_eq!(
            figures,
            [
                ("dns.bpf.o/kept", 20),
                ("dns.bpf.o/new", 30),
                ("vfs.bpf.o/read", 7)
            ]
        );
    }

    #[test]
    fn another_kernels_figures_are_not_this_ones_baseline() {
        let b = baseline(&[("vfs.bpf.o/kc_vfs_read", 10, 1)]);
        let c: Costs = [("vfs.bpf.o/kc_vfs_read".into(), stats(1000, 100, 1_000_000))].into();
        assert_eq!(b.judge(Arch::Amd64, "7.3", &c), (vec![], 1));
        assert_eq!(b.judge(Arch::Arm64, "6.1", &c), (vec![], 1));
    }

    #[test]
    fn the_loaders_statistics_are_collected_once_per_program() {
        let report = |mode: &str, insns: u32| -> LoaderReport {
            serde_json::from_value(serde_json::json!({
                "kernel": "6.1.0", "attach": mode, "workload_pid": 0, "stopped_by": null,
                "ms": {"attach": 0.0, "workload": 0.0, "detach": 0.0, "read": 0.0},
                "kernel_figures": {"workload": null, "inner": null, "outer": {}},
                "objects": [{
                    "object": "vfs.bpf.o", "attach": mode, "status": "ok", "error": "",
                    "events": [], "ms": {"choose": 0.0, "load": 12.5, "attach": 0.0},
                    "missed_runs": 0, "log_tail": "",
                    "programs": [
                        {"name": "a", "target": "t", "state": "attached", "detail": "",
                         "verifier": {"insns": insns, "limit": 1000000, "states": 3,
                                      "peak_states": 3, "max_states_per_insn": 1, "usec": 9}},
                        {"name": "b", "target": "t", "state": "skipped", "detail": ""}
                    ]
                }]
            }))
            .unwrap()
        };
        let c = costs(&[report("tracepoint", 7), report("auto", 7)]);
        assert!(unreported(&[report("auto", 7)]).is_empty());
        let mut blind = report("auto", 7);
        blind.objects[0].programs[0].verifier = None;
        let missing = unreported(&[blind]);
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].starts_with(
                "verifier: vfs.bpf.o/a was attached, and kc-loader reported no verifier figures"
            ),
            "{missing:?}"
        );
        assert_eq!(c.keys().collect::<Vec<_>>(), ["vfs.bpf.o/a"]);
        assert_eq!(c["vfs.bpf.o/a"].insns, 7);
        assert_eq!(load_ms(&[report("tracepoint", 7)])["vfs.bpf.o"], 12.5);
    }
}
