//! `cargo xtask vmtest`: boots each kernel of the matrix under qemu with an initramfs that
//! holds a static loader, the release installed by kc-install (CO-RE and every bucket;
//! [`installed`]) and a workload. In the guest the release's own kc-select chooses the objects
//! (with the kernel's BTF, and as for a kernel without it: every CO-RE object and the legacy
//! objects of the kernel's bucket); the loader runs them once per attach mode (each family
//! forced, then auto) in that one boot. Reported per (kernel, object, mode): whether it loaded,
//! attached what the kernel has, and counted; and per kernel whether the choice followed the
//! rule.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    /// Boot these series only (repeatable); default: every kernel of the matrix
    #[arg(long = "kernel", value_name = "SERIES")]
    pub kernels: Vec<Bucket>,
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

mod expect;
pub mod installed;
mod judge;
mod modules;

pub use judge::{unobserved as unobserved_events, ObjectOutcome};

const BEGIN: &str = "KC-VMTEST-BEGIN";
const END: &str = "KC-VMTEST-END";
/// Printed once every attach mode has reported.
const DONE: &str = "KC-VMTEST-DONE";
/// How long a guest that printed [`DONE`] may take to power off before it is stopped.
const POWER_OFF_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct KernelOutcome {
    pub series: String,
    pub release: String,
    pub bucket: Option<String>,
    pub seconds: f64,
    /// `reported`, `timeout`, `no report` (the guest died or never ran the loader)
    pub boot: String,
    /// The attach modes whose loader run reported.
    pub modes: Vec<String>,
    pub objects: Vec<ObjectOutcome>,
    /// Where kc-select's choices broke the rule (empty: they followed it).
    pub selection: Vec<String>,
    /// Modules counters.toml names that this kernel's packages lack (name → why): their
    /// counters are not judged here.
    pub absent_modules: std::collections::BTreeMap<String, String>,
    pub log: PathBuf,
}

pub(crate) fn work_dir() -> PathBuf {
    paths::project_root().join("target/kc-build/vmtest")
}

/// What a guest runs: the static loader (the release's recipe, without embedded objects: the
/// guests load objects from files), init, and the benchmark workload.
pub(crate) struct GuestBinaries {
    pub loader: PathBuf,
    pub init: PathBuf,
    pub workload: PathBuf,
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
    };
    if [&bins.loader, &bins.init, &bins.workload]
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

/// The guests' NVMe drives (the cloud kernels build NVMe in), `/dev/nvme<i>n1` in this
/// order: MiB, and the file system the host puts on it. Swap; block I/O; the two members of
/// the MD RAID1; ext4, xfs (300 MiB: mkfs.xfs's least) and btrfs for the filesystem
/// collector (formatting them here keeps mkfs out of the initramfs).
const DRIVES: [(u64, Option<&str>); 7] = [
    (48, None),
    (8, None),
    (8, None),
    (8, None),
    (16, Some("ext4")),
    (300, Some("xfs")),
    (128, Some("btrfs")),
];

fn drive_image(log: &Path, i: usize) -> PathBuf {
    log.with_extension(format!("nvme{i}.img"))
}

/// A guest's drive images, removed when the guest is done with them (however it ended).
struct Drives {
    log: PathBuf,
    args: Vec<String>,
}

impl Drop for Drives {
    fn drop(&mut self) {
        for i in 0..DRIVES.len() {
            let _ = std::fs::remove_file(drive_image(&self.log, i));
        }
    }
}

/// Creates the drive images beside `log` (sparse; formatted where [`DRIVES`] says), with
/// qemu's `-drive`/`-device` arguments for them.
fn make_drives(log: &Path) -> Result<Drives> {
    let sh = process::shell_in(&work_dir());
    let mut drives = Drives {
        log: log.to_path_buf(),
        args: Vec::new(),
    };
    for (i, (mib, fs)) in DRIVES.iter().enumerate() {
        let img = drive_image(log, i);
        let _ = std::fs::remove_file(&img);
        std::fs::File::create(&img)?.set_len(mib << 20)?;
        if let Some(fs) = fs {
            // -F/-f: the target is a file, not a device; -q: only errors.
            let force = if *fs == "ext4" { "-F" } else { "-f" };
            process::output(cmd!(sh, "mkfs.{fs} {force} -q {img}")).with_context(|| {
                format!("formatting vmtest's {fs} drive (run `cargo xtask setup`)")
            })?;
        }
        drives.args.extend([
            "-drive".to_string(),
            format!("file={},if=none,id=d{i},format=raw", img.display()),
            "-device".to_string(),
            format!("nvme,drive=d{i},serial=kc{i}"),
        ]);
    }
    Ok(drives)
}

/// How qemu emulates one architecture's guest: its program, machine and console.
struct Machine {
    qemu: &'static str,
    args: Vec<&'static str>,
    console: &'static str,
}

fn machine(arch: Arch, accel: Accel) -> Machine {
    let kvm = accel == Accel::Kvm;
    match arch {
        Arch::Amd64 => Machine {
            qemu: "qemu-system-x86_64",
            args: vec!["-cpu", if kvm { "host" } else { "max" }],
            console: "ttyS0",
        },
        // The `virt` board (PL011 UART, PCIe for the NVMe drives) boots a Debian arm64
        // `Image` directly. Under TCG, `-cpu max` would compute pointer authentication with
        // the architected QARMA cipher; qemu's implementation-defined one checks the same
        // instructions and is far cheaper to emulate (6.1's boot to init: 20.5 s, 12.7 s).
        Arch::Arm64 => Machine {
            qemu: "qemu-system-aarch64",
            args: vec![
                "-M",
                "virt",
                "-cpu",
                if kvm { "host" } else { "max,pauth-impdef=on" },
            ],
            console: "ttyAMA0",
        },
    }
}

/// How long a guest may run before it is killed as hung: `cpu` of processor time (what an
/// emulated guest needs is processor time, whatever else shares the cores: the release
/// rehearsal boots six guests beside the cell builds on two cores), and `wall` of real time
/// (a guest hung idle uses none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub cpu: Duration,
    pub wall: Duration,
}

impl Deadline {
    /// `--timeout`: that much processor time, and four times it in real time.
    pub fn of_cpu(cpu: Duration) -> Self {
        Self { cpu, wall: cpu * 4 }
    }

    /// What ran out, if anything, after `wall` of real time and `cpu` of the guest's time.
    fn passed(&self, wall: Duration, cpu: Option<Duration>) -> Option<String> {
        if cpu.is_some_and(|c| c > self.cpu) {
            Some(format!("{} s of processor time", self.cpu.as_secs()))
        } else if wall > self.wall {
            Some(format!("{} s", self.wall.as_secs()))
        } else {
            None
        }
    }
}

/// The processor time (user and system, all threads) process `pid` has used, from
/// `/proc/<pid>/stat`; `None` where it cannot be read.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of_stat(&stat)
}

/// utime and stime, fields 14 and 15 of a `stat` line, in the kernel's USER_HZ (100) ticks.
/// The command name (field 2) may hold spaces and parentheses: count from its last `)`.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Boots `vmlinuz` (the kernel `release`, of `arch`) with the initramfs; returns how it
/// ended, the console, and the seconds it took.
pub(crate) fn boot(
    release: &str,
    arch: Arch,
    vmlinuz: &Path,
    initramfs: &Path,
    deadline: Deadline,
    log: &Path,
    accel: Accel,
) -> Result<(String, String, f64)> {
    let t = Instant::now();
    let m = machine(arch, accel);
    let drives = make_drives(log)?;
    // Expedited RCU grace periods: detaching a tracepoint or probe waits for one, and under
    // emulation a normal one costs tens of milliseconds.
    let append = format!(
        "console={} quiet loglevel=1 panic=-1 rdinit=/init rcupdate.rcu_expedited=1",
        m.console
    );
    let mut child = Command::new(m.qemu)
        .args(["-accel", accel.qemu_name()])
        .args(&m.args)
        .args([
            "-m",
            "512M",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
        ])
        .args(&drives.args)
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} (run `cargo xtask setup`)", m.qemu))?;
    let mut stdout = child.stdout.take().expect("piped");
    // When the guest printed its last report: from then on only its power-off is left.
    let reported: Arc<OnceLock<Instant>> = Arc::default();
    let reader = {
        let reported = reported.clone();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                s.extend_from_slice(&chunk[..n]);
                let tail = &s[s.len().saturating_sub(n + DONE.len())..];
                if tail.windows(DONE.len()).any(|w| w == DONE.as_bytes()) {
                    let _ = reported.set(Instant::now());
                }
            }
            s
        })
    };
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Ok(Some(s));
        }
        // A guest that reported but does not power off (seen once, on 6.19 under heavy
        // load) has done everything asked of it.
        if reported
            .get()
            .is_some_and(|t| t.elapsed() > POWER_OFF_GRACE)
        {
            let _ = child.kill();
            let _ = child.wait();
            break Ok(None);
        }
        if let Some(what) = deadline.passed(t.elapsed(), cpu_time(child.id())) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(what);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    drop(drives);
    std::fs::write(log, &console).with_context(|| format!("writing {}", log.display()))?;
    let how = match (status, console.contains(DONE)) {
        (Err(what), _) => format!(
            "timeout after {what} ({:.0} s in all)",
            t.elapsed().as_secs_f64()
        ),
        (Ok(_), true) => "reported".into(),
        (Ok(Some(s)), false) => {
            format!("no report ({s}); kernel {release} died or never ran the loader")
        }
        (Ok(None), false) => format!("no report; kernel {release} never ran the loader"),
    };
    Ok((how, console, t.elapsed().as_secs_f64()))
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
    let collectors = collectors::load_from(&paths::project_root())?;
    let counters = expect::load(&paths::project_root())?;
    let wanted_modules = expect::modules(&counters);
    let tc = Toolchain::detect()?;
    let GuestBinaries {
        loader: host_loader,
        init,
        ..
    } = static_binaries(&tc, arch)?;
    let cells = paths::project_root().join("artifacts/cells");
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
        members.extend(release.iter().map(installed::Node::member));
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
                    let started_bare = ["init", "kc-loader"].contains(name);
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
        plans.push((*k, vmlinuz, initramfs, bucket, version, modules.absent));
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
                let Some((k, vmlinuz, initramfs, bucket, version, absent)) = plans.get(i) else {
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
                        let reports = judge::extract_reports(&console);
                        let modes = reports.iter().map(|(m, _)| m.to_string()).collect();
                        let objects = reports
                            .iter()
                            .flat_map(|(m, r)| {
                                judge::judge(r, *m, &collectors, &counters, version, arch, absent)
                            })
                            .collect();
                        results.lock().expect("results").push(KernelOutcome {
                            series: k.series.to_string(),
                            release: k.release.clone(),
                            bucket: bucket.map(|b| b.to_string()),
                            seconds,
                            boot: how,
                            modes,
                            objects,
                            selection: installed::judge_selection(
                                &console,
                                version,
                                &buckets,
                                collectors.len(),
                            ),
                            absent_modules: absent.clone(),
                            log,
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
                r.boot != "reported"
                    || r.objects.is_empty()
                    || r.modes.len() != AttachMode::ALL.len(),
            ) + r.objects.iter().filter(|o| o.verdict == "failed").count()
                + r.selection.len()
        })
        .sum()
}

/// KVM when /dev/kvm opens and a guest boots to its report with it within a short timeout
/// (nested virtualization can make KVM guests hang); TCG otherwise.
pub(crate) fn probe_kvm(arch: Arch, vmlinuz: &Path, initramfs: &Path) -> Accel {
    // KVM runs the host's own architecture only.
    if kc_common::host::host_arch().ok() != Some(arch)
        || std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
    {
        return Accel::Tcg;
    }
    let log = initramfs.with_extension("kvm-probe.log");
    match boot(
        "the KVM probe",
        arch,
        vmlinuz,
        initramfs,
        // A KVM guest boots in seconds; one that hangs (nested virtualization) is given up
        // on quickly, whether it spins or sleeps.
        Deadline {
            cpu: Duration::from_secs(20),
            wall: Duration::from_secs(20),
        },
        &log,
        Accel::Kvm,
    ) {
        Ok((how, _, _)) if how == "reported" => Accel::Kvm,
        _ => Accel::Tcg,
    }
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
        for p in &r.selection {
            println!("    {p}");
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

    #[test]
    fn a_guest_is_hung_when_it_used_its_processor_time_or_four_times_it_in_real_time() {
        let d = Deadline::of_cpu(Duration::from_secs(300));
        let s = Duration::from_secs;
        // Six guests on two cores: 900 s of real time, but only 290 s of processor time.
        assert_eq!(d.passed(s(900), Some(s(290))), None);
        assert_eq!(
            d.passed(s(400), Some(s(301))).as_deref(),
            Some("300 s of processor time")
        );
        // Hung idle, or its time unreadable: the real-time bound.
        assert_eq!(d.passed(s(1201), Some(s(3))).as_deref(), Some("1200 s"));
        assert_eq!(d.passed(s(1201), None).as_deref(), Some("1200 s"));
        assert_eq!(d.passed(s(1199), None), None);
    }

    #[test]
    fn processor_time_is_read_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 1234, stime 66 ticks.
        let stat =
            "4242 (qemu (x) a) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 66 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_time_of_stat(stat), Some(Duration::from_secs(13)));
        assert_eq!(cpu_time_of_stat("garbage"), None);
        // This process's own line reads.
        assert!(cpu_time(std::process::id()).is_some());
    }

    /// This host's own programs are amd64's and dynamic: an arm64 guest gets none of them.
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
