//! One guest under qemu: its machine, its NVMe drives, and how long it may run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kc_common::Arch;
use xshell::cmd;

use super::{work_dir, Accel, DONE};
use crate::process;

/// How long a guest that printed [`DONE`] may take to power off before it is stopped.
const POWER_OFF_GRACE: Duration = Duration::from_secs(30);

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

/// How qemu emulates one architecture's guest: its program, machine, console and the kernel
/// parameters it needs there.
struct Machine {
    qemu: &'static str,
    args: Vec<&'static str>,
    console: &'static str,
    params: &'static str,
}

fn machine(arch: Arch, accel: Accel) -> Machine {
    let kvm = accel == Accel::Kvm;
    match arch {
        Arch::Amd64 => Machine {
            qemu: "qemu-system-x86_64",
            args: vec!["-cpu", if kvm { "host" } else { "max" }],
            console: "ttyS0",
            // Early boot checks that the IO-APIC delivers timer interrupts within a few
            // ticks of a calibrated busy loop; an emulated guest starved of the host's cores
            // misses them and panics ("IO-APIC + timer doesn't work!"). The release
            // rehearsal lost two amd64 guests to it at once; qemu's timer is wired as the
            // kernel expects, so the check proves nothing here.
            params: "no_timer_check",
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
            params: "",
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

/// How much of qemu's own stderr a guest's log keeps (its end).
const QEMU_STDERR_KEPT: usize = 64 << 10;

/// How a guest's boot ended.
#[derive(Debug, Clone, PartialEq)]
pub enum BootEnd {
    /// It printed its last report (and powered off, or was stopped after the grace).
    Reported,
    /// It was killed hung, having used `what` (processor or real time), `seconds` in all.
    Timeout { what: String, seconds: f64 },
    /// It ended without its report (qemu's exit `status`): the kernel `release` died or
    /// never ran the loader.
    Silent {
        release: String,
        status: Option<String>,
    },
}

impl std::fmt::Display for BootEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootEnd::Reported => f.write_str("reported"),
            BootEnd::Timeout { what, seconds } => {
                write!(f, "timeout after {what} ({seconds:.0} s in all)")
            }
            BootEnd::Silent {
                release,
                status: Some(s),
            } => write!(
                f,
                "no report ({s}); kernel {release} died or never ran the loader"
            ),
            BootEnd::Silent {
                release,
                status: None,
            } => write!(f, "no report; kernel {release} never ran the loader"),
        }
    }
}

/// In JSON as it reads in the table.
impl serde::Serialize for BootEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a guest runs on: its architecture, the accelerator, its CPUs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vm {
    pub arch: Arch,
    pub accel: Accel,
    pub cpus: u32,
}

impl Vm {
    /// A vmtest guest: one CPU (TCG emulates each CPU in a host thread, and the matrix boots
    /// several guests at once).
    pub fn one_cpu(arch: Arch, accel: Accel) -> Self {
        Vm {
            arch,
            accel,
            cpus: 1,
        }
    }
}

/// Boots `vmlinuz` (the kernel `release`) on `vm` with the initramfs; returns how it ended,
/// the console, and the seconds it took.
pub(crate) fn boot(
    release: &str,
    vm: Vm,
    vmlinuz: &Path,
    initramfs: &Path,
    deadline: Deadline,
    log: &Path,
) -> Result<(BootEnd, String, f64)> {
    let Vm { arch, accel, cpus } = vm;
    let t = Instant::now();
    let m = machine(arch, accel);
    let drives = make_drives(log)?;
    // Expedited RCU grace periods: detaching a tracepoint or probe waits for one, and under
    // emulation a normal one costs tens of milliseconds. No speculative-execution
    // mitigations: the guest has nothing to protect, and under TCG every return thunk and
    // IBRS write is emulated (5.10's boot to report: 105.6 s with them, 57.6 s without; the
    // verifier's trial loads alone 11.3 s and 4.5 s).
    let append = format!(
        "console={} quiet loglevel=1 panic=-1 rdinit=/init rcupdate.rcu_expedited=1 mitigations=off {}",
        m.console, m.params
    )
    .trim_end()
    .to_string();
    let mut child = Command::new(m.qemu)
        .args(["-accel", accel.qemu_name()])
        .args(&m.args)
        .args([
            "-m",
            "512M",
            "-smp",
            &cpus.to_string(),
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
    // qemu's own messages (why it stopped, a signal it got): read as they come, so a full
    // pipe never stalls it, and kept after the console.
    let errors = {
        let mut stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                s.extend_from_slice(&chunk[..n]);
                // Its last words are what matter; a qemu that repeats itself keeps no more.
                if s.len() > QEMU_STDERR_KEPT {
                    s.drain(..s.len() - QEMU_STDERR_KEPT);
                }
            }
            s
        })
    };
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
    let mut console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let errors = errors.join().unwrap_or_default();
    for line in String::from_utf8_lossy(&errors).lines() {
        console.push_str(&format!("\nqemu: {line}"));
    }
    drop(drives);
    std::fs::write(log, &console).with_context(|| format!("writing {}", log.display()))?;
    let how = match (status, console.contains(DONE)) {
        (Err(what), _) => BootEnd::Timeout {
            what,
            seconds: t.elapsed().as_secs_f64(),
        },
        (Ok(_), true) => BootEnd::Reported,
        (Ok(status), false) => BootEnd::Silent {
            release: release.to_string(),
            status: status.map(|s| s.to_string()),
        },
    };
    Ok((how, console, t.elapsed().as_secs_f64()))
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
    // Whether KVM works does not change while the host runs: one probe per host boot, kept
    // in the host's cache, not the checkout (clean clones and the rehearsal's jobs each spent
    // the probe's 20 s where KVM hangs).
    let memo = crate::paths::cache_dir().join("kvm-probe");
    let host_boot = crate::host::boot_id();
    if let Some(known) = remembered_accel(
        &std::fs::read_to_string(&memo).unwrap_or_default(),
        &host_boot,
    ) {
        return known;
    }
    let log = initramfs.with_extension("kvm-probe.log");
    let accel = match boot(
        "the KVM probe",
        Vm::one_cpu(arch, Accel::Kvm),
        vmlinuz,
        initramfs,
        // A KVM guest boots in seconds; one that hangs (nested virtualization) is given up
        // on quickly, whether it spins or sleeps.
        Deadline {
            cpu: Duration::from_secs(20),
            wall: Duration::from_secs(20),
        },
        &log,
    ) {
        Ok((BootEnd::Reported, _, _)) => Accel::Kvm,
        _ => Accel::Tcg,
    };
    if !host_boot.is_empty() {
        let _ = crate::atomic::write(
            &memo,
            format!("{host_boot} {}\n", accel.qemu_name()).as_bytes(),
        );
    }
    accel
}

/// The probe's answer remembered for this host `boot` (the memo's text: boot id, then the
/// accelerator), if it is this boot's.
fn remembered_accel(memo: &str, boot: &str) -> Option<Accel> {
    match memo.split_whitespace().collect::<Vec<_>>()[..] {
        [b, "kvm"] if b == boot && !boot.is_empty() => Some(Accel::Kvm),
        [b, "tcg"] if b == boot && !boot.is_empty() => Some(Accel::Tcg),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_probe_is_remembered_for_its_host_boot_only() {
        assert_eq!(remembered_accel("b1 tcg\n", "b1"), Some(Accel::Tcg));
        assert_eq!(remembered_accel("b1 kvm\n", "b1"), Some(Accel::Kvm));
        assert_eq!(remembered_accel("b1 tcg\n", "b2"), None);
        assert_eq!(remembered_accel("", ""), None);
        assert_eq!(remembered_accel(" tcg", ""), None);
        assert_eq!(remembered_accel("b1 maybe", "b1"), None);
    }

    #[test]
    fn how_a_boot_ended_reads_the_same_in_the_table_and_in_json() {
        let died = BootEnd::Silent {
            release: "6.16.12".into(),
            status: Some("exit status: 0".into()),
        };
        assert_eq!(
            died.to_string(),
            "no report (exit status: 0); kernel 6.16.12 died or never ran the loader"
        );
        assert_eq!(
            serde_json::to_value(&died).unwrap(),
            serde_json::json!(died.to_string())
        );
        let hung = BootEnd::Timeout {
            what: "300 s of processor time".into(),
            seconds: 412.4,
        };
        assert_eq!(
            hung.to_string(),
            "timeout after 300 s of processor time (412 s in all)"
        );
        assert_eq!(serde_json::to_value(BootEnd::Reported).unwrap(), "reported");
    }

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
}
