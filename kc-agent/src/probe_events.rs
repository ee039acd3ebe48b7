//! Return probes made in tracefs's `kprobe_events`, with room for the calls in flight.
//!
//! A kretprobe keeps one instance per call between entry and return; a call that finds the
//! pool empty goes unseen. Through the kprobe PMU (what aya attaches by) the kernel sizes the
//! pool itself: as many as the possible CPUs without CONFIG_PREEMPTION (5.10's Debian kernel),
//! at least 10 elsewhere, while every thread asleep in the probed function (a read of an
//! empty pipe, a fault waiting for storage) holds one. `kprobe_events` takes `r<maxactive>:`,
//! and `kprobe_profile` counts each probe's missed calls, reported with the runs the kernel
//! skipped. kc-loader does the same (`co-re/loader/kc_probe_events.c`); cilium/ebpf offers it
//! as `RetprobeMaxActive`.

use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Our events' group: events are `kc_<pid>_<n>`.
const GROUP: &str = "kc_agent";
/// The kernel refuses more (KRETPROBE_MAXACTIVE_MAX).
const MAXACTIVE_LIMIT: u32 = 4096;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Calls in flight a return probe follows on a host with `possible_cpus` CPUs: 8 per CPU and
/// never fewer than 128 (~64 bytes each on 5.10), as kc-loader.
pub fn maxactive(possible_cpus: usize) -> u32 {
    let want = u32::try_from(possible_cpus.saturating_mul(8)).unwrap_or(u32::MAX);
    want.clamp(128, MAXACTIVE_LIMIT)
}

/// The `kprobe_events` line that makes a return probe named `event` on `at` (a function's name,
/// or its address as `0x...`).
fn definition(maxactive: u32, event: &str, at: &str) -> String {
    format!("r{maxactive}:{GROUP}/{event} {at}")
}

/// The missed calls of `event` in `kprobe_profile` (`  <event> <hits> <missed>` lines).
fn missed_in_profile(profile: &str, event: &str) -> Option<u64> {
    profile.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == event).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// The pid and number of one of our events on a `kprobe_events` line
/// (`r128:kc_agent/kc_<pid>_<n> vfs_read`).
fn ours(line: &str) -> Option<(i32, u32)> {
    let (_, rest) = line.split_once(&format!(":{GROUP}/kc_"))?;
    let name = rest.split_whitespace().next()?;
    let (pid, n) = name.split_once('_')?;
    Some((pid.parse().ok()?, n.parse().ok()?))
}

/// Removes the events of kc-agents that are gone (killed before they could remove them).
pub fn sweep(tracefs: &Path) {
    let Ok(events) = std::fs::read_to_string(tracefs.join("kprobe_events")) else {
        return;
    };
    for (pid, n) in events.lines().filter_map(ours) {
        // SAFETY: signal 0 sends nothing; it asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = append(tracefs, &format!("-:{GROUP}/kc_{pid}_{n}"));
        }
    }
}

/// A program attached at a function's return through a `kprobe_events` probe; dropping it
/// detaches the program and removes the probe.
pub struct ReturnProbeEvent {
    event: Option<OwnedFd>,
    tracefs: PathBuf,
    name: String,
}

fn append(tracefs: &Path, line: &str) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(tracefs.join("kprobe_events"))?
        .write_all(line.as_bytes())
}

impl ReturnProbeEvent {
    /// Makes the probe at `at` (a name, or `0x` and an address) and attaches `prog` to it.
    pub fn attach(
        prog: BorrowedFd<'_>,
        tracefs: &Path,
        at: &str,
        maxactive: u32,
    ) -> io::Result<ReturnProbeEvent> {
        let name = format!(
            "kc_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        append(tracefs, &definition(maxactive, &name, at))?;
        // Made: from here a failure still removes it (Drop).
        let mut probe = ReturnProbeEvent {
            event: None,
            tracefs: tracefs.to_path_buf(),
            name,
        };
        let id_file = tracefs
            .join("events")
            .join(GROUP)
            .join(&probe.name)
            .join("id");
        let id = std::fs::read_to_string(&id_file)?
            .trim()
            .parse::<u64>()
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", id_file.display()),
                )
            })?;
        probe.event = Some(crate::sys::tracepoint_event(prog, id)?);
        Ok(probe)
    }

    /// The calls it missed (its pool was empty), as `kprobe_profile` says.
    pub fn missed(&self) -> Option<u64> {
        let profile = std::fs::read_to_string(self.tracefs.join("kprobe_profile")).ok()?;
        missed_in_profile(&profile, &self.name)
    }
}

impl Drop for ReturnProbeEvent {
    fn drop(&mut self) {
        // The perf event first: the kernel refuses to remove a probe still in use.
        drop(self.event.take());
        let _ = append(&self.tracefs, &format!("-:{GROUP}/{}", self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_grows_with_the_cpus_within_the_kernels_bound() {
        assert_eq!(maxactive(1), 128);
        assert_eq!(maxactive(16), 128);
        assert_eq!(maxactive(64), 512);
        assert_eq!(maxactive(256), 2048);
        assert_eq!(maxactive(4096), 4096);
    }

    #[test]
    fn only_our_groups_events_are_ours() {
        assert_eq!(
            ours("r128:kc_agent/kc_812_3 0xffffffff81234560"),
            Some((812, 3))
        );
        assert_eq!(ours("r:kc_agent/kc_812_3 vfs_read"), Some((812, 3)));
        assert_eq!(ours("r128:kc_loader/kc_812_3 vfs_read"), None);
        assert_eq!(ours("p:kprobes/kc_812_3 vfs_read"), None);
        assert_eq!(ours("r128:kc_agent/kc_x_3 vfs_read"), None);
    }

    #[test]
    fn a_probe_is_defined_and_its_misses_read_by_name() {
        assert_eq!(
            definition(128, "kc_7_0", "0xffffffff81234560"),
            "r128:kc_agent/kc_7_0 0xffffffff81234560"
        );
        let profile =
            "  kc_7_0                                   1520               3\n  kc_7_1   9 0\n";
        assert_eq!(missed_in_profile(profile, "kc_7_0"), Some(3));
        assert_eq!(missed_in_profile(profile, "kc_7_1"), Some(0));
        assert_eq!(missed_in_profile(profile, "kc_7_2"), None);
    }
}
