//! `cargo xtask vmtest`: boots each kernel of the matrix under qemu with an initramfs that
//! holds a static loader, the release installed by kc-install (CO-RE and every bucket;
//! [`installed`]) and a workload. In the guest the release's own kc-select chooses the objects
//! (with the kernel's BTF, and as for a kernel without it: every CO-RE object and the legacy
//! objects of the kernel's bucket); the loader runs them once per attach mode (each family
//! forced, then auto) in that one boot. Reported per (kernel, object, mode): whether it loaded,
//! attached what the kernel has, and counted; and per kernel whether the choice followed the
//! rule.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::{Arch, AttachMode, Bucket};
use serde::Serialize;
use sha2::{Digest, Sha256};

use xshell::cmd;

use crate::cli::LibcChoice;
use crate::collectors::Collector;
use crate::compile::loader;
use crate::compile::toolchain::{LoaderToolchain, Toolchain};
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
    /// Record this run's verifier figures of every program as the baseline
    /// (`verifier-baseline.json`) for the kernels it booted, instead of holding them to it
    #[arg(long)]
    pub update_baseline: bool,
    /// The places this run's guests share with other runs of this process (the suite boots
    /// two architectures' runs side by side), and this run's place in them
    /// ([`places::GuestSlots::join`]): each of the `jobs` workers boots a guest once it holds
    /// a place; `None`: `jobs` alone bounds this run's guests
    #[arg(skip)]
    pub slots: Option<(std::sync::Arc<GuestSlots>, usize)>,
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

mod dns_servers;
pub(crate) mod expect;
pub(crate) mod exporter;
mod flows;
pub mod installed;
mod judge;
mod modules;
mod places;
mod qemu;
mod run;
mod streams;
mod verifier;

pub use places::GuestSlots;
pub(crate) use qemu::{boot, probe_kvm, BootEnd, Deadline, Vm};
pub use run::execute;

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
    /// What kc-loader or kc-agent left in the kernel once they exited (probes in
    /// `kprobe_events`).
    pub leftovers: Vec<String>,
    /// Modules counters.toml names that this kernel's packages lack (name → why): their
    /// counters are not judged here.
    pub absent_modules: std::collections::BTreeMap<String, String>,
    pub log: PathBuf,
    /// Where the guest did not report: the last lines of its console.
    pub console_tail: Vec<String>,
    /// What the verifier reported of each program that loaded (`object/program`).
    pub verifier: verifier::Costs,
    /// Where the verifier's figures broke the baseline or neared the kernel's limit.
    pub verifier_failures: Vec<String>,
    /// Programs the baseline has no figures of on this kernel.
    pub verifier_unrecorded: usize,
    /// Each object's load time (ms; the auto pass's).
    pub load_ms: std::collections::BTreeMap<String, f64>,
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
    /// `bench collect`'s workload: fills its parent's per-application tables.
    pub fill_tables: PathBuf,
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
        ("kc-fill-tables", root.join("co-re/tests/kc-fill-tables.c")),
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
        fill_tables: dir.join("kc-fill-tables"),
    };
    if [
        &bins.loader,
        &bins.init,
        &bins.workload,
        &bins.accounting,
        &bins.fill_tables,
    ]
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
        let (mut results, collectors) = execute(&o, libc)?;
        hold_to_baseline(&o, &mut results)?;
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

/// Holds each kernel's verifier figures to the repository's baseline, after recording them
/// there when `--update-baseline` asks.
fn hold_to_baseline(o: &VmtestOptions, results: &mut [KernelOutcome]) -> Result<()> {
    let root = paths::project_root();
    let mut baseline = verifier::Baseline::load(&root)?;
    if o.update_baseline {
        baseline.record(o.arch, results);
        baseline.save(&root)?;
        if !o.json {
            eprintln!(
                "vmtest: recorded the verifier's figures of {} kernels in {}",
                results.iter().filter(|r| !r.verifier.is_empty()).count(),
                verifier::BASELINE
            );
        }
    }
    for r in results.iter_mut() {
        let (failures, unrecorded) = baseline.judge(o.arch, &r.series, &r.verifier);
        r.verifier_failures.extend(failures);
        r.verifier_unrecorded = unrecorded;
    }
    Ok(())
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
                + r.leftovers.len()
                + r.verifier_failures.len()
        })
        .sum()
}

/// One kernel's verifier and load figures, in a line.
fn verifier_line(r: &KernelOutcome) -> String {
    let most = r.verifier.iter().max_by_key(|(_, v)| v.insns);
    let slowest = r.load_ms.iter().max_by(|a, b| a.1.total_cmp(b.1));
    format!(
        "verifier: {} programs{}{}; load {:.0} ms in all{}",
        r.verifier.len(),
        most.map_or(String::new(), |(p, v)| format!(
            ", most instructions {p} {} of {}",
            v.insns, v.limit
        )),
        if r.verifier_unrecorded > 0 {
            format!(", {} without a baseline", r.verifier_unrecorded)
        } else {
            String::new()
        },
        r.load_ms.values().sum::<f64>(),
        slowest.map_or(String::new(), |(o, ms)| format!(", slowest {o} {ms:.0} ms"))
    )
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
        for p in (r.selection.iter())
            .chain(&r.malformed)
            .chain(&r.leftovers)
            .chain(&r.verifier_failures)
        {
            println!("    {p}");
        }
        println!("    {}", verifier_line(r));
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
