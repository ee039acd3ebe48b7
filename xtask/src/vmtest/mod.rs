//! `cargo xtask vmtest`: boots each kernel of the matrix under qemu with an initramfs that
//! holds a static loader, the release installed by kc-install (CO-RE and every bucket;
//! [`installed`]) and a workload. In the guest the release's own kc-select chooses the objects
//! (with the kernel's BTF, and as for a kernel without it: every CO-RE object and the legacy
//! objects of the kernel's bucket); the loader runs them once per attach mode (each family
//! forced, then auto) in that one boot. Reported per (kernel, object, mode): whether it loaded,
//! attached what the kernel has, and counted; and per kernel whether the choice followed the
//! rule.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::{select_bucket, Arch, AttachMode, Bucket, KernelVersion};
use serde::Serialize;
use sha2::{Digest, Sha256};

use kc_common::{CellId, Libc};
use xshell::cmd;

use crate::cli::LibcChoice;
use crate::collectors::{self, Collector};
use crate::compile::cell;
use crate::compile::loader;
use crate::compile::toolchain::{LoaderToolchain, Toolchain};
use crate::cpio::{self, Member};
use crate::kernels::{self, fetch::Fetcher, spec::LockedKernel};
use crate::{atomic, host, paths, process};

#[derive(Debug, Args)]
pub struct VmtestOptions {
    /// Boot these series only (repeatable); default: the series `KC_VMTEST_KERNELS` lists
    /// (comma-separated: how a workflow's variable chooses), else every kernel of the matrix
    #[arg(long = "kernel", value_name = "SERIES")]
    pub kernels: Vec<Bucket>,
    /// Load and judge these collectors only (repeatable): the guest's kc-select chooses for
    /// them alone. Default: the collectors `KC_VMTEST_COLLECTORS` lists (comma-separated),
    /// else every collector
    #[arg(long = "collector", value_name = "NAME")]
    pub collectors: Vec<String>,
    /// Which guests also run the Rust consumer (kc-agent) on the release's CO-RE objects.
    /// Default: what `KC_VMTEST_AGENT` says, else the oldest and newest kernel of the run
    #[arg(long, value_enum)]
    pub agent: Option<AgentKernels>,
    /// Guests booted at once
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Seconds of processor time a guest may use before it is killed and reported as hung
    /// (a whole run takes 1-3 min under TCG, however many guests share the cores); a guest
    /// is also killed after four times this in real time
    #[arg(long, default_value_t = DEFAULT_TIMEOUT)]
    pub timeout: u64,
    /// qemu accelerator (auto: KVM when a quick probe boots a guest with it)
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// Whose cells to boot: glibc (a static loader compiled here), musl (the musl cell's own
    /// static kc-loader, as released), or each in turn. Default: the host's libc
    #[arg(long, value_enum)]
    pub libc: Option<LibcChoice>,
    /// The architecture of the kernels, cells and guest binaries (arm64: qemu-system-aarch64)
    #[arg(long, default_value = "amd64")]
    pub arch: Arch,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// The environment variable that chooses the kernels when no `--kernel` is given (the release
/// workflow's vmtest job sets it from a repository variable; the rehearsal boots fewer).
pub const KERNELS_VAR: &str = "KC_VMTEST_KERNELS";
/// The environment variable that chooses the collectors when no `--collector` is given (the
/// release workflow's vmtest job sets it from a repository variable; the rehearsal loads one).
pub const COLLECTORS_VAR: &str = "KC_VMTEST_COLLECTORS";

/// The environment variable that chooses `--agent` when it is not given (the release
/// workflow's vmtest job sets it from a repository variable; the rehearsal runs none).
pub const AGENT_VAR: &str = "KC_VMTEST_AGENT";

/// The guests that run kc-agent beside kc-loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentKernels {
    /// The oldest and the newest kernel of the run.
    OldestNewest,
    None,
}

/// `--timeout`'s default, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// qemu's name (`-accel`); `auto` is resolved by a probe before any boot.
    pub(crate) fn qemu_name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub(crate) mod expect;
pub mod installed;
mod judge;
mod modules;
mod qemu;

pub(crate) use qemu::{boot, probe_kvm, BootEnd, Deadline};

pub use judge::{unobserved as unobserved_events, ObjectOutcome};

const BEGIN: &str = "KC-VMTEST-BEGIN";
const END: &str = "KC-VMTEST-END";
/// Printed once every attach mode has reported.
const DONE: &str = "KC-VMTEST-DONE";
/// How many lines of a silent guest's console the report shows.
const CONSOLE_TAIL: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct KernelOutcome {
    pub series: String,
    pub release: String,
    pub bucket: Option<String>,
    pub seconds: f64,
    /// How the boot ended (in JSON: `reported`, `timeout after ...`, `no report ...`).
    pub boot: BootEnd,
    /// The attach modes whose loader run reported.
    pub modes: Vec<String>,
    pub objects: Vec<ObjectOutcome>,
    /// Where kc-select's choices broke the rule (empty: they followed it).
    pub selection: Vec<String>,
    /// Reports that do not match `kc_common::report::LoaderReport` (the C loader and the type
    /// disagree), by mode.
    pub malformed: Vec<String>,
    /// Modules counters.toml names that this kernel's packages lack (name → why): their
    /// counters are not judged here.
    pub absent_modules: std::collections::BTreeMap<String, String>,
    pub log: PathBuf,
    /// Where the guest did not report: the last lines of its console.
    pub console_tail: Vec<String>,
}

pub(crate) fn work_dir() -> PathBuf {
    paths::project_root().join("target/kc-build/vmtest")
}

/// What a guest runs: the static loader (the release's recipe, without embedded objects: the
/// guests load objects from files), init, and the benchmark workload; and the host's workload
/// for the kernel-accounting check.
pub(crate) struct GuestBinaries {
    pub loader: PathBuf,
    pub init: PathBuf,
    pub workload: PathBuf,
    pub accounting: PathBuf,
}

/// Compiles `arch`'s guest binaries, once per source and toolchain.
pub(crate) fn static_binaries(tc: &Toolchain, arch: Arch) -> Result<GuestBinaries> {
    let root = paths::project_root();
    let sources = [
        ("init", root.join("co-re/tests/kc-vmtest-init.c")),
        (
            "kc-bench-workload",
            root.join("co-re/tests/kc-bench-workload.c"),
        ),
        (
            "kc-accounting-workload",
            root.join("co-re/tests/kc-accounting-workload.c"),
        ),
    ];
    let mut h = Sha256::new();
    crate::compile::plan::hash_tree(&mut h, &root.join("co-re/loader"))?;
    crate::compile::plan::hash_tree(&mut h, &root.join("includes"))?;
    for (_, src) in &sources {
        h.update(std::fs::read(src)?);
    }
    h.update(&tc.fingerprint);
    let link = LoaderToolchain::static_glibc(arch, tc)?;
    // amd64's key is as before the architecture came (its cached binaries stay valid).
    if arch != Arch::Amd64 {
        h.update(arch.as_str());
        h.update(&link.fingerprint);
    }
    let dir = work_dir().join(format!("bin-{}", &hex::encode(h.finalize())[..16]));
    let bins = GuestBinaries {
        loader: dir.join("kc-loader"),
        init: dir.join("init"),
        workload: dir.join("kc-bench-workload"),
        accounting: dir.join("kc-accounting-workload"),
    };
    if [&bins.loader, &bins.init, &bins.workload, &bins.accounting]
        .iter()
        .all(|p| p.is_file())
    {
        return Ok(bins);
    }
    let staged = atomic::StagedDir::beside(&dir)?;
    loader::compile(
        &root,
        &link,
        &[],
        staged.path(),
        &staged.path().join("kc-loader"),
        true,
    )
    .context("compiling vmtest's static kc-loader")?;
    let sh = process::shell_in(&root);
    let cc = &link.cc;
    for (name, src) in &sources {
        let out = staged.path().join(name);
        process::output(cmd!(
            sh,
            "{cc} -O2 -Wall -Wextra -Werror -static {src} -o {out}"
        ))
        .with_context(|| format!("compiling the guests' {name}"))?;
        let made_for = host::executable_arch(&std::fs::read(&out)?).map_err(anyhow::Error::msg)?;
        if made_for != arch {
            bail!(
                "the guests' {name} came out as an {made_for} executable, not {arch} ({} made it)",
                cc.display()
            );
        }
    }
    staged.publish()?;
    Ok(bins)
}

impl VmtestOptions {
    /// The command line's options, with `KC_VMTEST_KERNELS` and `KC_VMTEST_COLLECTORS`
    /// standing in for `--kernel` and `--collector` when none is given. Only the `vmtest` verb
    /// reads them: the suite's and `dist`'s "every kernel" is never narrowed by a variable
    /// left in the environment.
    pub fn with_narrowing_from_env(mut self) -> Result<Self> {
        if self.kernels.is_empty() {
            self.kernels = crate::cli::series_from_env(KERNELS_VAR)?;
        }
        if self.collectors.is_empty() {
            self.collectors = crate::cli::list_from_env(COLLECTORS_VAR);
        }
        if self.agent.is_none() {
            self.agent = AgentKernels::from_env()?;
        }
        Ok(self)
    }
}

impl AgentKernels {
    /// Whether a run given `choice` (none: the default, oldest and newest) runs kc-agent.
    pub fn runs_agent(choice: Option<AgentKernels>) -> bool {
        choice.unwrap_or(AgentKernels::OldestNewest) == AgentKernels::OldestNewest
    }

    /// What `KC_VMTEST_AGENT` says, if it is set.
    pub fn from_env() -> Result<Option<AgentKernels>> {
        let value = std::env::var(AGENT_VAR).unwrap_or_default();
        if value.trim().is_empty() {
            return Ok(None);
        }
        use clap::ValueEnum;
        AgentKernels::from_str(value.trim(), true)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{AGENT_VAR}={value:?}: {e} (oldest-newest or none)"))
    }
}

pub fn run(o: VmtestOptions) -> Result<()> {
    let libcs = o
        .libc
        .map_or_else(|| vec![host::host_libc()], LibcChoice::libcs);
    for libc in libcs {
        if !o.json {
            eprintln!("vmtest: the {} {libc} cells", o.arch);
        }
        let (results, collectors) = execute(&o, libc)?;
        let failures = report(&results, &collectors, o.json)?;
        if failures > 0 {
            bail!(
                "{failures} kernel/object checks of the {} {libc} cells failed (logs under {})",
                o.arch,
                work_dir().display()
            );
        }
    }
    Ok(())
}

/// Boots the selected kernels with `libc`'s cells and judges each object; reports nothing.
pub fn execute(o: &VmtestOptions, libc: Libc) -> Result<(Vec<KernelOutcome>, Vec<Collector>)> {
    let (_, whole) = kernels::load_checked_lock()?;
    let arch = o.arch;
    let lock = whole.for_arch(arch).with_context(|| {
        format!("kernels.lock pins no {arch} kernels (`cargo xtask kernels lock --arch {arch}`)")
    })?;
    let kernels: Vec<&LockedKernel> = kernels::select_arch(&whole, arch, &o.kernels, true)?;
    let buckets = lock.buckets();
    let collectors = narrow(
        collectors::load_from(&paths::project_root())?,
        &o.collectors,
    )?;
    let counters = expect::load(&paths::project_root())?;
    let accounting = crate::accounting::load(&paths::project_root())?;
    let wanted_modules = expect::modules(&counters);
    let tc = Toolchain::detect()?;
    let GuestBinaries {
        loader: host_loader,
        init,
        ..
    } = static_binaries(&tc, arch)?;
    let cells = paths::cells_dir();
    let loader = if libc == Libc::Musl {
        // The release's own loader runs in the guest: it must need nothing from the initramfs.
        let l = cells
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
    let release = installed::install(libc, arch)?;
    // Read by init: what its kc-select chooses for (see read_collectors there).
    let narrowed_to: String = collectors.iter().map(|c| format!("{}\n", c.name)).collect();
    // The Rust consumer runs beside the loader on the oldest and newest kernel of the run.
    let versions: Vec<KernelVersion> = kernels
        .iter()
        .map(|k| KernelVersion::parse(&k.kernel_version))
        .collect::<Result<_, _>>()?;
    let with_agent = AgentKernels::runs_agent(o.agent);
    let agent_on = |v: &KernelVersion| {
        with_agent
            && (versions.iter().map(KernelVersion::code).min() == Some(v.code())
                || versions.iter().map(KernelVersion::code).max() == Some(v.code()))
    };
    let agent = if with_agent {
        crate::compile::select_tool::build_tool(crate::compile::select_tool::Tool::Agent, arch)?.0
    } else {
        Vec::new()
    };
    // Images first, one at a time (downloads), then boots in parallel.
    let mut fetcher = Fetcher::new(paths::cache_dir());
    let mut plans = Vec::new();
    for k in &kernels {
        let vmlinuz = fetcher.image(k)?;
        let version = KernelVersion::parse(&k.kernel_version)?;
        let bucket = select_bucket(&version, &buckets).ok();
        let loader_bytes = std::fs::read(&loader)?;
        let init_bytes = std::fs::read(&init)?;
        let mut members = vec![
            Member::File {
                name: "init",
                data: &init_bytes,
                executable: true,
            },
            Member::File {
                name: "kc-loader",
                data: &loader_bytes,
                executable: true,
            },
        ];
        let agent_here = agent_on(&version);
        if agent_here {
            members.push(Member::File {
                name: "kc-agent",
                data: &agent,
                executable: true,
            });
        }
        members.extend(release.iter().map(installed::Node::member));
        if !o.collectors.is_empty() {
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
            &wanted_modules,
        )?;
        let module_names: Vec<String> = (modules.load.iter().enumerate())
            .map(|(i, m)| format!("modules/{i:02}-{}.ko", m.name))
            .collect();
        members.push(Member::Dir("modules"));
        members.extend(
            modules
                .load
                .iter()
                .zip(&module_names)
                .map(|(m, name)| Member::File {
                    name,
                    data: &m.bytes,
                    executable: false,
                }),
        );
        // Named by libc too: two vmtest runs of one checkout (`--libc glibc` and `--libc
        // musl` started at once) boot the same kernels, each with its own loader.
        let initramfs = work_dir().join(format!("{}-{libc}.cpio", k.release));
        atomic::write(&initramfs, &cpio::newc(&members))?;
        plans.push((
            *k,
            vmlinuz,
            initramfs,
            bucket,
            version,
            modules.absent,
            agent_here,
        ));
    }
    let accel = match o.accel {
        Accel::Auto => probe_kvm(arch, &plans[0].1, &plans[0].2),
        chosen => chosen,
    };
    if !o.json {
        eprintln!("vmtest: accelerator {}", accel.qemu_name());
    }
    let results: Mutex<Vec<KernelOutcome>> = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..o.jobs.max(1).min(plans.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((k, vmlinuz, initramfs, bucket, version, absent, with_agent)) =
                    plans.get(i)
                else {
                    break;
                };
                let log = initramfs.with_extension("log");
                if !o.json {
                    eprintln!("vmtest: booting {} ({})", k.release, k.series);
                }
                match boot(
                    &k.release,
                    arch,
                    vmlinuz,
                    initramfs,
                    Deadline::of_cpu(Duration::from_secs(o.timeout)),
                    &log,
                    accel,
                ) {
                    Ok((how, console, seconds)) => {
                        let passes = judge::extract_reports(&console, judge::Reporter::Loader);
                        let modes = passes
                            .reports
                            .iter()
                            .map(|r| r.attach.to_string())
                            .collect();
                        let guest = judge::Guest {
                            collectors: &collectors,
                            counters: &counters,
                            accounting: &accounting,
                            kernel: version,
                            arch,
                            absent_modules: absent,
                        };
                        let mut objects = judge::judge_passes(&passes.reports, &guest);
                        let mut malformed = passes.malformed;
                        if *with_agent {
                            let agent = judge::extract_reports(&console, judge::Reporter::Agent);
                            if agent.reports.is_empty() && how == BootEnd::Reported {
                                malformed.push("kc-agent printed no report".into());
                            }
                            malformed.extend(agent.malformed);
                            objects.extend(
                                judge::judge_passes(&agent.reports, &guest).into_iter().map(
                                    |mut o| {
                                        o.kind = judge::AGENT_KIND.into();
                                        o
                                    },
                                ),
                            );
                        }
                        results.lock().expect("results").push(KernelOutcome {
                            series: k.series.to_string(),
                            release: k.release.clone(),
                            bucket: bucket.map(|b| b.to_string()),
                            seconds,
                            boot: how.clone(),
                            modes,
                            objects,
                            selection: installed::judge_selection(
                                &console,
                                version,
                                &buckets,
                                collectors.len(),
                            ),
                            absent_modules: absent.clone(),
                            malformed,
                            log,
                            console_tail: if how == BootEnd::Reported {
                                Vec::new()
                            } else {
                                judge::console_tail(&console, CONSOLE_TAIL)
                            },
                        });
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
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|r| r.series.parse::<Bucket>().ok());
    Ok((results, collectors))
}

/// The collectors of `names` (all when empty); an unknown name is an error listing them.
fn narrow(mut all: Vec<Collector>, names: &[String]) -> Result<Vec<Collector>> {
    if let Some(unknown) = names.iter().find(|n| !all.iter().any(|c| &c.name == *n)) {
        let known: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "--collector {unknown}: no such collector in collectors.toml (it has {})",
            known.join(", ")
        );
    }
    if !names.is_empty() {
        all.retain(|c| names.contains(&c.name));
    }
    Ok(all)
}

/// Refuses an executable for an `arch` guest that is another architecture's, or dynamically
/// linked where `must_be_static` (the initramfs has no libc).
fn guest_executable(name: &str, bytes: &[u8], arch: Arch, must_be_static: bool) -> Result<()> {
    let made_for = host::executable_arch(bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if made_for != arch {
        bail!(
            "{name} is an {made_for} executable, and the guest is {arch}: it would not run there"
        );
    }
    if must_be_static && !host::is_static_executable(bytes).map_err(anyhow::Error::msg)? {
        bail!("{name} is dynamically linked; it cannot run in the initramfs");
    }
    Ok(())
}

/// How many (kernel, object) checks failed, counting a kernel that never reported as one.
pub fn failures(results: &[KernelOutcome]) -> usize {
    results
        .iter()
        .map(|r| {
            usize::from(
                r.boot != BootEnd::Reported
                    || r.objects.is_empty()
                    || r.modes.len() != AttachMode::ALL.len(),
            ) + r.objects.iter().filter(|o| o.verdict == "failed").count()
                + r.selection.len()
                + r.malformed.len()
        })
        .sum()
}

/// Prints the kernel x collector table (or JSON) and returns how many checks failed.
pub fn report(results: &[KernelOutcome], collectors: &[Collector], json: bool) -> Result<usize> {
    let failures = failures(results);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "failures": failures, "kernels": results })
            )?
        );
        return Ok(failures);
    }
    print!("{}", judge::table(results, collectors));
    println!();
    for r in results {
        println!(
            "{:<6} {:<28} {:>6.1} s  {}",
            r.series, r.release, r.seconds, r.boot
        );
        for o in r.objects.iter().filter(|o| o.verdict == "failed") {
            println!(
                "    {:<24} {:<10} {} {}",
                o.object, o.attach, o.verdict, o.detail
            );
        }
        for p in r.selection.iter().chain(&r.malformed) {
            println!("    {p}");
        }
        for line in &r.console_tail {
            println!("    | {line}");
        }
        for (m, why) in &r.absent_modules {
            println!("    module {m} absent ({why}): its counters were not judged");
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host's own programs are amd64's and dynamic: an arm64 guest gets none of them.
    #[test]
    fn a_run_narrowed_to_collectors_keeps_them_and_refuses_unknown_names() {
        let all = crate::collectors::load_from(&paths::project_root()).unwrap();
        let vfs = narrow(all.clone(), &["vfs".into()]).unwrap();
        assert_eq!(vfs.len(), 1);
        assert_eq!(narrow(all.clone(), &[]).unwrap().len(), all.len());
        let e = narrow(all, &["vsf".into()]).unwrap_err().to_string();
        assert!(e.contains("--collector vsf: no such collector"), "{e}");
    }

    #[test]
    fn an_arm64_guest_is_never_handed_another_architectures_executable() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let host = host::host_arch().unwrap();
        let other = if host == Arch::Amd64 {
            Arch::Arm64
        } else {
            Arch::Amd64
        };
        let e = guest_executable("kc-loader", &sh, other, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "is an {host} executable, and the guest is {other}"
            )),
            "{e}"
        );
        let e = guest_executable("init", &sh, host, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dynamically linked"), "{e}");
        guest_executable("kc-select", &sh, host, false).unwrap();
        assert!(guest_executable("x", b"#!/bin/sh\n", host, false).is_err());
    }
}
