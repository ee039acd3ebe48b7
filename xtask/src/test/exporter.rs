//! The `exporter` check: a release packaged from the built cells and installed by kc-install,
//! its kc-exporter started from the install, scraped by a real Prometheus server (Debian's,
//! on loopback, with a scrape configuration of this check's) while a workload reads; then
//! Prometheus's HTTP API asked what the workload did, `promtool check metrics` given a scrape,
//! and the exporter stopped with SIGTERM, leaving no program or link in the kernel. Bad input
//! (a port in use, no release, no root) is refused with a clear error first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use xshell::cmd;

use super::host::needs_root;
use super::Verdict;
use crate::{host, paths, process};

const TAG: &str = "v0.0.0-exporter";
/// How long the exporter may take to choose, load and attach every object.
const START_WAIT: Duration = Duration::from_secs(180);
/// Prometheus's scrape interval in this check.
const SCRAPE_INTERVAL_S: u64 = 1;
/// How long the workload reads: scrapes enough to see its rate several times.
const WORKLOAD_SECONDS: f64 = 5.0;

pub fn exporter() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let scratch = tempfile::tempdir()?;
    let prefix = install_release(scratch.path())?;
    let exe = prefix.join("current").join("kc-exporter");
    ensure!(
        exe.is_file(),
        "kc-install put no kc-exporter in {}",
        prefix.display()
    );
    refuses_bad_input(&exe)?;

    let before = bpf_ids()?;
    let port = free_port()?;
    let flags = scratch.path().join("kc-exporter.flags");
    std::fs::write(&flags, "# read on start and on SIGHUP\n--max-series 5000\n")?;
    let log = scratch.path().join("kc-exporter.log");
    let mut exporter = Processes(vec![Command::new(&exe)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&flags)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let first = wait_for_scrape(&client, &url, &mut exporter.0[0], &log)?;
    every_collector_serves(&first)?;
    promtool_accepts(&first, scratch.path())?;

    let prometheus = Prometheus::start(scratch.path(), port)?;
    prometheus.wait_for_target()?;
    let (pid, reads, per_second) = run_workload(scratch.path())?;
    prometheus.judge_workload(pid, reads, per_second)?;
    super::exporter_dns::judge(&client, &url, scratch.path())?;

    let sh = process::shell();
    let exporter_pid = exporter.0[0].id().to_string();
    sighup_rereads_the_flags(&client, &url, &flags, &exporter_pid)?;

    // SIGTERM: detached and ended, nothing of it left in the kernel.
    process::output(cmd!(sh, "kill -TERM {exporter_pid}"))?;
    let stopping = Instant::now();
    let status = loop {
        if let Some(s) = exporter.0[0].try_wait()? {
            break s;
        }
        ensure!(
            stopping.elapsed() < Duration::from_secs(60),
            "kc-exporter still ran 60 s after SIGTERM:\n{}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(
        status.success(),
        "kc-exporter ended {status} after SIGTERM:\n{}",
        tail(&log)
    );
    let freed = Instant::now();
    loop {
        let left: Vec<String> = bpf_ids()?.difference(&before).cloned().collect();
        if left.is_empty() {
            break;
        }
        ensure!(
            freed.elapsed() < Duration::from_secs(30),
            "30 s after kc-exporter exited, the kernel still holds {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "e2e: kc-exporter stopped by SIGTERM in {:.1} s, no program or link left",
        stopping.elapsed().as_secs_f64()
    );
    Ok(Verdict::Passed)
}

/// SIGHUP re-reads the flags file: a smaller `--max-series` bounds the per-process series at
/// once (the rest summed into `comm="other"`); `--group-by cgroup` loads the objects again,
/// rows labelled by cgroup path, and the totals carry on from where they were.
fn sighup_rereads_the_flags(
    client: &reqwest::blocking::Client,
    url: &str,
    flags: &Path,
    pid: &str,
) -> Result<()> {
    let sh = process::shell();
    let scrape_until = |what: &str, ok: &dyn Fn(&str) -> bool| -> Result<String> {
        let started = Instant::now();
        loop {
            let text = client.get(url).send()?.text()?;
            if ok(&text) {
                return Ok(text);
            }
            ensure!(
                started.elapsed() < START_WAIT,
                "{} s after SIGHUP, no scrape shows {what}",
                START_WAIT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let rows = |t: &str| {
        t.lines()
            .filter(|l| l.contains("_by_process_total{pid="))
            .count()
    };
    std::fs::write(flags, "--max-series 3\n")?;
    process::output(cmd!(sh, "kill -HUP {pid}"))?;
    let bounded = scrape_until("at most 3 per-process series and comm=\"other\"", &|t| {
        rows(t) <= 3 && t.contains("_by_process_total{comm=\"other\"}")
    })?;
    let before = value(&bounded, "kc_vfs_read_total").context("kc_vfs_read_total in a scrape")?;
    std::fs::write(flags, "--max-series 3\n--group-by cgroup\n")?;
    process::output(cmd!(sh, "kill -HUP {pid}"))?;
    let regrouped = scrape_until("rows by cgroup path", &|t| {
        rows(t) == 0 && t.contains("_by_cgroup_total{cgroup=\"/")
    })?;
    let after =
        value(&regrouped, "kc_vfs_read_total").context("kc_vfs_read_total after the reload")?;
    ensure!(
        after >= before,
        "kc_vfs_read_total went backwards over the SIGHUP reload: {before} -> {after}"
    );
    eprintln!(
        "e2e: SIGHUP: --max-series 3 bounded the rows at once; --group-by cgroup reloaded the objects, rows by cgroup path, kc_vfs_read_total {before} -> {after}"
    );
    Ok(())
}

/// The value of the sample `name` (without labels) in a scrape.
fn value(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Kills its processes when dropped (a failed check or bench leaves nothing running).
pub(crate) struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// The built cells packaged for this host's architecture, signed with a throw-away key, and
/// installed by kc-install into a prefix under `dir`.
pub(crate) fn install_release(dir: &Path) -> Result<PathBuf> {
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let arch = kc_common::host::host_arch()?;
    let release = crate::package::build_release(TAG, &paths::cells_dir(), Some(&sk), &[arch])?;
    let files = dir.join("release");
    std::fs::create_dir(&files)?;
    for (name, bytes) in &release.files {
        std::fs::write(files.join(name), bytes)?;
    }
    let prefix = dir.join("prefix");
    kc_install::install(&kc_install::Options {
        from: files.display().to_string(),
        tag: TAG.into(),
        pubkey: pk,
        prefix: prefix.clone(),
        libc: host::host_libc(),
        arch,
        kernel: paths::running_kernel_release()?,
        only_bucket: false,
        keep: 1,
        limits: Default::default(),
    })?;
    Ok(prefix)
}

/// Each bad start ends at once with status 1 and an error that says what to do.
fn refuses_bad_input(exe: &Path) -> Result<()> {
    let held = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = held.local_addr()?.port();
    let cases: [(&str, Vec<String>, Option<&str>, &str); 3] = [
        (
            "a port in use",
            vec!["--listen".into(), format!("127.0.0.1:{port}")],
            None,
            "is another exporter on that port? Pass --listen",
        ),
        (
            "a release that is not there",
            vec![
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--release".into(),
                "/nonexistent/release".into(),
            ],
            None,
            "choosing the objects of /nonexistent/release for this kernel (kc-select)",
        ),
        (
            "no root",
            vec!["--listen".into(), "127.0.0.1:0".into()],
            Some("65534"),
            "run it as root",
        ),
    ];
    for (what, args, uid, expected) in cases {
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                ])
                .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let out = cmd
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting kc-exporter with {what}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1) && err.contains(expected),
            "kc-exporter with {what} ({args:?}) ended {} saying {err:?}; expected status 1 and {expected:?}",
            out.status
        );
    }
    drop(held);
    Ok(())
}

/// The first scrape that answers, once every object is attached.
fn wait_for_scrape(
    client: &reqwest::blocking::Client,
    url: &str,
    exporter: &mut Child,
    log: &Path,
) -> Result<String> {
    let started = Instant::now();
    loop {
        if let Some(status) = exporter.try_wait()? {
            bail!("kc-exporter ended {status} before serving:\n{}", tail(log));
        }
        if let Ok(r) = client.get(url).send() {
            let status = r.status();
            let text = r.text()?;
            ensure!(status.is_success(), "{url} answered {status}: {text}");
            eprintln!(
                "e2e: kc-exporter served {url} {:.1} s after its start",
                started.elapsed().as_secs_f64()
            );
            return Ok(text);
        }
        ensure!(
            started.elapsed() < START_WAIT,
            "kc-exporter did not serve {url} within {} s:\n{}",
            START_WAIT.as_secs(),
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every collector of the project is up in the scrape, through the object kc-select chose.
fn every_collector_serves(scrape: &str) -> Result<()> {
    let collectors = crate::collectors::load_from(&paths::project_root())?;
    let mut missing = Vec::new();
    for c in &collectors {
        if !crate::vmtest::exporter::up(scrape, &c.name) {
            missing.push(c.name.clone());
        }
    }
    ensure!(
        missing.is_empty(),
        "the scrape has no object up for {missing:?}:\n{}",
        scrape
            .lines()
            .filter(|l| l.starts_with("kc_exporter_object"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "e2e: a scrape serves all {} collectors ({} lines)",
        collectors.len(),
        scrape.lines().count()
    );
    Ok(())
}

/// `promtool check metrics` (Prometheus's own linter) takes the scrape without a complaint.
pub(super) fn promtool_accepts(scrape: &str, dir: &Path) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian's prometheus package: `cargo xtask setup`)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(scrape.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics refused the scrape ({}):\n{}",
        out.status,
        process::tail_of(&out)
    );
    Ok(())
}

/// Runs kc-bench-workload's `read` case for about [`WORKLOAD_SECONDS`]: its pid, the reads
/// it made and their rate per second by its own clock (median batch).
fn run_workload(dir: &Path) -> Result<(u32, u64, f64)> {
    let tc = crate::compile::toolchain::Toolchain::detect()?;
    let workload = crate::vmtest::static_binaries(&tc, kc_common::host::host_arch()?)?.workload;
    let out = dir.join("workload.ns");
    let run = |n: u64| -> Result<(u32, f64)> {
        let mut child = Command::new(&workload)
            .args(["read", &n.to_string()])
            .arg(&out)
            .spawn()
            .with_context(|| format!("starting {}", workload.display()))?;
        let pid = child.id();
        let status = child.wait()?;
        ensure!(
            status.success(),
            "{} read {n} ended {status}",
            workload.display()
        );
        let ns: f64 = std::fs::read_to_string(&out)?
            .trim()
            .parse()
            .context("the workload's figure")?;
        Ok((pid, 1e9 / ns))
    };
    // A short run says how many reads take the time wanted on this machine.
    let (_, rate) = run(100_000)?;
    let n = (rate * WORKLOAD_SECONDS) as u64;
    let (pid, rate) = run(n)?;
    eprintln!("e2e: the workload (pid {pid}) read {n} times, {rate:.0} reads/s by its own clock");
    Ok((pid, n, rate))
}

/// A Prometheus server of this check's, on loopback, scraping the exporter every second.
struct Prometheus {
    _child: Processes,
    api: String,
    log: PathBuf,
    client: reqwest::blocking::Client,
}

impl Prometheus {
    fn start(dir: &Path, exporter_port: u16) -> Result<Prometheus> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  scrape_timeout: {SCRAPE_INTERVAL_S}s\n\
                 scrape_configs:\n  - job_name: kc\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
            ),
        )?;
        let port = free_port()?;
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .current_dir(dir)
            .spawn()
            .context("starting prometheus (Debian's prometheus package: `cargo xtask setup`)")?;
        Ok(Prometheus {
            _child: Processes(vec![child]),
            api: format!("http://127.0.0.1:{port}/api/v1"),
            log,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// The result of an instant query (at `time`, else now).
    fn query(&self, q: &str, time: Option<f64>) -> Result<Vec<Value>> {
        let mut params = vec![("query", q.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let r = self
            .client
            .get(format!("{}/query", self.api))
            .query(&params)
            .send()
            .with_context(|| format!("asking prometheus {q}"))?;
        let body: Value = r
            .json()
            .with_context(|| format!("prometheus's answer to {q}"))?;
        ensure!(
            body["status"] == "success",
            "prometheus refused {q}: {body}"
        );
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn wait_for_target(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let up = self.query("up{job=\"kc\"}", None).unwrap_or_default();
            if up.first().and_then(|s| s["value"][1].as_str()) == Some("1") {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus did not scrape the exporter within 60 s (up: {up:?}):\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Prometheus's figures of the workload's row agree with what the workload did: its last
    /// value is its reads (the kernel-accounting bound: up to 8 reads its exec made), its
    /// `irate()` between scrapes within the run is its own rate (±35 %), and the row is gone
    /// once the exporter reported the exit.
    fn judge_workload(&self, pid: u32, reads: u64, per_second: f64) -> Result<()> {
        let series = format!("kc_vfs_read_by_process_total{{pid=\"{pid}\"}}");
        // Reported once after the exit, then stale.
        let started = Instant::now();
        let samples = loop {
            let present = !self.query(&series, None)?.is_empty();
            let samples = self.query(&format!("{series}[5m]"), None)?;
            if !present && !samples.is_empty() {
                break samples;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus still has {series} 30 s after the workload exited (or never had it: {} samples)",
                samples.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        let points: Vec<(f64, f64)> = samples[0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse().ok()?)))
            .collect();
        let last = points.last().map_or(0.0, |p| p.1);
        ensure!(
            (reads as f64..=(reads + 8) as f64).contains(&last),
            "prometheus's last value of {series} is {last}: the workload read {reads} times (and its exec at most 8 more)"
        );
        // Pairs of scrapes that both fell inside the run: the last value is the final one.
        let inside: Vec<f64> = points
            .windows(2)
            .filter(|w| w[0].1 > 0.0 && w[1].1 < last)
            .map(|w| w[1].0)
            .collect();
        ensure!(
            inside.len() >= 2,
            "only {} pairs of scrapes inside the workload's run ({points:?}): too short to judge a rate",
            inside.len()
        );
        let mut rates = Vec::new();
        for t in &inside {
            let r = self.query(&format!("irate({series}[5s])"), Some(*t))?;
            if let Some(v) = r
                .first()
                .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            {
                rates.push(v);
            }
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let ratio = median / per_second;
        ensure!(
            (0.65..=1.35).contains(&ratio),
            "prometheus's irate() of the workload's reads is {median:.0}/s (median of {rates:?}), the workload's own {per_second:.0}/s: off by {:.0} %",
            (ratio - 1.0) * 100.0
        );
        eprintln!(
            "e2e: prometheus: the workload's row ended at {last} reads; irate() {median:.0}/s against its own {per_second:.0}/s ({:+.1} %), over {} scrapes",
            (ratio - 1.0) * 100.0,
            points.len()
        );
        Ok(())
    }
}

/// The ids of every BPF program and link in the kernel (`prog:12`, `link:4`).
fn bpf_ids() -> Result<std::collections::BTreeSet<String>> {
    let sh = process::shell();
    let mut ids = std::collections::BTreeSet::new();
    for kind in ["prog", "link"] {
        let list: Value =
            serde_json::from_str(&process::read(cmd!(sh, "bpftool -j {kind} show"))?)?;
        for p in list.as_array().into_iter().flatten() {
            if let Some(id) = p["id"].as_u64() {
                ids.insert(format!("{kind}:{id}"));
            }
        }
    }
    Ok(ids)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
