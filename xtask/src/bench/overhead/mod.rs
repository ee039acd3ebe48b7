//! `cargo xtask bench overhead`: the nanoseconds a collector adds to each event of a workload
//! that hits its main event, with no program (the baseline), with each attach family forced,
//! with `auto`, and with the collector's floor in each family (its programs on the same hooks,
//! empty: what any program there costs), side by side in each round; medians of the rounds.
//! On this host (the families its kernel attaches) and in a guest (every family; absolute
//! figures are inflated by emulation, the ratios are what carries over). It fails when auto
//! costs more than 1.2x the cheapest family beyond the noise; it reports each family's cost as
//! floor + ours, against the target of 1.5x the floor plus 40 ns for the per-application row.

mod floor;
mod guest;
mod host;
mod slowed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use kc_common::report::LoaderReport;
use kc_common::{Arch, AttachFamily, AttachMode, Bucket, CellId, PassedOver};
use serde::Serialize;

use crate::compile::toolchain::Toolchain;
use crate::{host as this_host, paths, vmtest};

#[derive(Debug, Args)]
pub struct OverheadBench {
    /// Rounds; each round runs every mode of every case once, and the medians are reported.
    /// Five is the fewest that gave the same verdict three runs in a row on a 2-core host
    /// (three did not: one run in three failed on noise)
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The guest's kernel series (default: the newest of the matrix)
    #[arg(long = "kernel", value_name = "SERIES")]
    pub kernel: Option<Bucket>,
    /// Measure on this host only
    #[arg(long)]
    pub no_guest: bool,
    /// Only these collectors' cases (repeatable; default: every case)
    #[arg(long = "collector", value_name = "NAME")]
    pub collectors: Vec<String>,
    /// A test of the bench itself: netdev built with an extra program that only the
    /// trampoline family attaches (a loop of map updates on each transmit), which auto takes
    /// where tp_btf loads; the run measures that case alone and must fail
    #[arg(long, conflicts_with = "collectors")]
    pub slowed_auto: bool,
    #[arg(long)]
    pub json: bool,
}

/// A collector's main event and the operation that hits it once per iteration.
#[derive(Debug)]
struct Case {
    collector: &'static str,
    event: &'static str,
    op: &'static str,
    /// Iterations on the host; a tenth of it in a guest.
    n: u64,
}

const CASES: &[Case] = &[
    Case {
        collector: "vfs",
        event: "kc_vfs_read",
        op: "read",
        n: 200_000,
    },
    Case {
        collector: "fd",
        event: "kc_fd_open",
        op: "open",
        n: 50_000,
    },
    Case {
        collector: "process",
        event: "kc_process_fork",
        op: "fork",
        n: 2_000,
    },
    Case {
        collector: "sync",
        event: "kc_sync_fsync",
        op: "fsync",
        n: 200_000,
    },
    Case {
        collector: "socket",
        event: "kc_socket_udp_send",
        op: "udp",
        n: 50_000,
    },
    Case {
        collector: "mount",
        event: "kc_mount_umount",
        op: "umount",
        n: 200_000,
    },
    Case {
        collector: "cachestat",
        event: "kc_cachestat_access",
        op: "pagecache",
        n: 200_000,
    },
    Case {
        collector: "shm",
        event: "kc_shm_shmctl",
        op: "shmctl",
        n: 200_000,
    },
    Case {
        collector: "signal",
        event: "kc_signal_generate",
        op: "signal",
        n: 200_000,
    },
    Case {
        collector: "pagefault",
        event: "kc_pagefault_fault",
        op: "fault",
        n: 100_000,
    },
    Case {
        collector: "pagefault",
        event: "kc_pagefault_exception",
        op: "fault",
        n: 100_000,
    },
    Case {
        collector: "dc",
        event: "kc_dc_reference",
        op: "stat",
        n: 200_000,
    },
    Case {
        collector: "filesystem",
        event: "kc_filesystem_ext4_read",
        op: "fsread",
        n: 200_000,
    },
    Case {
        collector: "schedlat",
        event: "kc_schedlat_switch",
        op: "wake",
        n: 20_000,
    },
    Case {
        collector: "netdev",
        event: "kc_netdev_xmit",
        op: "udp",
        n: 50_000,
    },
    // What every process's datagrams pay for dns: a send and a receive that are not DNS
    // (the destination's port read, a socket looked up and not found).
    Case {
        collector: "dns",
        event: "kc_dns_query",
        op: "udp",
        n: 50_000,
    },
    // And what every read of a file pays: its descriptor looked up at entry (write's too), an
    // array read at its return (dns_receiving).
    Case {
        collector: "dns",
        event: "kc_dns_response",
        op: "read",
        n: 200_000,
    },
    // And every process's exit: its row looked up in dns_processes (a process that asked DNS
    // then has its task read, in a CO-RE object, for whether it is the last thread).
    Case {
        collector: "dns",
        event: "kc_dns_exit",
        op: "fork",
        n: 2_000,
    },
    // What every TCP send and receive pays for connections (its row's counts read again), and
    // what opening and closing a connection does (its state changes, its close streamed).
    // Fewer operations than the others': a round trip takes ~10 µs here, a connection ~33.
    Case {
        collector: "connections",
        event: "kc_connections_io",
        op: "tcp",
        n: 20_000,
    },
    Case {
        collector: "connections",
        event: "kc_connections_state",
        op: "tcpconn",
        n: 3_000,
    },
    // A datagram sent and received on loopback: its UDP flow's row found and counted, each way.
    Case {
        collector: "connections",
        event: "kc_connections_udp",
        op: "udp",
        n: 50_000,
    },
];

/// Collectors no case covers, and why.
const UNCOVERED: &[(&str, &str)] = &[
    (
        "disk, hardirq, softirq",
        "their events come from devices, not from a loop a process can run alone",
    ),
    (
        "swap, oomkill",
        "an event costs a swap-out or a killed process: too slow to repeat thousands of times",
    ),
    (
        "mdflush",
        "an event is a flush of every member disk of an MD array: a device's cost, not a probe's",
    ),
];

/// The cases of `collectors` (every case when none is named), in the table's order.
fn select_cases(collectors: &[String]) -> Result<Vec<&'static Case>> {
    if let Some(unknown) = collectors
        .iter()
        .find(|n| !CASES.iter().any(|c| c.collector == n.as_str()))
    {
        let known: Vec<&str> = CASES.iter().map(|c| c.collector).collect();
        bail!(
            "bench overhead has no case for collector {unknown:?}; its cases: {}",
            known.join(", ")
        );
    }
    Ok(CASES
        .iter()
        .filter(|c| collectors.is_empty() || collectors.iter().any(|n| n == c.collector))
        .collect())
}

/// The CO-RE objects a run loads: the release's, save those a test build replaces, and each
/// case's floor.
struct Objects {
    cell: PathBuf,
    replaced: BTreeMap<&'static str, PathBuf>,
    floors: BTreeMap<&'static str, PathBuf>,
}

impl Objects {
    fn release() -> Self {
        Self {
            cell: paths::cell_dir(CellId::core(this_host::host_libc())),
            replaced: BTreeMap::new(),
            floors: BTreeMap::new(),
        }
    }

    fn of(&self, collector: &str) -> PathBuf {
        self.replaced
            .get(collector)
            .cloned()
            .unwrap_or_else(|| self.cell.join(format!("{collector}.bpf.o")))
    }

    /// Builds the floor of each case's collector (of the object the run loads) into `dir`.
    fn build_floors(&mut self, tc: &Toolchain, cases: &[&'static Case], dir: &Path) -> Result<()> {
        for c in cases {
            if !self.floors.contains_key(c.collector) {
                let floor = floor::build(tc, c.collector, &self.of(c.collector), dir)?;
                self.floors.insert(c.collector, floor);
            }
        }
        Ok(())
    }

    /// The object a run of `collector` loads (none for the operation alone).
    fn for_run(&self, collector: &str, run: Run) -> Option<PathBuf> {
        match run {
            Run::Alone => None,
            Run::Collector(_) => Some(self.of(collector)),
            Run::Floor(_) => self.floors.get(collector).cloned(),
        }
    }
}

/// What one run of a case measures: the operation alone (the baseline), under the collector in
/// an attach mode, or under the collector's floor forced into a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Alone,
    Collector(AttachMode),
    Floor(AttachFamily),
}

impl Run {
    /// Every run of a case, in the order the guest's init lists them (`bench` in
    /// kc-vmtest-init.c): the round orders index this list.
    fn all() -> Vec<Run> {
        std::iter::once(Run::Alone)
            .chain(AttachMode::ALL.map(Run::Collector))
            .chain(AttachFamily::ALL.map(Run::Floor))
            .collect()
    }

    /// Its name in results, reports and the guest's lines.
    fn name(self) -> &'static str {
        match self {
            Run::Alone => "none",
            Run::Collector(m) => m.as_str(),
            Run::Floor(AttachFamily::Trampoline) => "floor-trampoline",
            Run::Floor(AttachFamily::Probe) => "floor-probe",
            Run::Floor(AttachFamily::Tracepoint) => "floor-tracepoint",
        }
    }

    fn named(name: &str) -> Option<Run> {
        Run::all().into_iter().find(|r| r.name() == name)
    }

    /// `kc-loader --attach`'s argument for it.
    fn attach(self) -> Option<&'static str> {
        match self {
            Run::Alone => None,
            Run::Collector(m) => Some(m.as_str()),
            Run::Floor(f) => Some(f.as_str()),
        }
    }
}

/// The order of the modes in round `round`: a shuffle seeded by the round (splitmix64, then
/// Fisher-Yates; the guest's init draws the same). A run leaves the machine in a state the next
/// one pays for (page allocator, caches): in a fixed or rotated order each mode would nearly
/// always follow the same other, and that other's after-effects would count as its cost.
fn round_order(round: usize) -> Vec<Run> {
    let mut order = Run::all();
    let mut state = round as u64 + 1;
    for i in (1..order.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        order.swap(i, (z % (i as u64 + 1)) as usize);
    }
    order
}

#[derive(Debug, Default, Serialize)]
struct Measured {
    /// ns per iteration, by round.
    ns: BTreeMap<usize, f64>,
    /// The family the loader gave the case's event (None for the baseline, or when no family
    /// of this mode observes it here), and why not.
    family: Option<String>,
    why_not: String,
}

#[derive(Debug, Serialize)]
struct CaseReport {
    collector: String,
    event: String,
    op: String,
    base_ns: f64,
    /// Mode → median ns added per event, when the event was observed in that mode.
    added_ns: BTreeMap<String, Option<f64>>,
    auto_family: Option<String>,
    /// auto's added cost over the cheapest forced family's, where that family's is above the
    /// noise (a ratio to nothing says nothing).
    auto_vs_cheapest: Option<f64>,
    /// The cheapest forced family that observes the event, and its added ns.
    cheapest: Option<(String, f64)>,
    /// Per round, auto's added ns minus 1.2x the cheapest family's (both against that
    /// round's baseline: drift between rounds cancels): the median over the rounds.
    excess_ns: Option<f64>,
    /// The larger of two spreads: the median absolute deviation of the per-round excesses,
    /// and that of one run's figure from its mode's median, pooled over the baseline, auto
    /// and the cheapest family (five rounds' excesses can agree by chance; fifteen runs
    /// rarely do).
    noise_ns: f64,
    /// See [`auto_too_costly`]; for a case measured twice, in both measurements.
    auto_too_costly: bool,
    /// The first measurement's excess, when it looked too costly and the case was measured
    /// again (the figures above are the second's).
    first_excess_ns: Option<f64>,
    /// Family → the collector's cost there against the floor's.
    against_floor: BTreeMap<String, floor::AgainstFloor>,
}

/// Measures again (`measure`, later and longer) every case of `rows` that looked too costly,
/// and holds it too costly only when the second measurement agrees. This machine's noise
/// comes in bursts (a neighbour's load for a minute or two): one burst can make any of 28
/// cases look costly, and rarely returns for the same case minutes later; a real cost always
/// does.
fn confirmed(
    cases: &[&'static Case],
    mut rows: Vec<CaseReport>,
    measure: impl FnOnce(&[&'static Case]) -> Result<Vec<CaseReport>>,
) -> Result<Vec<CaseReport>> {
    let suspects: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].auto_too_costly)
        .collect();
    if suspects.is_empty() {
        return Ok(rows);
    }
    let again: Vec<&'static Case> = suspects.iter().map(|&i| cases[i]).collect();
    let names: Vec<&str> = again.iter().map(|c| c.collector).collect();
    eprintln!(
        "bench overhead: measuring {} again: auto looked too costly",
        names.join(", ")
    );
    for (i, mut second) in suspects.into_iter().zip(measure(&again)?) {
        second.first_excess_ns = rows[i].excess_ns;
        rows[i] = second;
    }
    Ok(rows)
}

/// Median absolute deviation of a sample.
fn mad(v: &[f64]) -> f64 {
    pooled_mad(&[&v.iter().copied().enumerate().collect()])
}

/// The family of `event` in a loader report, or why none.
fn event_family(report: &LoaderReport, event: &str) -> (Option<String>, String) {
    let events = report.objects.first().map_or(&[][..], |o| &o.events[..]);
    match events.iter().find(|e| e.event == event) {
        None => (None, format!("the report has no event {event}")),
        Some(e) => match e.family {
            Some(f) => (Some(f.to_string()), String::new()),
            None => {
                let why: Vec<String> = e
                    .passed_over
                    .iter()
                    .filter(|(_, p)| p.kind.passed_over() != Some(PassedOver::NotAsked))
                    .map(|(f, p)| format!("{f}: {}", p.why))
                    .collect();
                (None, why.join("; "))
            }
        },
    }
}

/// Per round where all three were measured: what auto adds beyond 1.2x what the cheapest
/// family adds (a family that adds less than nothing counts as free).
fn excess_by_round(
    base: &BTreeMap<usize, f64>,
    auto: &BTreeMap<usize, f64>,
    cheapest: &BTreeMap<usize, f64>,
) -> Vec<f64> {
    base.iter()
        .filter_map(|(round, b)| {
            let (a, c) = (auto.get(round)?, cheapest.get(round)?);
            Some((a - b) - 1.2 * (c - b).max(0.0))
        })
        .collect()
}

/// The run-to-run spread of several modes' figures: each run's distance from its mode's
/// median, and the median of those distances. A machine that drifts between rounds counts as
/// noise here, though the per-round excess cancels it: a verdict then needs a clearer excess.
fn pooled_mad(modes: &[&BTreeMap<usize, f64>]) -> f64 {
    let distances: Vec<f64> = modes
        .iter()
        .filter(|m| !m.is_empty())
        .flat_map(|m| {
            let center = super::median(m.values().copied().collect());
            m.values().map(move |v| (v - center).abs())
        })
        .collect();
    if distances.is_empty() {
        0.0
    } else {
        super::median(distances)
    }
}

/// How many times the noise an excess must be to fail the bench: each run judges 14 cases on
/// the host and in a guest, and a false failure in any fails it.
const NOISE_TIMES: f64 = 3.0;

/// Whether auto costs more than 1.2x the cheapest family beyond the noise: its median excess
/// over the rounds is above [`NOISE_TIMES`] `noise_ns`.
fn auto_too_costly(excess_ns: Option<f64>, noise_ns: f64) -> bool {
    excess_ns.is_some_and(|e| e > NOISE_TIMES * noise_ns)
}

/// The error line of a case whose auto costs too much.
fn too_costly_line(r: &CaseReport) -> String {
    let auto = r
        .added_ns
        .get("auto")
        .copied()
        .flatten()
        .unwrap_or(f64::NAN);
    let (family, cheapest) = r.cheapest.clone().unwrap_or(("?".into(), f64::NAN));
    format!(
        "{} {} ({}): auto +{auto:.0} ns ({}) vs {family} +{cheapest:.0} ns; auto exceeds 1.2x it by {:.0} ns per event (median of the rounds), noise ±{:.0} ns{}",
        r.collector,
        r.event,
        r.op,
        r.auto_family.as_deref().unwrap_or("no family"),
        r.excess_ns.unwrap_or(f64::NAN),
        r.noise_ns,
        r.first_excess_ns
            .map_or(String::new(), |e| format!(" (measured twice: first {e:+.0} ns)"))
    )
}

/// Each case's figures, by its position in the run's cases and the mode's name.
type Results = BTreeMap<(usize, &'static str), Measured>;

fn summarize(cases: &[&Case], results: &Results) -> Vec<CaseReport> {
    let empty = Measured::default();
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let of = |m: &'static str| results.get(&(i, m)).unwrap_or(&empty);
            let median = |m: &'static str| {
                let ns = &of(m).ns;
                (!ns.is_empty()).then(|| super::median(ns.values().copied().collect()))
            };
            let base = median("none").unwrap_or(f64::NAN);
            // What a run added per event, where it observed the case's event.
            let added_by = |r: Run| {
                of(r.name())
                    .family
                    .as_ref()
                    .and(median(r.name()))
                    .map(|v| v - base)
            };
            let mut added = BTreeMap::new();
            for m in AttachMode::ALL {
                added.insert(m.to_string(), added_by(Run::Collector(m)));
            }
            let mut against_floor = BTreeMap::new();
            for f in AttachFamily::ALL {
                let (ours, floor) = (Run::Collector(AttachMode::Only(f)), Run::Floor(f));
                let by_round = [&of("none").ns, &of(ours.name()).ns, &of(floor.name()).ns];
                let verdict = floor::against(by_round, added_by(ours), added_by(floor));
                against_floor.insert(f.to_string(), verdict);
            }
            let cheapest = kc_common::AttachFamily::ALL
                .iter()
                .filter_map(|f| Some((f.as_str(), added[f.as_str()]?)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let (excess_ns, noise_ns) = match (added["auto"], cheapest) {
                (Some(_), Some((f, _))) => {
                    let (base, auto, cheap) = (&of("none").ns, &of("auto").ns, &of(f).ns);
                    let excess = excess_by_round(base, auto, cheap);
                    let noise = mad(&excess).max(pooled_mad(&[base, auto, cheap]));
                    ((!excess.is_empty()).then(|| super::median(excess)), noise)
                }
                _ => (None, 0.0),
            };
            let auto_vs_cheapest = added["auto"]
                .zip(cheapest)
                .filter(|(_, (_, c))| *c > 2.0 * noise_ns)
                .map(|(a, (_, c))| a / c);
            CaseReport {
                collector: c.collector.into(),
                event: c.event.into(),
                op: c.op.into(),
                base_ns: base,
                auto_family: of("auto").family.clone(),
                auto_vs_cheapest,
                cheapest: cheapest.map(|(f, ns)| (f.to_string(), ns)),
                excess_ns,
                noise_ns,
                auto_too_costly: auto_too_costly(excess_ns, noise_ns),
                first_excess_ns: None,
                added_ns: added,
                against_floor,
            }
        })
        .collect()
}

fn print_table(title: &str, rows: &[CaseReport]) {
    println!(
        "\n{title}: ns added per event, median of the rounds (base: the operation with no program)"
    );
    println!(
        "{:<10} {:<23} {:<9} {:>7} {:>10} {:>7} {:>10} {:>7}  {:<10} {:>5} {:>13}",
        "collector",
        "event",
        "op",
        "base",
        "trampoline",
        "probe",
        "tracepoint",
        "auto",
        "auto uses",
        "ratio",
        "excess"
    );
    for r in rows {
        let cell = |m: &str| {
            r.added_ns
                .get(m)
                .copied()
                .flatten()
                .map_or("n/a".to_string(), |v| format!("{v:+.0}"))
        };
        println!(
            "{:<10} {:<23} {:<9} {:>7.0} {:>10} {:>7} {:>10} {:>7}  {:<10} {:>5} {:>13}",
            r.collector,
            r.event,
            r.op,
            r.base_ns,
            cell("trampoline"),
            cell("probe"),
            cell("tracepoint"),
            cell("auto"),
            r.auto_family.as_deref().unwrap_or("-"),
            r.auto_vs_cheapest.map_or("-".into(), |v| format!("{v:.2}")),
            r.excess_ns.map_or("-".into(), |e| format!(
                "{e:+.0} ±{:.0}{}",
                r.noise_ns,
                if r.auto_too_costly { "!" } else { "" }
            )),
        );
    }
    println!("(ratio: auto's added ns over the cheapest family's, where that is above the noise; excess: per round, auto's added ns minus 1.2x the cheapest family's, median ± the noise (the larger of the excesses' median absolute deviation and the modes' own run-to-run one), `!` when the median is beyond three times the noise; n/a: no program of that family observes the event on this kernel)");
    floor::print_table(title, rows);
}

pub fn run(o: OverheadBench) -> Result<()> {
    if !this_host::is_root() {
        bail!("bench overhead loads BPF programs: run it as root");
    }
    let rounds = o.rounds.max(1);
    let tc = Toolchain::detect()?;
    let bins = vmtest::static_binaries(&tc, Arch::Amd64)?;
    let release = paths::running_kernel_release()?;
    let mut objects = Objects::release();
    let scratch = tempfile::tempdir()?;
    let cases = if o.slowed_auto {
        let (collector, object) = slowed::build(&tc, scratch.path())?;
        objects.replaced.insert(collector, object);
        select_cases(&[collector.to_string()])?
    } else {
        select_cases(&o.collectors)?
    };
    objects.build_floors(&tc, &cases, scratch.path())?;
    // Suspects are measured again after everything else (the guest's minutes between the
    // host's two measurements), with twice the rounds: a burst of noise has passed by then.
    let host_first = host::run(&cases, &objects, rounds, &bins.workload)?;
    let guest_first = if o.no_guest {
        None
    } else {
        Some(guest::run(&cases, &objects, rounds, o.kernel, &bins)?)
    };
    let host_rows = confirmed(&cases, host_first, |again| {
        host::run(again, &objects, 2 * rounds, &bins.workload)
    })?;
    let guest = match guest_first {
        None => None,
        Some((kernel, rows)) => Some((
            kernel,
            confirmed(&cases, rows, |again| {
                Ok(guest::run(again, &objects, 2 * rounds, o.kernel, &bins)?.1)
            })?,
        )),
    };
    let guest_rows = guest.as_ref().map(|(_, rows)| &rows[..]);
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "rounds": rounds,
                "host": { "kernel": release, "cases": host_rows },
                "guest": guest.as_ref().map(|(k, rows)| serde_json::json!({ "kernel": k, "cases": rows })),
                "uncovered": UNCOVERED,
            }))?
        );
    } else {
        print_table(&format!("host kernel {release}"), &host_rows);
        if let Some((k, rows)) = &guest {
            print_table(&format!("guest kernel {k}"), rows);
        }
        for (which, why) in UNCOVERED {
            println!("not measured: {which}: {why}");
        }
        // The floor target is reported, not enforced: the hot paths are not all there yet.
        floor::print_over_target(&host_rows, guest_rows);
    }
    let over: Vec<String> = (host_rows.iter().map(|r| ("host", r)))
        .chain(
            guest
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|r| ("guest", r))),
        )
        .filter(|(_, r)| r.auto_too_costly)
        .map(|(at, r)| format!("{at}: {}", too_costly_line(r)))
        .collect();
    if !over.is_empty() {
        // What is over the floor's target goes with it: a failed run names all it found.
        let also = floor::over_target_everywhere(&host_rows, guest_rows);
        bail!(
            "auto costs more than 1.2x the cheapest family beyond the noise:\n{}{}",
            over.join("\n"),
            if also.is_empty() {
                String::new()
            } else {
                format!(
                    "\nalso over {}x the floor + {} ns (reported, not enforced):\n{}",
                    floor::FLOOR_TIMES,
                    floor::APPS_ROW_NS,
                    also.join("\n")
                )
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_round(v: &[f64]) -> BTreeMap<usize, f64> {
        v.iter().copied().enumerate().collect()
    }

    /// A case measured in every mode: the baseline, the families and auto, by round.
    fn results(rounds: &[(&'static str, &[f64])]) -> Results {
        rounds
            .iter()
            .map(|(mode, ns)| {
                let family = (*mode != "none").then(|| "tracepoint".to_string());
                let m = Measured {
                    ns: by_round(ns),
                    family,
                    why_not: String::new(),
                };
                ((0, *mode), m)
            })
            .collect()
    }

    fn fd_case() -> Vec<&'static Case> {
        select_cases(&["fd".into()]).unwrap()
    }

    #[test]
    fn auto_fails_only_past_one_point_two_beyond_the_noise() {
        // Auto adds 500 ns where tracepoint adds 200, round after round: it fails.
        let slow = results(&[
            ("none", &[1000.0, 1010.0, 990.0, 1005.0, 995.0]),
            ("tracepoint", &[1200.0, 1215.0, 1185.0, 1210.0, 1190.0]),
            ("auto", &[1500.0, 1505.0, 1495.0, 1512.0, 1490.0]),
        ]);
        let r = &summarize(&fd_case(), &slow)[0];
        assert!(r.auto_too_costly, "{r:?}");
        assert_eq!(r.cheapest.as_ref().unwrap().0, "tracepoint");
        // Within 1.2x (auto +230 vs tracepoint +200): fine, however quiet the run.
        let close = results(&[
            ("none", &[1000.0, 1000.0, 1000.0]),
            ("tracepoint", &[1200.0, 1200.0, 1200.0]),
            ("auto", &[1230.0, 1230.0, 1230.0]),
        ]);
        assert!(!summarize(&fd_case(), &close)[0].auto_too_costly);
        // Auto is far slower in one round of five, and as cheap in the others: noise.
        let one_bad_round = results(&[
            ("none", &[1000.0, 1000.0, 1000.0, 1000.0, 1000.0]),
            ("tracepoint", &[1200.0, 1200.0, 1200.0, 1200.0, 1200.0]),
            ("auto", &[1200.0, 2500.0, 1210.0, 1190.0, 1205.0]),
        ]);
        assert!(!summarize(&fd_case(), &one_bad_round)[0].auto_too_costly);
    }

    #[test]
    fn drift_between_rounds_cancels_out() {
        // The machine slows by 300 ns per round; in each round auto costs what tracepoint
        // does. Medians of each mode alone would scatter; the per-round excess does not.
        let drift: Vec<f64> = (0..5).map(|r| 300.0 * r as f64).collect();
        let plus = |x: f64| -> Vec<f64> { drift.iter().map(|d| d + x).collect() };
        let (none, tp, auto) = (plus(1000.0), plus(1200.0), plus(1210.0));
        let r = &summarize(
            &fd_case(),
            &results(&[("none", &none), ("tracepoint", &tp), ("auto", &auto)]),
        )[0];
        assert!(!r.auto_too_costly, "{r:?}");
        assert_eq!(r.excess_ns, Some(10.0 - 0.2 * 200.0));
        assert_eq!(r.noise_ns, 300.0, "the drift itself is noise");
    }

    #[test]
    fn a_family_that_adds_nothing_leaves_auto_only_the_noise() {
        let free = results(&[
            ("none", &[1000.0, 1000.0, 1000.0]),
            ("tracepoint", &[990.0, 995.0, 985.0]),
            ("auto", &[1060.0, 1050.0, 1055.0]),
        ]);
        let r = &summarize(&fd_case(), &free)[0];
        assert!(r.auto_too_costly, "{r:?}");
        assert_eq!(
            r.auto_vs_cheapest, None,
            "no ratio to a cost below the noise"
        );
    }

    #[test]
    fn the_failure_names_collector_event_and_figures() {
        let r = CaseReport {
            collector: "fd".into(),
            event: "kc_fd_open".into(),
            op: "open".into(),
            base_ns: 3339.0,
            added_ns: [("auto".to_string(), Some(572.0))].into(),
            auto_family: Some("tracepoint".into()),
            auto_vs_cheapest: Some(2.65),
            cheapest: Some(("tracepoint".into(), 216.0)),
            excess_ns: Some(312.8),
            noise_ns: 41.0,
            auto_too_costly: true,
            first_excess_ns: Some(290.4),
            against_floor: BTreeMap::new(),
        };
        assert_eq!(
            too_costly_line(&r),
            "fd kc_fd_open (open): auto +572 ns (tracepoint) vs tracepoint +216 ns; auto exceeds 1.2x it by 313 ns per event (median of the rounds), noise ±41 ns (measured twice: first +290 ns)"
        );
    }

    #[test]
    fn each_round_has_its_own_order_of_every_mode() {
        let orders: Vec<Vec<&str>> = (0..5)
            .map(|r| round_order(r).into_iter().map(Run::name).collect())
            .collect();
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                [
                    "auto",
                    "floor-probe",
                    "floor-tracepoint",
                    "floor-trampoline",
                    "none",
                    "probe",
                    "tracepoint",
                    "trampoline"
                ]
            );
        }
        // The guest's init (kc-vmtest-init.c) draws the same orders: these are what its
        // round_order gave, compiled alone, for its list of modes.
        assert_eq!(
            orders[0],
            [
                "auto",
                "tracepoint",
                "probe",
                "floor-tracepoint",
                "floor-trampoline",
                "floor-probe",
                "none",
                "trampoline"
            ]
        );
        assert_eq!(
            orders[2],
            [
                "floor-tracepoint",
                "none",
                "trampoline",
                "auto",
                "probe",
                "floor-probe",
                "tracepoint",
                "floor-trampoline"
            ]
        );
        // Auto does not follow the same mode in every round.
        let before_auto: std::collections::BTreeSet<Option<&str>> = orders
            .iter()
            .map(|o| {
                let at = o.iter().position(|m| *m == "auto").unwrap();
                at.checked_sub(1).map(|p| o[p])
            })
            .collect();
        assert!(before_auto.len() >= 3, "{orders:?}");
    }

    #[test]
    fn only_a_cost_measured_twice_fails() {
        let cases = select_cases(&["vfs".into(), "fd".into(), "sync".into()]).unwrap();
        let costly = results(&[
            ("none", &[1000.0, 1000.0, 1000.0]),
            ("tracepoint", &[1200.0, 1200.0, 1200.0]),
            ("auto", &[1500.0, 1500.0, 1500.0]),
        ]);
        let fine = results(&[
            ("none", &[1000.0, 1000.0, 1000.0]),
            ("tracepoint", &[1200.0, 1200.0, 1200.0]),
            ("auto", &[1200.0, 1200.0, 1200.0]),
        ]);
        let one = |r: &Results| summarize(&cases[..1], r).remove(0);
        // vfs and sync looked costly, fd did not; measured again, vfs is fine and sync is not.
        let first = vec![one(&costly), one(&fine), one(&costly)];
        let mut asked = Vec::new();
        let rows = confirmed(&cases, first, |again| {
            asked = again.iter().map(|c| c.collector).collect();
            Ok(vec![one(&fine), one(&costly)])
        })
        .unwrap();
        assert_eq!(
            asked,
            ["vfs", "sync"],
            "only the suspects are measured again"
        );
        let verdicts: Vec<bool> = rows.iter().map(|r| r.auto_too_costly).collect();
        assert_eq!(verdicts, [false, false, true]);
        assert_eq!(rows[2].first_excess_ns, Some(300.0 - 0.2 * 200.0));
        assert_eq!(rows[1].first_excess_ns, None, "fd was measured once");
    }

    #[test]
    fn cases_are_chosen_by_collector_and_unknown_names_refused() {
        assert_eq!(select_cases(&[]).unwrap().len(), CASES.len());
        let two = select_cases(&["netdev".into(), "vfs".into()]).unwrap();
        let names: Vec<&str> = two.iter().map(|c| c.collector).collect();
        assert_eq!(names, ["vfs", "netdev"], "in the table's order");
        let e = select_cases(&["nope".into()]).unwrap_err().to_string();
        assert!(
            e.contains("no case for collector \"nope\"") && e.contains("fd"),
            "{e}"
        );
    }
}
