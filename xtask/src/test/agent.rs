//! The consumers in other languages, the Rust `kc-agent` (aya and the attach plan) and the Go
//! example (`examples/go`: cilium/ebpf and the plan), each against kc-loader on this host, as
//! an agent runs them (`--attach auto`, every CO-RE object, one workload each): the same
//! family for every event, the same counters unobserved, and the workload's own figures equal
//! (within the runs either missed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use kc_common::report::{LoaderReport, ObjectReport};
use kc_common::CellId;
use xshell::cmd;

use super::host::{loader_report, needs_root};
use super::Verdict;
use crate::compile::cell;
use crate::paths::cell_dir;
use crate::{host, process};

/// The static kc-agent vmtest puts in its guests (built if need be, once for both), as a file
/// under `dir`.
pub(crate) fn agent_binary(dir: &Path) -> Result<PathBuf> {
    tool_binary(crate::compile::select_tool::Tool::Agent, dir)
}

/// The static kc-agent built as the shipped tools are, which the benches measure, as a file
/// under `dir`.
pub(crate) fn bench_agent_binary(dir: &Path) -> Result<PathBuf> {
    tool_binary(crate::compile::select_tool::Tool::BenchAgent, dir)
}

fn tool_binary(tool: crate::compile::select_tool::Tool, dir: &Path) -> Result<PathBuf> {
    let (bytes, _) = crate::compile::select_tool::build_tool(tool, kc_common::host::host_arch()?)?;
    let path = dir.join("kc-agent");
    crate::atomic::write_file(&path, &bytes, true)?;
    Ok(path)
}

/// A release directory as kc-install leaves it: the CO-RE cell's objects and their plan.
pub(crate) fn release_dir(cell: &Path, dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for name in cell::object_files(cell)? {
        let file = name
            .file_name()
            .context("an object without a name")?
            .to_string_lossy()
            .into_owned();
        files.push((file, std::fs::read(&name)?));
    }
    let plan = crate::verify::attach_plan(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))?;
    std::fs::write(
        dir.join(kc_common::plan::PLAN_FILE),
        serde_json::to_vec(&plan)?,
    )?;
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(files.into_iter().map(|(n, _)| n).collect())
}

pub fn rust_agent() -> Result<Verdict> {
    against_loader("kc-agent", |scratch, release, workload, work| {
        let agent = agent_binary(scratch)?;
        let sh = process::shell();
        streams_off_leaves_the_stream_out(
            "kc-agent",
            cmd!(
                sh,
                "{agent} --release {release} --object process.bpf.o --streams off -- /bin/true"
            ),
        )?;
        loader_report(cmd!(sh, "{agent} --release {release} -- {workload} {work}"))
    })
}

/// A consumer told not to stream (`--streams off`): the process collector's stream event
/// passes every family over, its counters are unobserved, the object is still ok (left out by
/// choice, not for want of the kernel) and the workload's row stays in the table.
fn streams_off_leaves_the_stream_out(who: &str, cmd: xshell::Cmd<'_>) -> Result<()> {
    let (report, status) = loader_report(cmd)?;
    let o = report
        .object("process.bpf.o")
        .context("no process object")?;
    ensure!(
        status.success() && o.status == kc_common::report::ObjectStatus::Ok,
        "{who} --streams off: {status}, {:?}: {}",
        o.status,
        o.error
    );
    let stream = o
        .events
        .iter()
        .find(|e| e.event == "kc_process_stream")
        .context("no kc_process_stream event in the report")?;
    ensure!(
        stream.family.is_none()
            && o.total("streamed").is_none()
            && o.streams.iter().flatten().all(|(_, s)| s.received == 0),
        "{who} --streams off still streams: {stream:?}, streamed {:?}",
        o.total("streamed")
    );
    let pid = report.workload().context("no workload pid")?;
    ensure!(
        o.per_process.iter().flatten().any(|r| r.tgid == Some(pid)),
        "{who} --streams off: the workload's row is not in the table"
    );
    Ok(())
}

/// The Go example (examples/go: cilium/ebpf and the attach plan), built with Debian's Go
/// packages, against kc-loader as `rust_agent` runs kc-agent.
pub fn go_agent() -> Result<Verdict> {
    against_loader("kc-go-consumer", |scratch, release, workload, work| {
        let consumer = scratch.join("kc-go-consumer");
        crate::go::build(&consumer)?;
        let sh = process::shell();
        refuses_bad_input(&consumer, scratch, release)?;
        streams_off_leaves_the_stream_out(
            "kc-go-consumer",
            cmd!(
                sh,
                "{consumer} -release {release} -streams off -- /bin/true"
            ),
        )?;
        let (report, status) = loader_report(cmd!(
            sh,
            "{consumer} -release {release} -- {workload} {work}"
        ))?;
        let attached: Vec<String> = report
            .objects
            .iter()
            .map(|o| {
                let n = o
                    .programs
                    .iter()
                    .filter(|p| p.state == kc_common::report::ProgramState::Attached)
                    .count();
                format!(
                    "{} {n} ({:.0} ms)",
                    o.object.trim_end_matches(".bpf.o"),
                    o.ms.choose + o.ms.load + o.ms.attach
                )
            })
            .collect();
        eprintln!(
            "e2e: kc-go-consumer, programs attached per object: {}",
            attached.join(", ")
        );
        Ok((report, status))
    })
}

/// The Go example refuses what it cannot use with what went wrong: no plan where it is told
/// to look, a plan that is not one, a grouping the plan does not know.
fn refuses_bad_input(consumer: &Path, scratch: &Path, release: &Path) -> Result<()> {
    let nowhere = scratch.join("nowhere");
    let garbled = scratch.join("garbled");
    std::fs::create_dir(&garbled)?;
    std::fs::write(garbled.join(kc_common::plan::PLAN_FILE), "{\"order\": [")?;
    let sh = process::shell();
    let cases = [
        (
            cmd!(sh, "{consumer} -release {nowhere} -- true"),
            "opening the attach plan",
        ),
        (
            cmd!(sh, "{consumer} -release {garbled} -- true"),
            "is not an attach plan",
        ),
        (
            cmd!(sh, "{consumer} -release {release} -group-by pid -- true"),
            "-group-by \"pid\"",
        ),
        (
            cmd!(sh, "{consumer} -release {release} -streams maybe -- true"),
            "-streams \"maybe\": use on or off",
        ),
    ];
    for (cmd, expected) in cases {
        let shown = cmd.to_string();
        let out = process::capture(cmd)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1) && stderr.contains(expected) && out.stdout.is_empty(),
            "{shown}: expected exit 1 saying {expected:?} and no report; got {} saying {stderr:?}",
            out.status
        );
    }
    Ok(())
}

/// Runs kc-loader, then `consumer` (given a scratch directory, the release directory, the
/// workload and its work directory), each `--attach auto` on every CO-RE object of the host's
/// cell around the same workload, and compares their reports.
fn against_loader(
    name: &str,
    consumer: impl FnOnce(
        &Path,
        &Path,
        &Path,
        &Path,
    ) -> Result<(LoaderReport, std::process::ExitStatus)>,
) -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let tc = crate::compile::toolchain::Toolchain::detect()?;
    let workload = crate::vmtest::static_binaries(&tc, kc_common::host::host_arch()?)?.accounting;
    let cell = cell_dir(CellId::core(host::host_libc()));
    let loader = cell.join(cell::LOADER);
    let scratch = tempfile::tempdir()?;
    let release = scratch.path().join("co-re");
    let (work_a, work_b) = (scratch.path().join("a"), scratch.path().join("b"));
    for d in [&release, &work_a, &work_b] {
        std::fs::create_dir(d)?;
    }
    let names = release_dir(&cell, &release)?;
    let objects: Vec<PathBuf> = names.iter().map(|n| release.join(n)).collect();
    let sh = process::shell();
    let (theirs, status) = loader_report(cmd!(
        sh,
        "{loader} --attach auto --json {objects...} -- {workload} {work_a}"
    ))?;
    ensure!(status.success(), "kc-loader failed ({status})");
    let (ours, status) = consumer(scratch.path(), &release, &workload, &work_b)?;
    ensure!(status.success(), "{name} failed ({status})");
    let (wrong, compared) = compare(name, &theirs, &ours);
    eprintln!(
        "e2e: {name} vs kc-loader, {} objects: choose+load+attach {:.0} ms vs {:.0} ms, {compared} workload figures compared",
        ours.objects.len(),
        setup_ms(&ours),
        setup_ms(&theirs)
    );
    ensure!(
        wrong.is_empty(),
        "{name} and kc-loader disagree:\n{}",
        wrong.join("\n")
    );
    ensure!(
        compared >= 5,
        "only {compared} workload figures were compared"
    );
    Ok(Verdict::Passed)
}

/// How far two reports' map memory may differ: from 6.1 the start-time hashes allocate as
/// they go, and the kernel counts each element they hold when read (72 bytes for a thread's
/// start time): calls in flight at detach, a few dozen. A consumer that preallocated them
/// would differ by their whole size (0.9 MiB each).
const IN_FLIGHT_SLACK: u64 = 128 * 128;

/// Whether two figures of the kernel's map memory agree (see [`IN_FLIGHT_SLACK`]).
fn memory_agrees(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.abs_diff(b) <= IN_FLIGHT_SLACK,
        (a, b) => a == b,
    }
}

/// A pass's time from start to every object attached.
pub(crate) fn setup_ms(r: &LoaderReport) -> f64 {
    // Per object, both tools count what they spent on it: kc-loader its load (once, before
    // the passes) and the pass's attach; kc-agent its maps and programs loaded and attached.
    r.objects
        .iter()
        .map(|o| o.ms.choose + o.ms.load + o.ms.attach)
        .sum::<f64>()
}

/// Collectors whose counts for the same workload differ from run to run: scheduling,
/// interrupts, the page and dentry caches' state, the disk's and network's timing.
const DEPENDS_ON_TIMING: &[&str] = &[
    "schedlat",
    "hardirq",
    "softirq",
    "cachestat",
    "dc",
    "disk",
    "pagefault",
    "netdev",
    "swap",
];

/// Where the two reports of the same objects disagree: status, each event's family, which
/// counters are unobserved, and the workload's own row (its syscalls: the same program makes
/// the same ones each run) beyond the runs either missed.
/// The flows (in the table or closed in a stream) that `object` says the workload of `report`
/// owned, as what two runs of it must agree on: its protocol, how it began, its state, its bytes
/// each way and its datagrams (ports differ from run to run, and segments with the timing of ACKs), sorted.
fn workload_flows(report: &LoaderReport, object: &ObjectReport) -> Vec<String> {
    let Some(pid) = report.workload() else {
        return Vec::new();
    };
    let mut flows: Vec<String> = object
        .closes()
        .map(|c| &c.flow)
        .chain(object.flows.iter().flatten())
        .filter(|f| f.owner.as_ref().map(|o| o.tgid) == Some(pid))
        .map(|f| {
            let bytes = f.counts.as_ref().map(|c| (c.bytes_sent, c.bytes_received));
            let datagrams = f.datagrams.as_ref().map(|d| (d.sent, d.received));
            format!(
                "{} {:?} {} bytes {bytes:?} datagrams {datagrams:?}",
                f.protocol, f.direction, f.state
            )
        })
        .collect();
    flows.sort();
    flows
}

/// The server-table row of the resolver the workload asks (127.0.0.1: three questions, one
/// answered NOERROR, two left at an exit), as what two runs of it must agree on: every figure
/// and the latency's count.
fn workload_server(object: &ObjectReport) -> Option<String> {
    let row = object
        .dns_servers
        .iter()
        .flatten()
        .find(|s| s.server == std::net::Ipv4Addr::LOCALHOST)?;
    let timed = row.latency.as_ref().map(|l| l.iter().sum::<u64>());
    Some(format!(
        "queries {:?} responses {:?} timed {timed:?} timeouts {:?}",
        row.queries, row.responses, row.timeouts
    ))
}

fn compare(name: &str, loader: &LoaderReport, agent: &LoaderReport) -> (Vec<String>, usize) {
    let mut wrong = Vec::new();
    let mut compared = 0;
    let by_name = |r: &LoaderReport| -> BTreeMap<String, ObjectReport> {
        r.objects
            .iter()
            .map(|o| (o.object.clone(), o.clone()))
            .collect()
    };
    let (theirs, ours) = (by_name(loader), by_name(agent));
    for (object, t) in &theirs {
        let Some(o) = ours.get(object) else {
            wrong.push(format!("{object}: not in {name}'s report"));
            continue;
        };
        if t.status != o.status {
            wrong.push(format!(
                "{object}: kc-loader {:?}, {name} {:?}: {}",
                t.status, o.status, o.error
            ));
        }
        let families = |r: &ObjectReport| -> Vec<(String, Option<kc_common::AttachFamily>)> {
            r.events
                .iter()
                .map(|e| (e.event.clone(), e.family))
                .collect()
        };
        if families(t) != families(o) {
            wrong.push(format!(
                "{object}: families per event: kc-loader {:?}, {name} {:?}",
                families(t),
                families(o)
            ));
        }
        // The kernel's own figure of the same maps at the same sizes.
        if !memory_agrees(t.memory_bytes, o.memory_bytes) {
            wrong.push(format!(
                "{object}: map memory (the kernel's memlock): kc-loader {:?}, {name} {:?}",
                t.memory_bytes, o.memory_bytes
            ));
        }
        let nulls = |r: &ObjectReport| -> Vec<String> {
            r.counters
                .iter()
                .flatten()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect()
        };
        if nulls(t) != nulls(o) {
            wrong.push(format!(
                "{object}: unobserved: kc-loader {:?}, {name} {:?}",
                nulls(t),
                nulls(o)
            ));
        }
        let (flows_t, flows_o) = (workload_flows(loader, t), workload_flows(agent, o));
        compared += flows_t.len();
        if flows_t != flows_o {
            wrong.push(format!(
                "{object}: the workload's flows: kc-loader {flows_t:?}, {name} {flows_o:?}"
            ));
        }
        if t.server_table.is_some() {
            // The workload asked its resolver: both tables must hold it, alike.
            let (server_t, server_o) = (workload_server(t), workload_server(o));
            compared += 1;
            if server_t.is_none() || server_t != server_o {
                wrong.push(format!(
                    "{object}: the workload's DNS server: kc-loader {server_t:?}, {name} {server_o:?}"
                ));
            }
        }
        let collector = object.trim_end_matches(".bpf.o");
        let (Some(rt), Some(ro)) = (
            loader.workload().and_then(|p| t.row_of(p)),
            agent.workload().and_then(|p| o.row_of(p)),
        ) else {
            continue;
        };
        if DEPENDS_ON_TIMING.contains(&collector) {
            continue;
        }
        let missed = t.missed_runs + o.missed_runs;
        for (counter, a) in &rt.counters {
            let (Some(a), Some(b)) = (*a, ro.counters.get(counter).copied().flatten()) else {
                continue;
            };
            compared += 1;
            if a.abs_diff(b) > missed {
                wrong.push(format!(
                    "{collector}.{counter}: the workload's row: kc-loader {a}, {name} {b}"
                ));
            }
        }
    }
    (wrong, compared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::json;

    fn pass(family: &str, read: u64, write: Option<u64>) -> LoaderReport {
        report(json!({"workload_pid": 7, "objects": [
            {"object": "vfs.bpf.o", "status": "ok", "missed_runs": 1,
             "events": [{"event": "kc_vfs_read", "family": family}],
             "counters": {"read": read, "write": write},
             "per_process": [{"tgid": 7, "counters": {"read": read, "write": write}}]},
            {"object": "schedlat.bpf.o", "status": "ok", "counters": {"switch_in": read},
             "per_process": [{"tgid": 7, "counters": {"switch_in": read}}]}]}))
    }

    #[test]
    fn the_two_reports_must_agree() {
        let (wrong, compared) = compare(
            "kc-agent",
            &pass("probe", 10, Some(2)),
            &pass("probe", 11, Some(2)),
        );
        assert_eq!((wrong.len(), compared), (0, 2), "{wrong:?}");
        let (wrong, _) = compare(
            "kc-agent",
            &pass("probe", 10, Some(2)),
            &pass("tracepoint", 13, None),
        );
        assert_eq!(wrong.len(), 3, "{wrong:?}");
        assert!(
            wrong[0].starts_with("vfs.bpf.o: families per event"),
            "{wrong:?}"
        );
        assert_eq!(
            wrong[1],
            "vfs.bpf.o: unobserved: kc-loader [], kc-agent [\"write\"]"
        );
        assert_eq!(
            wrong[2],
            "vfs.read: the workload's row: kc-loader 10, kc-agent 13"
        );
        let mut missing = pass("probe", 10, Some(2));
        missing.objects.truncate(1);
        let (wrong, _) = compare("kc-agent", &pass("probe", 10, Some(2)), &missing);
        assert_eq!(wrong, ["schedlat.bpf.o: not in kc-agent's report"]);
    }

    fn dns_pass(queries: Option<u64>) -> LoaderReport {
        let rows = match queries {
            Some(q) => json!([{"server": "127.0.0.1", "family": "ipv4", "queries": q,
                "responses": null, "latency": null, "timeouts": null}]),
            None => json!([]),
        };
        report(json!({"workload_pid": 7, "objects": [
            {"object": "dns.bpf.o", "status": "ok", "dns_servers": rows,
             "server_table": {"map": "dns_servers", "table_size": 64, "rows": 1,
                              "insertions": null, "evicted": null}}]}))
    }

    #[test]
    fn the_workloads_dns_server_must_be_in_both_alike() {
        let (wrong, compared) = compare("kc-agent", &dns_pass(Some(1)), &dns_pass(Some(1)));
        assert_eq!((wrong.len(), compared), (0, 1), "{wrong:?}");
        let (wrong, _) = compare("kc-agent", &dns_pass(Some(1)), &dns_pass(Some(2)));
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(
            wrong[0].starts_with(
                "dns.bpf.o: the workload's DNS server: kc-loader Some(\"queries Some(1)"
            ),
            "{wrong:?}"
        );
        // Neither saw it: the workload asked, so that is a fault too.
        let (wrong, _) = compare("kc-agent", &dns_pass(None), &dns_pass(None));
        assert_eq!(wrong.len(), 1, "{wrong:?}");
    }

    #[test]
    fn the_kernels_memory_figure_must_agree() {
        let mut more = pass("probe", 10, Some(2));
        more.objects[0].memory_bytes = Some(1_200_000);
        let mut less = pass("probe", 10, Some(2));
        less.objects[0].memory_bytes = Some(300_000);
        let (wrong, _) = compare("kc-go-consumer", &more, &less);
        assert_eq!(
            wrong,
            ["vfs.bpf.o: map memory (the kernel's memlock): kc-loader Some(1200000), kc-go-consumer Some(300000)"]
        );
        // A start-time hash holding one more call in flight when read.
        less.objects[0].memory_bytes = Some(1_200_072);
        assert!(compare("kc-go-consumer", &more, &less).0.is_empty());
        less.objects[0].memory_bytes = None;
        assert_eq!(compare("kc-go-consumer", &more, &less).0.len(), 1);
    }
}
