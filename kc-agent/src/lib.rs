//! A Rust agent's use of a kernel-collector release, through aya and the release's attach
//! plan (`attach-plan.json`): each object's maps created, each event's family chosen by the
//! plan's rule on this kernel, only the chosen programs loaded and attached, the ctrl map set;
//! then the counters, rows and histograms read into `kc_common::report::LoaderReport`, the
//! same report `kc-loader --json` prints.
//!
//! Objects load once (maps created; each program when a pass first needs it) and attach once
//! per pass; between passes their maps are emptied, so each report counts one pass.
//!
//! ```no_run
//! use kc_agent::{Options, Release, TableSizes};
//! let release = Release::open("/usr/libexec/kernel-collector/current/co-re".as_ref())?;
//! let mut objects = release.load(&release.objects(), TableSizes::default());
//! let session = objects.attach(&Options::default())?;
//! // ... the host works ...
//! let report = session.read(0)?;
//! println!("{}", serde_json::to_string(&report)?);
//! # anyhow::Ok(())
//! ```

mod attach;
mod handover;
mod kernel;
mod probe_events;
mod read;
mod sys;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kc_common::plan::{AttachPlan, PLAN_FILE};
use kc_common::report::{GroupBy, KernelFigures, LoaderReport, MapReads, ObjectReport, PassTimes};
use kc_common::AttachMode;

pub use kernel::Kernel;

/// How to attach the objects for a pass and read their maps (kc-loader's `--attach`,
/// `--group-by`, `--map-reads`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub attach: AttachMode,
    pub group_by: GroupBy,
    pub map_reads: MapReads,
    /// Whether the stream events load (`--streams`).
    pub streams: kc_common::plan::Streams,
}

/// Rows of the tables an agent sizes for its host before load (kc-loader's `--table-size` and
/// `--flow-table-size`); None keeps the object's.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableSizes {
    /// Each per-application table's.
    pub apps: Option<u32>,
    /// Each flow table's (connections).
    pub flows: Option<u32>,
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

    /// Loads `objects` (file names of this release) on the running kernel, its tables sized
    /// as `sizes` says. An object that fails to load is reported as failed in every pass; the
    /// others run.
    pub fn load(&self, objects: &[String], sizes: TableSizes) -> Objects<'_> {
        let kernel = self.kernel.get_or_init(Kernel::probe);
        if let Some(tracefs) = kernel.tracefs() {
            probe_events::sweep(tracefs);
        }
        let loaded = objects
            .iter()
            .map(
                |name| match (self.plan.object(name), read_capped(&self.dir.join(name))) {
                    (None, _) => attach::failed(name, format!("{PLAN_FILE} has no plan for it")),
                    (_, Err(e)) => attach::failed(name, format!("{e:#}")),
                    (Some(plan), Ok(bytes)) => attach::load(plan, &bytes, kernel, sizes),
                },
            )
            .collect();
        Objects { kernel, loaded }
    }
}

/// A release's objects, loaded.
pub struct Objects<'r> {
    kernel: &'r Kernel,
    loaded: Vec<attach::Loaded>,
}

impl<'r> Objects<'r> {
    /// Attaches every object for one pass, as `o` says; reading the session ends the pass.
    pub fn attach(&mut self, o: &Options) -> Result<Session<'_, 'r>> {
        let started = Instant::now();
        let cpus = possible_cpus()?;
        for l in &mut self.loaded {
            attach::attach(l, self.kernel, o, cpus);
            l.missed_before = attach::missed_runs(l);
        }
        Ok(Session {
            options: o.clone(),
            objects: self,
            cpus,
            attach_ms: ms(started),
            started: Instant::now(),
        })
    }
}

fn possible_cpus() -> Result<usize> {
    aya::util::nr_cpus()
        .map_err(|(what, e)| anyhow::anyhow!("counting the possible CPUs ({what}): {e}"))
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

/// A pass: the objects attached; reading it (or dropping it) detaches them.
pub struct Session<'o, 'r> {
    options: Options,
    objects: &'o mut Objects<'r>,
    cpus: usize,
    attach_ms: f64,
    started: Instant,
}

impl Session<'_, '_> {
    /// The report of what was counted since attach (one pass); `workload_pid`: the process
    /// whose row the agent ran for (0: none).
    pub fn read(mut self, workload_pid: u32) -> Result<LoaderReport> {
        let workload = ms(self.started);
        // Detached first, as kc-loader does: the maps hold still while read, so a counter and
        // the histogram of the same event, read at different instants, agree.
        let t = Instant::now();
        self.detach();
        let detach = ms(t);
        let t = Instant::now();
        self.read_maps()?;
        let read = ms(t);
        let times = PassTimes {
            attach: self.attach_ms,
            workload,
            detach,
            read,
        };
        let objects = self
            .objects
            .loaded
            .iter_mut()
            .map(|l| std::mem::take(&mut l.report))
            .collect();
        Ok(self.report(workload_pid, times, objects))
    }

    /// What has been counted since attach, read while the programs stay attached (an
    /// exporter's scrape): counters and rows go on counting, and each read sees the totals
    /// grow. Rows of exited processes are reported once, then removed from the tables.
    pub fn snapshot(&mut self) -> Result<LoaderReport> {
        let t = Instant::now();
        self.read_maps()?;
        let times = PassTimes {
            attach: self.attach_ms,
            workload: ms(self.started),
            detach: 0.0,
            read: ms(t),
        };
        // The rows move into the snapshot (the next read fills them again); the rest is copied.
        let objects = self
            .objects
            .loaded
            .iter_mut()
            .map(|l| {
                let rows = (l.report.per_process.take(), l.report.per_cgroup.take());
                let mut r = l.report.clone();
                (r.per_process, r.per_cgroup) = rows;
                r
            })
            .collect();
        Ok(self.report(0, times, objects))
    }

    /// The pass's options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn read_maps(&mut self) -> Result<()> {
        let cpus = self.cpus;
        for l in self.objects.loaded.iter_mut().filter(|l| l.attached()) {
            l.report.missed_runs = attach::missed_runs(l).saturating_sub(l.missed_before);
            read::read(l, &self.options, cpus)
                .with_context(|| format!("reading the maps of {}", l.report.object))?;
            l.report.memory_bytes = attach::map_memlock(l);
        }
        Ok(())
    }

    fn report(&self, workload_pid: u32, ms: PassTimes, objects: Vec<ObjectReport>) -> LoaderReport {
        LoaderReport {
            kernel: self.objects.kernel.release.clone(),
            attach: self.options.attach,
            workload_pid,
            stopped_by: None,
            ms,
            // The kernel's own figures are kc-loader's to take; none are claimed here.
            kernel_figures: KernelFigures::default(),
            objects,
        }
    }

    /// Detaches every object's programs. Closing a link waits in the kernel for grace
    /// periods (RCU, tasks-trace RCU), tens of milliseconds each; dropped from several threads
    /// at once, the waits overlap and share grace periods (as kc-loader does).
    fn detach(&mut self) {
        let mut links: Vec<attach::Link> = Vec::new();
        for l in &mut self.objects.loaded {
            links.extend(l.take_links());
        }
        let per_thread = links.len().div_ceil(DETACH_THREADS).max(1);
        std::thread::scope(|s| {
            let mut links = links.into_iter();
            loop {
                let chunk: Vec<attach::Link> = links.by_ref().take(per_thread).collect();
                if chunk.is_empty() {
                    break;
                }
                // Where no thread can start, the error drops the chunk here: detached all the same.
                let spawned = std::thread::Builder::new().spawn_scoped(s, move || drop(chunk));
                drop(spawned);
            }
        });
    }
}

/// Threads that detach a pass's links.
const DETACH_THREADS: usize = 16;

impl Drop for Session<'_, '_> {
    fn drop(&mut self) {
        self.detach();
    }
}
