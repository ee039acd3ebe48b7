//! The selection rule of `kc_common::select` applied to a running kernel and an installed
//! release: reads the kernel's facts (release, BTF), asks the kernel whether each CO-RE object
//! loads (the release's own `kc-loader --no-attach`), and returns the choice per collector.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kc_common::release::{CORE_DIR, LEGACY_DIR, MANIFEST};
use kc_common::report::{LoaderReport, ObjectStatus};
use kc_common::select::{self, Kernel, Kind, LegacyMode, Offer, Selection, Trial};
use serde::Serialize;

/// Where kc-install puts releases; `current` points at the installed one.
pub const DEFAULT_PREFIX: &str = "/usr/libexec/kernel-collector";
/// The loader's file name in a release.
pub const LOADER: &str = "kc-loader";
/// How long the trial load of every CO-RE object may take (a slow emulated guest needs seconds).
pub const TRIAL_WAIT: Duration = Duration::from_secs(120);
/// What the loader's report may weigh.
const REPORT_CAP: u64 = 16 << 20;

pub struct Options {
    /// The installed release directory (holding `legacy/` and `co-re/`).
    pub release: PathBuf,
    /// The kernel release to choose for; default: the running kernel's.
    pub kernel: Option<String>,
    /// Where the kernel's BTF is (a path that does not exist: a kernel without BTF).
    pub btf: PathBuf,
    pub mode: LegacyMode,
    /// The loader that asks the kernel; default: the release's own.
    pub loader: Option<PathBuf>,
    /// Ask the kernel whether each CO-RE object loads (else predict from BTF alone).
    pub trial: bool,
    /// Choose for these collectors alone (empty: every collector the release offers).
    pub collectors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub btf: bool,
    /// Why the kernel's BTF cannot serve, when it cannot.
    pub btf_missing: Option<String>,
    pub release: PathBuf,
    pub legacy_mode: LegacyMode,
    pub selections: Vec<Selection>,
}

impl Report {
    /// The chosen objects, as paths under the release.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.selections
            .iter()
            .filter_map(|s| s.object.as_ref())
            .map(|o| self.release.join(o))
            .collect()
    }
}

/// The release a `kc-select` executable belongs to (it lives in `<release>/`, beside
/// `legacy/`), or the prefix's current one.
pub fn default_release(exe: Option<&Path>) -> PathBuf {
    exe.and_then(Path::parent)
        .filter(|d| d.join(LEGACY_DIR).join(MANIFEST).is_file())
        .map_or_else(
            || Path::new(DEFAULT_PREFIX).join("current"),
            Path::to_path_buf,
        )
}

pub fn run(o: &Options) -> Result<Report> {
    let release = match &o.kernel {
        Some(k) => k.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the running kernel's release")?
            .trim()
            .to_string(),
    };
    let kernel = Kernel::probe(&release, &o.btf)?;
    let offer = Offer::installed(&o.release, o.mode)
        .and_then(|offer| offer.only(&o.collectors))
        .map_err(anyhow::Error::msg)?;
    let trials = if o.trial && kernel.btf.is_ok() && !offer.core.is_empty() {
        let loader = o
            .loader
            .clone()
            .unwrap_or_else(|| o.release.join(LEGACY_DIR).join(LOADER));
        let objects: Vec<PathBuf> = offer
            .core
            .iter()
            .map(|c| {
                o.release
                    .join(CORE_DIR)
                    .join(kc_common::names::core_object(c))
            })
            .collect();
        trial(&loader, &objects, TRIAL_WAIT)?
    } else {
        BTreeMap::new()
    };
    Ok(report(kernel, o.release.clone(), &offer, o.mode, &|c| {
        trials.get(c).cloned().unwrap_or(Trial::NotTried)
    }))
}

/// The rule's choices on `kernel` from what `offer`s, as a report on the release at `release`.
pub fn report(
    kernel: Kernel,
    release: PathBuf,
    offer: &Offer,
    mode: LegacyMode,
    trial: &dyn Fn(&str) -> Trial,
) -> Report {
    Report {
        selections: select::choose(&kernel, offer, mode, trial),
        kernel: kernel.release,
        btf: kernel.btf.is_ok(),
        btf_missing: kernel.btf.err(),
        release,
        legacy_mode: mode,
    }
}

/// Loads (never attaches) every object with `loader --no-attach --json` and reads, per
/// collector, whether the kernel took it: `ok` and `partial` (an event this kernel cannot
/// observe) load; `failed` is refused, with the loader's reason.
pub fn trial(
    loader: &Path,
    objects: &[PathBuf],
    wait: Duration,
) -> Result<BTreeMap<String, Trial>> {
    let mut child = Command::new(loader)
        .args(["--no-attach", "--json"])
        .args(objects)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} to ask the kernel", loader.display()))?;
    // Both pipes drained at once (bounded): a loader blocked on a full one never ends.
    let out = drain(child.stdout.take().expect("piped"));
    let err = drain(child.stderr.take().expect("piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > wait {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} --no-attach took more than {} s to load {} objects: killed; pass --no-trial to choose without asking the kernel",
                loader.display(),
                wait.as_secs(),
                objects.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let tail = |s: &str| s.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    let report: LoaderReport = serde_json::from_slice(&out).with_context(|| {
        format!(
            "{} --no-attach --json ({status}) printed no report of its release's type (kc_common::report::LoaderReport): {}",
            loader.display(),
            tail(&err)
        )
    })?;
    let trials = parse_trials(&report);
    if trials.len() != objects.len() {
        bail!(
            "{} reported {} of {} objects ({status}): {}",
            loader.display(),
            trials.len(),
            objects.len(),
            tail(&err)
        );
    }
    let refused: Vec<&String> = trials
        .values()
        .filter_map(|t| match t {
            Trial::Refused(why) => Some(why),
            _ => None,
        })
        .collect();
    if !refused.is_empty()
        && refused.len() == trials.len()
        && refused
            .iter()
            .all(|w| w.contains("Operation not permitted"))
    {
        bail!("the kernel refused every object to this user (Operation not permitted): run kc-select as root (or with CAP_BPF and CAP_PERFMON), or pass --no-trial to choose from BTF alone");
    }
    Ok(trials)
}

fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = pipe.take(REPORT_CAP).read_to_end(&mut b);
        b
    })
}

/// Collector -> trial, from a loader report.
fn parse_trials(report: &LoaderReport) -> BTreeMap<String, Trial> {
    report
        .objects
        .iter()
        .filter_map(|o| {
            let file = o.object.rsplit('/').next().unwrap_or(&o.object);
            let collector = file.strip_suffix(".bpf.o")?;
            let trial = match o.status {
                ObjectStatus::Ok | ObjectStatus::Partial => Trial::Loads,
                ObjectStatus::Failed | ObjectStatus::AsAuto => {
                    let last = o.log_tail.lines().rev().find(|l| !l.trim().is_empty());
                    Trial::Refused(match last {
                        Some(l) => format!("{} ({})", o.error, l.trim()),
                        None => o.error.clone(),
                    })
                }
            };
            Some((collector.to_string(), trial))
        })
        .collect()
}

/// The report for people: one line per collector.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "kernel {} ({}), release {}, legacy mode {}\n",
        r.kernel,
        r.btf_missing.as_deref().unwrap_or("BTF: yes"),
        r.release.display(),
        r.legacy_mode
    );
    let width = r
        .selections
        .iter()
        .map(|x| x.collector.len())
        .max()
        .unwrap_or(0);
    for x in &r.selections {
        let what = match (&x.object, &x.bucket) {
            (Some(o), Some(b)) => format!("{b:<6} {}", r.release.join(o).display()),
            (Some(o), None) => format!("{:<6} {}", "", r.release.join(o).display()),
            _ => String::new(),
        };
        let why = if x.passed_over.is_empty() {
            String::new()
        } else {
            format!("  ({})", x.passed_over.join("; "))
        };
        let untried = if x.kind == Kind::CoRe && !x.tried {
            "  (predicted: the kernel was not asked)"
        } else {
            ""
        };
        s.push_str(&format!(
            "{:<width$}  {:<6}  {what}{why}{untried}\n",
            x.collector, x.kind
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_common::report::ObjectReport;

    #[test]
    fn a_loader_report_reads_as_trials() {
        let object = |object: &str, status, error: &str, log_tail: &str| ObjectReport {
            object: object.into(),
            status,
            error: error.into(),
            log_tail: log_tail.into(),
            ..ObjectReport::default()
        };
        let report = LoaderReport {
            objects: vec![
                object("/r/co-re/vfs.bpf.o", ObjectStatus::Ok, "", ""),
                object("cachestat.bpf.o", ObjectStatus::Partial, "", ""),
                object(
                    "disk.bpf.o",
                    ObjectStatus::Failed,
                    "load: Invalid argument (the verifier log tail follows)",
                    "libbpf: prog 'x': failed to load\nR1 invalid mem access\n",
                ),
                object("rkc_vfs.6.1.o", ObjectStatus::Ok, "", ""),
            ],
            ..LoaderReport::default()
        };
        let t = parse_trials(&report);
        assert_eq!(t.len(), 3, "legacy objects are not trials");
        assert_eq!(t["vfs"], Trial::Loads);
        assert_eq!(t["cachestat"], Trial::Loads);
        assert!(
            matches!(&t["disk"], Trial::Refused(w) if w.contains("Invalid argument") && w.ends_with("(R1 invalid mem access)")),
            "{:?}",
            t["disk"]
        );
    }

    #[test]
    fn a_kc_select_in_a_release_selects_from_that_release() {
        let d = tempfile::tempdir().unwrap();
        let legacy = d.path().join("releases/v1-glibc").join(LEGACY_DIR);
        std::fs::create_dir_all(&legacy).unwrap();
        let exe = d.path().join("releases/v1-glibc/kc-select");
        assert_eq!(
            default_release(Some(&exe)),
            Path::new(DEFAULT_PREFIX).join("current"),
            "no manifest: not a release"
        );
        std::fs::write(legacy.join(MANIFEST), "{}").unwrap();
        assert_eq!(
            default_release(Some(&exe)),
            d.path().join("releases/v1-glibc")
        );
        assert_eq!(
            default_release(None),
            Path::new(DEFAULT_PREFIX).join("current")
        );
    }

    #[test]
    fn a_loader_that_cannot_run_or_prints_nothing_is_an_error() {
        let e = trial(Path::new("/nonexistent/kc-loader"), &[], TRIAL_WAIT).unwrap_err();
        assert!(
            format!("{e:#}").contains("running /nonexistent/kc-loader"),
            "{e:#}"
        );
        let e = trial(
            Path::new("/bin/true"),
            &[PathBuf::from("vfs.bpf.o")],
            TRIAL_WAIT,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("printed no report"), "{e:#}");
    }

    #[test]
    fn a_loader_that_hangs_is_killed_at_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let hang = d.path().join("kc-loader");
        // Written by a child process: a file this process held open for writing could be
        // inherited by another test thread's fork, and exec would then fail with ETXTBSY.
        let written = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf '#!/bin/sh\\nexec sleep 30\\n' > \"$1\" && chmod 755 \"$1\"")
            .arg("sh")
            .arg(&hang)
            .status()
            .unwrap();
        assert!(written.success());
        let t = Instant::now();
        let e = trial(&hang, &[], Duration::from_millis(300)).unwrap_err();
        assert!(
            format!("{e:#}").contains("killed; pass --no-trial"),
            "{e:#}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
