//! The collectors on this host's kernel, as an agent runs them: every object attached by
//! `--attach auto`, and the per-application tables read through the shipped headers.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use kc_common::report::{GroupBy, LoaderReport, ObjectReport, ObjectStatus, StopSignal};
use kc_common::{AttachFamily, CellId};
use xshell::cmd;

use super::Verdict;
use crate::compile::cell;
use crate::paths::cell_dir;
use crate::{host, kernels, paths, process};

/// Runs the loader as an agent would on this host's kernel (`--attach auto`): every CO-RE
/// object the loader embeds and the legacy objects of the bucket the host selects must load
/// and attach, each event by the cheapest family this kernel takes; the only events left
/// unobserved are those no family can reach here (the kernel refuses trampolines and has no
/// kprobes, and no tracepoint fires on them), each reported with the reasons.
pub fn host_load() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let release = crate::paths::running_kernel_release()?;
    let bucket = host_bucket()?;
    let libc = host::host_libc();
    let loader = cell_dir(CellId::core(libc)).join(cell::LOADER);
    let legacy = cell::object_files(&cell_dir(CellId::bucket(bucket, libc)))?;
    let sh = process::shell();
    let objects = &legacy;
    let (report, status) = loader_report(cmd!(
        sh,
        "{loader} --attach auto --json --embedded {objects...} -- true"
    ))?;
    let objects = &report.objects;
    let mut failed = Vec::new();
    let mut families = std::collections::BTreeMap::<AttachFamily, usize>::new();
    let mut unobserved = std::collections::BTreeSet::new();
    for o in objects {
        let name = &o.object;
        if o.status == ObjectStatus::Failed {
            failed.push(format!("{name}: {:?} {}", o.error, o.log_tail));
        }
        let (observed, missing) = crate::vmtest::unobserved_events(o);
        // An object this kernel can observe nothing of (dc: kernel functions only, and neither
        // trampolines nor kprobes here) is reported below, event by event, with the reasons.
        if observed == 0 && missing.is_empty() {
            failed.push(format!("{name}: reports no event"));
        }
        for f in o.events.iter().filter_map(|e| e.family) {
            *families.entry(f).or_default() += 1;
        }
        for m in missing {
            // "refused" is this host's truth (no kprobes, trampolines refused); "failed" is ours.
            if m.has(kc_common::PassedOver::Failed) {
                failed.push(format!("{name}: {}", m.line()));
            } else {
                unobserved.insert(m.line());
            }
        }
    }
    eprintln!(
        "e2e: host kernel {release} (bucket {bucket}), --attach auto: {} objects attached, {} failed; events by family: {families:?}",
        objects.len() - failed.len(),
        failed.len()
    );
    for line in &unobserved {
        eprintln!("e2e:   no family observes {line}");
    }
    ensure!(
        failed.is_empty() && status.success(),
        "objects failed on the host kernel:\n{}",
        failed.join("\n")
    );
    let n_core = crate::collectors::load_from(&paths::project_root())?.len();
    ensure!(
        objects.len() == n_core + legacy.len(),
        "expected {n_core} CO-RE and {} legacy objects, got {}",
        legacy.len(),
        objects.len()
    );
    Ok(Verdict::Passed)
}

/// Every counter of every CO-RE object with each family forced in turn on this host's kernel
/// (one pass each): a number only where a family observed its event and is not blind to it,
/// else null with the reason, in the totals and in every row, as counters.toml's `unobserved`
/// says. This host refuses trampolines and has no kprobes, so those two passes observe nothing
/// and every counter must say so; the tracepoint pass sees no fault's result.
pub fn no_false_zeros() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let loader = cell_dir(CellId::core(host::host_libc())).join(cell::LOADER);
    let table = crate::vmtest::expect::load(&paths::project_root())?;
    let sh = process::shell();
    let out = process::output(cmd!(
        sh,
        "{loader} --attach trampoline,probe,tracepoint --json --embedded -- sh -c 'cat /proc/self/status >/dev/null'"
    ))?;
    let text = String::from_utf8_lossy(&out.stdout);
    crate::schema::validate_reports(&text)?;
    let reports = kc_common::report::parse_reports(&text)
        .context("kc-loader's report does not match kc_common::report::LoaderReport")?;
    let mut wrong = Vec::new();
    let mut passes = Vec::new();
    for pass in &reports {
        let (mut numbers, mut nulls) = (0, 0);
        for o in &pass.objects {
            let object = &o.object;
            let collector = object.trim_end_matches(".bpf.o");
            for line in crate::vmtest::expect::judge_observed(&table, collector, o, false) {
                wrong.push(format!("--attach {}: {object}: {line}", pass.attach));
            }
            for v in o.counters.iter().flat_map(|c| c.values()) {
                match v {
                    Some(_) => numbers += 1,
                    None => nulls += 1,
                }
            }
        }
        passes.push(format!(
            "{}: {numbers} counted, {nulls} unobserved",
            pass.attach
        ));
    }
    eprintln!("e2e: every family forced: {}", passes.join("; "));
    ensure!(
        passes.len() == 3,
        "expected 3 passes (trampoline, probe, tracepoint), got {}",
        passes.len()
    );
    ensure!(
        wrong.is_empty(),
        "counters observed where nothing can observe them, or the other way round:\n{}",
        wrong.join("\n")
    );
    Ok(Verdict::Passed)
}

/// The collectors on this host against the kernel's own accounting, as an agent runs them
/// (`--attach auto`, every CO-RE object) with a workload of its own (not vmtest's): every
/// counter kernel-accounting.toml ties to a kernel figure agrees with it, and no counter is a
/// number where nothing observes it. Then a sabotaged vfs (co-re/tests/vfs-doubled.bpf.c:
/// every read(2) counted twice) must fail the judge, naming counter, ours and the kernel's.
pub fn kernel_accounting() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let root = paths::project_root();
    let tc = crate::compile::toolchain::Toolchain::detect()?;
    let arch = kc_common::host::host_arch()?;
    let workload = crate::vmtest::static_binaries(&tc, arch)?.accounting;
    let loader = cell_dir(CellId::core(host::host_libc())).join(cell::LOADER);
    let (table, counters) = (
        crate::accounting::load(&root)?,
        crate::vmtest::expect::load(&root)?,
    );
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let sh = process::shell();
    let (report, status) = loader_report(cmd!(
        sh,
        "{loader} --attach auto --json --embedded -- {workload} {dir}"
    ))?;
    ensure!(status.success(), "kc-loader failed ({status}) on the host");
    ensure!(
        report.kernel_figures.workload.is_some(),
        "the report has no kernel figures for its workload"
    );
    let mut compared = Vec::new();
    let mut wrong = Vec::new();
    for o in &report.objects {
        let collector = o.object.trim_end_matches(".bpf.o");
        let judged = crate::accounting::judge(&table, collector, o, &report);
        wrong.extend(judged.wrong.iter().map(|w| format!("{collector}: {w}")));
        wrong.extend(
            crate::vmtest::expect::judge_observed(&counters, collector, o, false)
                .into_iter()
                .map(|w| format!("{collector}: {w}")),
        );
        compared.extend(
            judged
                .compared
                .into_iter()
                .map(|c| (collector.to_string(), c)),
        );
    }
    for (collector, c) in &compared {
        let kernel = if c.kernel_low == c.kernel_high {
            c.kernel_low.to_string()
        } else {
            format!("{}..{}", c.kernel_low, c.kernel_high)
        };
        eprintln!(
            "e2e: {collector}.{}: ours {}, the kernel's {kernel}",
            c.counter, c.ours
        );
    }
    ensure!(
        wrong.is_empty(),
        "counters that disagree with the kernel's own accounting:\n{}",
        wrong.join("\n")
    );
    // vfs, fork, UDP and TCP, softirqs, switches and packets at least.
    ensure!(
        compared.len() >= 10,
        "only {} counters were compared with the kernel's figures: {compared:?}",
        compared.len()
    );
    let doubled = crate::compile::test_object::build(&tc, "co-re/tests/vfs-doubled.bpf.c", dir)?;
    let (report, _) = loader_report(cmd!(
        sh,
        "{loader} --attach tracepoint --json {doubled} -- {workload} {dir}"
    ))?;
    let object = report.objects.first().context("no object in the report")?;
    let judged = crate::accounting::judge(&table, "vfs", object, &report);
    ensure!(
        judged
            .wrong
            .iter()
            .any(|w| w.starts_with("read: ours ") && w.contains("io.syscr")),
        "a vfs that counts every read twice passed the kernel's judge: {:?}",
        judged.wrong
    );
    eprintln!(
        "e2e: {} counters agree with the kernel's; every read counted twice fails: {}",
        compared.len(),
        judged.wrong.join("; ")
    );
    Ok(Verdict::Passed)
}

/// The process collector on this host with a workload of 24 short-lived processes: with
/// `--table-size 4` its table never holds more than 4 rows though the programs inserted at
/// least 24; every row of an exited process is reported once and removed; `--group-by cgroup`
/// keys rows by cgroup id, `--group-by none` keeps no rows at all.
pub fn app_tables() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let cell = cell_dir(CellId::core(host::host_libc()));
    let (loader, object) = (cell.join(cell::LOADER), cell.join("process.bpf.o"));
    let sh = process::shell();
    // The table alone (--streams off): released processes' rows stay in it until read.
    let run_with = |group_by: GroupBy,
                    rows: &str,
                    streams: &str,
                    secs: &str|
     -> Result<(ObjectReport, u32)> {
        let group_by = group_by.as_str();
        let (report, status) = loader_report(cmd!(
            sh,
            "{loader} --json --group-by {group_by} --table-size {rows} --streams {streams} --run {secs} {object} -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24; do /bin/true; done'"
        ))?;
        let workload = report.workload_pid;
        let o = report
            .objects
            .into_iter()
            .next()
            .context("no object in the report")?;
        ensure!(
            status.success(),
            "kc-loader --group-by {group_by} --streams {streams} failed ({status}): {}",
            o.error
        );
        Ok((o, workload))
    };
    let run = |group_by: GroupBy| Ok::<_, anyhow::Error>(run_with(group_by, "4", "off", "0")?.0);
    let o = run(GroupBy::Process)?;
    ensure!(
        o.status == kc_common::report::ObjectStatus::Ok,
        "--streams off: the object is {:?} ({}), not ok: a stream left out by choice is no event the kernel cannot see",
        o.status,
        o.error
    );
    for counter in ["streamed", "stream_lost"] {
        ensure!(
            o.total(counter).is_none()
                && o.unobserved_because(counter)
                    .is_some_and(|why| why.contains("kc_process_stream")),
            "--streams off: {counter} is {:?} ({:?}), not unobserved for want of its event",
            o.total(counter),
            o.unobserved_because(counter)
        );
    }
    let rows = o.per_process.as_deref().context("no per_process rows")?;
    let apps = o.apps.as_ref().context("no apps table statistics")?;
    let exited = rows.iter().filter(|r| r.exited).count() as u64;
    ensure!(
        rows.len() <= 4 && apps.table_size == 4,
        "the table holds {} rows, past its size 4",
        rows.len()
    );
    ensure!(
        apps.insertions >= 24,
        "24 processes exec'd but the programs inserted {} rows",
        apps.insertions
    );
    ensure!(
        apps.evicted >= 20,
        "24 rows through a table of 4, yet only {} evictions reported",
        apps.evicted
    );
    ensure!(
        apps.removed_exited == exited,
        "{exited} rows of exited processes were reported but {} removed",
        apps.removed_exited
    );
    ensure!(
        o.total("exec").unwrap_or(0) >= 24,
        "the totals missed execs: {:?}",
        o.counters
    );
    let by_cgroup = run(GroupBy::Cgroup)?;
    let cgroups = by_cgroup
        .per_cgroup
        .as_deref()
        .context("no per_cgroup rows")?;
    ensure!(
        !cgroups.is_empty() && cgroups.iter().all(|r| r.cgroup.unwrap_or(0) > 0),
        "per-cgroup rows without cgroup ids: {cgroups:?}"
    );
    let none = run(GroupBy::None)?;
    ensure!(
        none.per_process.is_none() && none.apps.is_none(),
        "--group-by none still reported rows"
    );
    // Through the stream, the table at its default size: each /bin/true's exit and final row
    // (a second's wait after the workload: on this host the tracepoint family streams at
    // sched_process_free, a grace period after the release, when a 4-row table has long
    // evicted the row).
    let (streamed, sh_pid) = run_with(GroupBy::Process, "2048", "on", "1")?;
    let exits: Vec<_> = streamed
        .exits()
        .filter(|e| e.ppid == sh_pid && e.comm == "true")
        .collect();
    ensure!(
        exits.len() == 24 && exits.iter().all(|e| e.row.is_some() && e.exit_code == 0),
        "--streams on: {} of the 24 /bin/true exits were streamed with their rows: {exits:?}",
        exits.len()
    );
    ensure!(
        streamed.total("stream_lost") == Some(0)
            && streamed.exits().count() as u64 == streamed.total("streamed").unwrap_or(0),
        "--streams on: {:?} submitted, {} received, {:?} lost",
        streamed.total("streamed"),
        streamed.exits().count(),
        streamed.total("stream_lost")
    );
    // Refused at the command line: nothing loads, status 2, what is accepted said.
    for (args, said) in [
        (["--streams", "maybe"], "expected on or off"),
        (
            ["--stream-size", "5000"],
            "a power of two and a multiple of the page size",
        ),
        (
            ["--stream-size", "0"],
            "a power of two and a multiple of the page size",
        ),
    ] {
        let out = process::capture(cmd!(sh, "{loader} {args...} {object}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2) && stderr.contains(said) && out.stdout.is_empty(),
            "kc-loader {args:?}: {} saying {stderr:?}, not status 2 saying {said:?}",
            out.status
        );
    }
    eprintln!(
        "e2e: --streams on: the 24 exits streamed with their rows ({} records in all); bad --streams and --stream-size refused",
        streamed.exits().count()
    );
    eprintln!(
        "e2e: --table-size 4: {} rows after {} insertions, {exited} exited removed; by cgroup: {} rows",
        rows.len(),
        apps.insertions,
        cgroups.len()
    );
    agent_reads_the_tables(&cell)?;
    Ok(Verdict::Passed)
}

/// An agent built against the cell's skeleton and shipped headers only (no code generation)
/// reads its own row and the totals: 1000 one-byte reads are 1000 in its row.
fn agent_reads_the_tables(cell: &Path) -> Result<()> {
    let root = paths::project_root();
    let src = root.join("co-re/tests/kc-agent-example.c");
    let dir = tempfile::tempdir()?;
    let bin = dir.path().join("kc-agent-example");
    let cc = crate::compile::toolchain::Toolchain::detect()?.cc;
    let sh = process::shell();
    process::output(cmd!(
        sh,
        "{cc} -O2 -Wall -Wextra -Werror -I{cell} {src} -o {bin} -lbpf -lelf -lz"
    ))
    .context("building the example agent against the cell's skeleton and headers")?;
    let out = process::read(cmd!(sh, "{bin}"))?;
    let field = |k: &str| -> Option<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.parse().ok())
    };
    ensure!(
        field("row=") == Some(1000) && field("total=").is_some_and(|t| t >= 1000),
        "the example agent read {out:?}; expected row=1000 and a total of at least 1000"
    );
    eprintln!("e2e: an agent on the skeleton and shipped headers alone: {out}");
    Ok(())
}

/// The bucket the running kernel selects.
pub fn host_bucket() -> Result<kc_common::Bucket> {
    let release = crate::paths::running_kernel_release()?;
    let (_, lock) = kernels::load_checked_lock()?;
    Ok(kc_common::select_bucket(
        &kc_common::KernelVersion::parse(&release)?,
        &lock.buckets(),
    )?)
}

/// Skipped, with the reason, where this process cannot load BPF programs.
/// `cargo xtask bench overhead --slowed-auto` on this host must fail, and say which case:
/// the bench's verdict reaches its exit status through real measurements.
pub fn bench_overhead_fails_a_slowed_auto() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let run = crate::bench::overhead::run(crate::bench::overhead::OverheadBench {
        rounds: 3,
        kernel: None,
        no_guest: true,
        collectors: Vec::new(),
        slowed_auto: true,
        json: false,
    });
    let error = match run {
        Ok(()) => anyhow::bail!("bench overhead passed a netdev whose auto family runs 1024 extra helper calls per packet"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        error.contains("auto costs more than 1.2x")
            && error.contains("netdev kc_netdev_xmit (udp): auto"),
        "bench overhead failed, but not on the slowed auto: {error}"
    );
    // The slowed program is netdev's own in the trampoline family: against its floor (the
    // same programs, empty) that family is over the target too.
    ensure!(
        error.contains("host: netdev kc_netdev_xmit in trampoline: floor"),
        "bench overhead did not find the slowed trampoline family over its floor: {error}"
    );
    eprintln!("e2e: bench overhead --slowed-auto failed as it must: {error}");
    Ok(Verdict::Passed)
}

/// An agent stops `kc-loader` with SIGTERM in the middle of a collection: the loader passes
/// it to its workload (and waits for it: no orphan), detaches, prints the report of what it
/// counted with `stopped_by`, exits 128 + 15; none of its programs stays in the kernel.
pub fn loader_stops_on_sigterm() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let cell = cell_dir(CellId::core(host::host_libc()));
    let scratch = tempfile::tempdir()?;
    let marker = scratch.path().join("workload-pid");
    // The workload says it started (attaching comes first), then waits as long as a collection.
    let workload = format!("echo $$ > {}; exec sleep 600", marker.display());
    let mut loader = std::process::Command::new(cell.join(cell::LOADER))
        .args(["--json", "--attach", "auto"])
        .arg(cell.join("process.bpf.o"))
        .args(["--", "sh", "-c", &workload])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting kc-loader")?;
    let pid = loader.id().to_string();
    let started = std::time::Instant::now();
    let workload_pid = loop {
        if let Some(p) = std::fs::read_to_string(&marker)
            .ok()
            .filter(|s| s.ends_with('\n'))
        {
            break p.trim().to_string();
        }
        if started.elapsed() > std::time::Duration::from_secs(60) || loader.try_wait()?.is_some() {
            let _ = loader.kill();
            let out = loader.wait_with_output()?;
            anyhow::bail!(
                "kc-loader never started its workload:\n{}",
                process::tail_of(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let sh = process::shell();
    process::output(cmd!(sh, "kill -TERM {pid}"))?;
    let stopping = std::time::Instant::now();
    while loader.try_wait()?.is_none() {
        if stopping.elapsed() > std::time::Duration::from_secs(60) {
            let _ = loader.kill();
            anyhow::bail!("kc-loader still ran 60 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = loader.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let report: LoaderReport = crate::schema::validate_reports(&text)
        .and_then(|_| Ok(serde_json::from_str(&text)?))
        .with_context(|| {
            format!(
                "kc-loader's report after SIGTERM is not a kc_common::report::LoaderReport:\n{}",
                process::tail_of(&out)
            )
        })?;
    ensure!(
        out.status.code() == Some(128 + 15),
        "kc-loader ended {} after SIGTERM, not with status 143:\n{}",
        out.status,
        process::tail_of(&out)
    );
    let status = report.objects.first().map(|o| o.status);
    ensure!(
        report.stopped_by == Some(StopSignal::Term) && status == Some(ObjectStatus::Ok),
        "the report after SIGTERM says stopped_by {:?} and status {status:?}",
        report.stopped_by,
    );
    ensure!(
        report.objects[0].counters.is_some(),
        "the report after SIGTERM has no counters: {report:?}"
    );
    ensure!(
        !Path::new("/proc").join(&workload_pid).exists(),
        "the workload (pid {workload_pid}) outlived kc-loader"
    );
    // The kernel frees a program once its last link and descriptor are gone, a moment later.
    let ours = |names: &serde_json::Value| {
        names
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .filter(|n| n.starts_with("kc_process_"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let freed = std::time::Instant::now();
    loop {
        let left = ours(&serde_json::from_str(&process::read(cmd!(
            sh,
            "bpftool -j prog show"
        ))?)?);
        if left.is_empty() {
            break;
        }
        ensure!(
            freed.elapsed() < std::time::Duration::from_secs(30),
            "30 s after kc-loader exited, the kernel still holds {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!(
        "e2e: kc-loader stopped by SIGTERM in {:.1} s: workload ended, report printed, nothing left attached",
        stopping.elapsed().as_secs_f64()
    );
    Ok(Verdict::Passed)
}

/// Runs kc-loader (`--json`, one pass) whatever its exit status: its report, held both to the
/// shipped JSON Schema and to the Rust type, and its status.
pub(super) fn loader_report(
    cmd: xshell::Cmd<'_>,
) -> Result<(LoaderReport, std::process::ExitStatus)> {
    let shown = cmd.to_string();
    let out = process::capture(cmd)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let checked = crate::schema::validate_reports(&text)
        .and_then(|_| Ok(serde_json::from_str::<LoaderReport>(&text)?));
    let report = checked.with_context(|| {
        format!(
            "{shown} ({}) printed no valid report:\n{}",
            out.status,
            process::tail_of(&out)
        )
    })?;
    Ok((report, out.status))
}

pub fn needs_root() -> Option<Verdict> {
    (!host::is_root()).then(|| {
        Verdict::Skipped(format!(
            "loading BPF programs needs root (this is uid {})",
            host::uid_gid().0
        ))
    })
}
