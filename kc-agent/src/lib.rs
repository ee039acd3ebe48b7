//! A Rust agent's use of a kernel-collector release, through aya and the release's attach
//! plan (`attach-plan.json`): each object's maps created, each event's family chosen by the
//! plan's rule on this kernel, only the chosen programs loaded and attached, the ctrl map set;
//! then the counters, rows and histograms read into `kc_common::report::LoaderReport`, the
//! same report `kc-loader --json` prints.
//!
//! ```no_run
//! use kc_agent::{Options, Release};
//! let release = Release::open("/usr/libexec/kernel-collector/current/co-re".as_ref())?;
//! let session = release.attach(&release.objects(), &Options::default());
//! // ... the host works ...
//! let report = session.read(0)?;
//! println!("{}", serde_json::to_string(&report)?);
//! # anyhow::Ok(())
//! ```

mod attach;
mod kernel;
mod read;
mod sys;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kc_common::plan::{AttachPlan, PLAN_FILE};
use kc_common::report::{GroupBy, KernelFigures, LoaderReport, PassTimes};
use kc_common::AttachMode;

pub use kernel::Kernel;

/// How to run the objects (kc-loader's `--attach`, `--group-by`, `--table-size`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub attach: AttachMode,
    pub group_by: GroupBy,
    pub table_size: Option<u32>,
}

/// The largest object or plan read (ours are tens of KiB, a plan a few hundred).
const FILE_CAP: u64 = 64 << 20;

/// An installed release directory (`legacy/` or `co-re/`) and its plan.
pub struct Release {
    dir: PathBuf,
    plan: AttachPlan,
    /// What the running kernel has, asked once (its BTF and kallsyms take seconds to read
    /// under emulation) for every pass.
    kernel: std::cell::OnceCell<Kernel>,
}

impl Release {
    pub fn open(dir: &Path) -> Result<Release> {
        let path = dir.join(PLAN_FILE);
        let text = read_capped(&path)?;
        let plan: AttachPlan = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not an attach plan", path.display()))?;
        Ok(Release {
            dir: dir.to_path_buf(),
            plan,
            kernel: std::cell::OnceCell::new(),
        })
    }

    /// Every object the plan describes.
    pub fn objects(&self) -> Vec<String> {
        self.plan.objects.iter().map(|o| o.object.clone()).collect()
    }

    /// Loads and attaches `objects` (file names of this release) on the running kernel.
    /// An object that fails is reported as failed; the others run.
    pub fn attach(&self, objects: &[String], o: &Options) -> Session {
        let started = Instant::now();
        let kernel = self.kernel.get_or_init(Kernel::probe);
        let loaded = objects
            .iter()
            .map(|name| {
                let t = Instant::now();
                let mut loaded = match (self.plan.object(name), read_capped(&self.dir.join(name))) {
                    (None, _) => attach::failed(name, o, format!("{PLAN_FILE} has no plan for it")),
                    (_, Err(e)) => attach::failed(name, o, format!("{e:#}")),
                    (Some(plan), Ok(bytes)) => attach::attach(plan, &bytes, kernel, o),
                };
                loaded.report.ms.load = ms(t);
                loaded.missed_before = attach::missed_runs(&loaded);
                loaded
            })
            .collect();
        Session {
            options: o.clone(),
            loaded,
            attach_ms: ms(started),
            started: Instant::now(),
        }
    }
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(FILE_CAP + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > FILE_CAP {
        bail!("{} is over {FILE_CAP} bytes: refusing it", path.display());
    }
    Ok(bytes)
}

/// Objects attached; dropping it detaches them all.
pub struct Session {
    options: Options,
    loaded: Vec<attach::Loaded>,
    attach_ms: f64,
    started: Instant,
}

impl Session {
    /// The report of what was counted since attach (one pass); `workload_pid`: the process
    /// whose row the agent ran for (0: none).
    pub fn read(mut self, workload_pid: u32) -> Result<LoaderReport> {
        let workload = ms(self.started);
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| anyhow::anyhow!("counting the possible CPUs ({what}): {e}"))?;
        let t = Instant::now();
        for l in &mut self.loaded {
            l.report.missed_runs = attach::missed_runs(l).saturating_sub(l.missed_before);
            read::read(l, self.options.group_by, cpus)
                .with_context(|| format!("reading the maps of {}", l.report.object))?;
            l.report.memory_bytes = l.ebpf.as_ref().map(|_| attach::map_bytes(&l.plan, cpus));
        }
        let read = ms(t);
        let t = Instant::now();
        let objects: Vec<_> = self
            .loaded
            .iter_mut()
            .map(|l| std::mem::take(&mut l.report))
            .collect();
        drop(self.loaded);
        Ok(LoaderReport {
            kernel: kernel_release(),
            attach: self.options.attach,
            workload_pid,
            stopped_by: None,
            ms: PassTimes {
                attach: self.attach_ms,
                workload,
                detach: ms(t),
                read,
            },
            // The kernel's own figures are kc-loader's to take; none are claimed here.
            kernel_figures: KernelFigures::default(),
            objects,
        })
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
