//! One vmtest run of a libc's cells, in stages: gather what every guest shares
//! ([`Run::gather`]), stage each kernel's initramfs ([`Run::stage`]), boot the guests a few at
//! a time ([`Run::boot_all`]) and judge what each printed ([`Run::outcome`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use kc_common::{select_bucket, Bucket, CellId, KernelVersion, Libc};

use super::{
    boot, expect, exporter, guest_executable, installed, judge, modules, narrow, probe_kvm,
    static_binaries, verifier, work_dir, Accel, AgentKernels, BootEnd, Deadline, GuestBinaries,
    KernelOutcome, Vm, VmtestOptions, CONSOLE_TAIL,
};
use crate::collectors::{self, Collector};
use crate::compile::cell;
use crate::compile::toolchain::Toolchain;
use crate::cpio::{self, Member};
use crate::kernels::{self, fetch::Fetcher, spec::LockedKernel};
use crate::{atomic, paths};

/// What every guest of the run shares.
struct Run<'o> {
    o: &'o VmtestOptions,
    libc: Libc,
    kernels: Vec<LockedKernel>,
    buckets: Vec<Bucket>,
    collectors: Vec<Collector>,
    counters: expect::Table,
    accounting: crate::accounting::Table,
    init: Vec<u8>,
    loader: Vec<u8>,
    /// The static kc-agent, where this run boots it.
    agent: Option<Vec<u8>>,
    /// The version codes of the run's oldest and newest kernels, where kc-agent runs.
    agent_span: Option<(u32, u32)>,
    /// The version code of the run's newest kernel (kc-exporter runs there, on amd64).
    newest: Option<u32>,
    /// The installed release, as initramfs members.
    release: Vec<installed::Node>,
}

/// One kernel, ready to boot.
struct Guest {
    kernel: LockedKernel,
    version: KernelVersion,
    bucket: Option<Bucket>,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    /// Modules counters.toml names that this kernel's packages lack, and why.
    absent_modules: std::collections::BTreeMap<String, String>,
    /// Whether kc-agent runs in it beside the loader.
    agent: bool,
    /// Whether init runs the release's kc-exporter and prints a scrape.
    exporter: bool,
}

/// Boots the selected kernels with `libc`'s cells and judges each object; reports nothing.
pub fn execute(o: &VmtestOptions, libc: Libc) -> Result<(Vec<KernelOutcome>, Vec<Collector>)> {
    let run = Run::gather(o, libc)?;
    // Images first, one at a time (downloads), then boots in parallel.
    let mut fetcher = Fetcher::new(paths::cache_dir());
    let mut guests = (run.kernels.iter())
        .map(|k| run.stage(&mut fetcher, k))
        .collect::<Result<Vec<_>>>()?;
    // The longest boots first (those that also run kc-agent, kc-exporter): started last, one
    // of them would be the run's tail alone.
    guests.sort_by_key(|g| std::cmp::Reverse(u8::from(g.agent) + u8::from(g.exporter)));
    let mut results = run.boot_all(&guests)?;
    results.sort_by_key(|r| r.series.parse::<Bucket>().ok());
    Ok((results, run.collectors))
}

impl<'o> Run<'o> {
    fn gather(o: &'o VmtestOptions, libc: Libc) -> Result<Self> {
        let (_, whole) = kernels::load_checked_lock()?;
        let arch = o.arch;
        let lock = whole.for_arch(arch).with_context(|| {
            format!(
                "kernels.lock pins no {arch} kernels (`cargo xtask kernels lock --arch {arch}`)"
            )
        })?;
        let kernels: Vec<LockedKernel> = kernels::select_arch(&whole, arch, &o.kernels, true)?
            .into_iter()
            .cloned()
            .collect();
        let root = paths::project_root();
        let collectors = narrow(collectors::load_from(&root)?, &o.collectors)?;
        let tc = Toolchain::detect()?;
        let GuestBinaries {
            loader: host_loader,
            init,
            ..
        } = static_binaries(&tc, arch)?;
        let loader = if libc == Libc::Musl {
            // The release's own loader runs in the guest: it must need nothing from the
            // initramfs.
            let l = (paths::cells_dir())
                .join(CellId::core(libc).on(arch).to_string())
                .join(cell::LOADER);
            let bytes = std::fs::read(&l).with_context(|| {
                format!(
                    "reading {} (build it: `cargo xtask build --backend docker --libc musl --arch {arch}`)",
                    l.display()
                )
            })?;
            guest_executable(&l.display().to_string(), &bytes, arch, true)?;
            l
        } else {
            host_loader
        };
        std::fs::create_dir_all(work_dir())?;
        let agent = if AgentKernels::runs_agent(o.agent) {
            let tool = crate::compile::select_tool::Tool::Agent;
            Some(crate::compile::select_tool::build_tool(tool, arch)?.0)
        } else {
            None
        };
        let codes: Vec<u32> = (kernels.iter())
            .map(|k| KernelVersion::parse(&k.kernel_version).map(|v| v.code()))
            .collect::<Result<_, _>>()?;
        let agent_span = agent
            .as_ref()
            .and_then(|_| Some((*codes.iter().min()?, *codes.iter().max()?)));
        Ok(Run {
            o,
            agent_span,
            newest: codes.iter().max().copied(),
            libc,
            buckets: lock.buckets(),
            counters: expect::load(&root)?,
            accounting: crate::accounting::load(&root)?,
            collectors,
            init: std::fs::read(&init)?,
            loader: std::fs::read(&loader)?,
            agent,
            release: installed::install(libc, arch)?,
            kernels,
        })
    }

    /// The Rust consumer runs beside the loader on the oldest and newest kernel of the run.
    fn agent_on(&self, v: &KernelVersion) -> bool {
        self.agent_span
            .is_some_and(|(oldest, newest)| v.code() == oldest || v.code() == newest)
    }

    /// The kernel's image and an initramfs with init, the loader (and kc-agent), the
    /// installed release, the collectors a narrowed run keeps and the modules counters.toml
    /// needs.
    fn stage(&self, fetcher: &mut Fetcher, k: &LockedKernel) -> Result<Guest> {
        let arch = self.o.arch;
        let vmlinuz = fetcher.image(k)?;
        let version = KernelVersion::parse(&k.kernel_version)?;
        let agent = self.agent_on(&version);
        let exporter = exporter::runs_on(arch, version.code(), self.newest);
        let mut members = vec![
            Member::File {
                name: "init",
                data: &self.init,
                executable: true,
            },
            Member::File {
                name: "kc-loader",
                data: &self.loader,
                executable: true,
            },
        ];
        if let (true, Some(bytes)) = (agent, &self.agent) {
            members.push(Member::File {
                name: "kc-agent",
                data: bytes,
                executable: true,
            });
        }
        if exporter {
            // Read by init: run kc-exporter (see run_exporter there).
            members.push(Member::File {
                name: "exporter",
                data: b"",
                executable: false,
            });
        }
        members.extend(self.release.iter().map(installed::Node::member));
        // Read by init: what its kc-select chooses for (see read_collectors there).
        let narrowed_to: String = (self.collectors.iter())
            .map(|c| format!("{}\n", c.name))
            .collect();
        if !self.o.collectors.is_empty() {
            members.push(Member::File {
                name: "collectors",
                data: narrowed_to.as_bytes(),
                executable: false,
            });
        }
        // Nothing in an initramfs runs on another architecture's kernel: every executable
        // in it is checked, the ones init starts without a libc for being static too.
        for m in &members {
            if let Member::File {
                name,
                data,
                executable: true,
            } = m
            {
                if data.starts_with(b"\x7fELF") {
                    let started_bare = ["init", "kc-loader", "kc-agent"].contains(name);
                    guest_executable(name, data, arch, started_bare)?;
                }
            }
        }
        // Loaded by init in name order: the index keeps dependencies first.
        let modules = modules::resolve(
            &vmlinuz.with_file_name("modules"),
            &k.release,
            &expect::modules(&self.counters),
        )?;
        let module_names: Vec<String> = (modules.load.iter().enumerate())
            .map(|(i, m)| format!("modules/{i:02}-{}.ko", m.name))
            .collect();
        members.push(Member::Dir("modules"));
        members.extend(
            (modules.load.iter().zip(&module_names)).map(|(m, name)| Member::File {
                name,
                data: &m.bytes,
                executable: false,
            }),
        );
        // Named by libc too: two vmtest runs of one checkout (`--libc glibc` and `--libc
        // musl` started at once) boot the same kernels, each with its own loader.
        let initramfs = work_dir().join(format!("{}-{}.cpio", k.release, self.libc));
        atomic::write(&initramfs, &cpio::newc(&members))?;
        Ok(Guest {
            kernel: k.clone(),
            bucket: select_bucket(&version, &self.buckets).ok(),
            version,
            vmlinuz,
            initramfs,
            absent_modules: modules.absent,
            agent,
            exporter,
        })
    }

    /// Boots every guest, `--jobs` at a time; the first that cannot boot at all fails the run.
    fn boot_all(&self, guests: &[Guest]) -> Result<Vec<KernelOutcome>> {
        let o = self.o;
        let Some(first) = guests.first() else {
            return Ok(Vec::new());
        };
        let accel = match o.accel {
            Accel::Auto => probe_kvm(o.arch, &first.vmlinuz, &first.initramfs),
            chosen => chosen,
        };
        if !o.json {
            eprintln!("vmtest: accelerator {}", accel.qemu_name());
        }
        let results: Mutex<Vec<KernelOutcome>> = Mutex::new(Vec::new());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        // `jobs` workers boot this run's guests; sharing places with other runs, a worker
        // also waits for a place (the suite gives each run as many workers as there are
        // places, to boot its guests in the places the others leave).
        let places = o.slots.as_ref().map(|(s, run)| (s.as_ref(), *run));
        if let Some((slots, run)) = places {
            slots.set_waiting(run, guests.len());
        }
        std::thread::scope(|s| {
            for _ in 0..o.jobs.max(1).min(guests.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(g) = guests.get(i) else {
                        break;
                    };
                    let _slot = places.map(|(slots, run)| slots.take(run));
                    let log = g.initramfs.with_extension("log");
                    if !o.json {
                        eprintln!("vmtest: booting {} ({})", g.kernel.release, g.kernel.series);
                    }
                    let deadline = Deadline::of_cpu(Duration::from_secs(o.timeout));
                    match boot(
                        &g.kernel.release,
                        Vm::one_cpu(o.arch, accel),
                        &g.vmlinuz,
                        &g.initramfs,
                        deadline,
                        &log,
                    ) {
                        Ok((how, console, seconds)) => {
                            let outcome = self.outcome(g, how, &console, seconds, log);
                            results.lock().expect("results").push(outcome);
                        }
                        Err(e) => {
                            first_error.lock().expect("error slot").get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().expect("error slot") {
            return Err(e);
        }
        Ok(results.into_inner().expect("results"))
    }

    /// What a guest's console says: the loader's (and kc-agent's) reports judged against
    /// counters.toml and the kernel's accounting, and kc-select's choice.
    fn outcome(
        &self,
        g: &Guest,
        how: BootEnd,
        console: &str,
        seconds: f64,
        log: PathBuf,
    ) -> KernelOutcome {
        let passes = judge::extract_reports(console, judge::Reporter::Loader);
        let modes = passes
            .reports
            .iter()
            .map(|r| r.attach.to_string())
            .collect();
        let guest = judge::Guest {
            collectors: &self.collectors,
            counters: &self.counters,
            accounting: &self.accounting,
            kernel: &g.version,
            arch: self.o.arch,
            absent_modules: &g.absent_modules,
        };
        let mut objects = judge::judge_passes(&passes.reports, &guest);
        let mut malformed = passes.malformed;
        if g.agent {
            let agent = judge::extract_reports(console, judge::Reporter::Agent);
            if agent.reports.is_empty() && how == BootEnd::Reported {
                malformed.push("kc-agent printed no report".into());
            }
            malformed.extend(agent.malformed);
            objects.extend(
                judge::judge_passes(&agent.reports, &guest)
                    .into_iter()
                    .map(|mut o| {
                        o.kind = judge::AGENT_KIND.into();
                        o
                    }),
            );
        }
        if g.exporter && how == BootEnd::Reported {
            let names: Vec<String> = self.collectors.iter().map(|c| c.name.clone()).collect();
            malformed.extend(exporter::judge(console, &names));
        }
        KernelOutcome {
            series: g.kernel.series.to_string(),
            release: g.kernel.release.clone(),
            bucket: g.bucket.map(|b| b.to_string()),
            seconds,
            boot: how.clone(),
            modes,
            objects,
            selection: installed::judge_selection(
                console,
                &g.version,
                &self.buckets,
                self.collectors.len(),
            ),
            absent_modules: g.absent_modules.clone(),
            malformed,
            leftovers: judge::leftover_probe_events(console),
            log,
            console_tail: if how == BootEnd::Reported {
                Vec::new()
            } else {
                judge::console_tail(console, CONSOLE_TAIL)
            },
            verifier: verifier::costs(&passes.reports),
            verifier_failures: verifier::unreported(&passes.reports),
            verifier_unrecorded: 0,
            load_ms: verifier::load_ms(&passes.reports),
        }
    }
}
