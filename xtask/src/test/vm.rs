//! The kernels under qemu (the whole amd64 matrix and arm64's oldest and newest, whose cells
//! `arm64.rs` builds) and the release workflow under act.

use std::sync::Arc;

use anyhow::Result;
use kc_common::Libc;

use super::Verdict;
use crate::cli::LibcChoice;
use crate::host;
use crate::vmtest::GuestSlots;

/// The whole amd64 matrix, and arm64's oldest and newest kernels beside it: every kernel,
/// object, attach family and selection, with the musl cells' own static loader when Docker
/// built them (else the host's libc and a loader compiled here).
///
/// Both architectures' guests share [`GUESTS_AT_ONCE`] places: apart, arm64's newest guest
/// (kc-loader and kc-agent, 156 s) ran alone on one core for 108 s after its oldest reported
/// (vmtest 420 s, then arm64's guests 170 s; side by side 443 s).
pub fn vmtest() -> Result<Verdict> {
    let slots = Arc::new(GuestSlots::new(GUESTS_AT_ONCE));
    // Both join before either boots: neither takes the other's share while it stages.
    let amd64_run = slots.join(GUESTS_AT_ONCE - ARM64_SHARE);
    let arm64_run = slots.join(ARM64_SHARE);
    let arm64_kernels = super::arm64::oldest_and_newest()?;
    let arm64_slots = (slots.clone(), arm64_run);
    let arm64 = std::thread::spawn(move || {
        spanning(kc_common::Arch::Arm64, arm64_kernels, 400, arm64_slots)
    });
    let amd64 = spanning(kc_common::Arch::Amd64, Vec::new(), 240, (slots, amd64_run));
    let arm64 = arm64
        .join()
        .map_err(|_| anyhow::anyhow!("the arm64 guests' thread panicked"))?;
    match (amd64, arm64) {
        (Ok(()), Ok(())) => Ok(Verdict::Passed),
        (Err(e), Ok(())) => Err(e.context("amd64")),
        (Ok(()), Err(e)) => Err(e.context("arm64")),
        (Err(a), Err(b)) => anyhow::bail!("amd64: {a:#}\narm64: {b:#}"),
    }
}

/// Guests booted at once. Under TCG a guest alone keeps a core 99 % busy, yet waits some of
/// its time (grace periods, timers) with the emulated CPU idle, so more guests than cores
/// fill the cores: the whole amd64 matrix took 7:35 with 2 guests at once, 5:54 with 3 and
/// 4:46 with 4 (190 % of the 2 cores).
const GUESTS_AT_ONCE: usize = 4;

/// The places kept for arm64's two guests while they boot: one after the other (the newest
/// runs kc-loader and kc-agent, 266 s beside three amd64 guests) they take about as long as
/// the amd64 matrix on the other three, and the amd64 guests take their place after them.
/// Shared without a share, arm64's guests waited for the amd64 guests that took every place
/// first, and the run ended with arm64's newest alone (532 s; a fixed split of 3 and 1 that
/// gives no place back 467 s; this 443 s).
const ARM64_SHARE: usize = 1;

/// vmtest of `arch`'s `kernels` (empty: all) in its place among the shared `slots`, with the
/// musl cells' own static loader when Docker built them (else the host's libc and a loader
/// compiled here).
pub fn spanning(
    arch: kc_common::Arch,
    kernels: Vec<kc_common::Bucket>,
    timeout: u64,
    slots: (Arc<GuestSlots>, usize),
) -> Result<()> {
    let libc = if crate::image::daemon_answers() {
        Libc::Musl
    } else {
        host::host_libc()
    };
    crate::vmtest::run(crate::vmtest::VmtestOptions {
        kernels,
        collectors: Vec::new(),
        // A worker per place: the places, not the workers, bound the guests of both runs.
        jobs: GUESTS_AT_ONCE,
        agent: None,
        timeout,
        accel: crate::vmtest::Accel::Auto,
        libc: Some(LibcChoice::from(libc)),
        arch,
        json: false,
        update_baseline: false,
        slots: Some(slots),
    })
}

/// The kernel each of the rehearsal's vmtest jobs boots, and the one bucket its cell jobs
/// build: the rehearsal proves the workflow's plumbing (jobs, outputs, artifacts, secrets,
/// publish). The kernels are proven by `vmtest` in the same run, every cell is
/// built in containers by `docker` and `arm64`, and on GitHub the jobs cover the whole matrix.
/// The oldest bucket: of the buckets, its guests report soonest on both architectures (amd64
/// 62 s against 7.3's 76 s, arm64 35.7 s against 81.4 s, measured in one suite run).
const REHEARSAL_KERNEL: &str = "5.10";

/// The collector each of the rehearsal's vmtest jobs loads and judges: one whose CO-RE
/// object has all three families and whose legacy objects both modes, so every pass and the
/// selection rule still run; the other collectors are proven by `vmtest`.
const REHEARSAL_COLLECTOR: &str = "vfs";

/// The release workflow itself, end to end under act. Not from inside a workflow (ci.yml's
/// test job excludes it): under act a rehearsal does not rehearse itself, and on GitHub the
/// release workflow runs for real.
pub fn rehearsal() -> Result<Verdict> {
    for inside in ["ACT", "GITHUB_ACTIONS"] {
        if std::env::var_os(inside).is_some_and(|v| !v.is_empty()) {
            anyhow::bail!(
                "the release rehearsal cannot run inside a workflow ({inside} is set): leave it out with `--exclude rehearsal`, as ci.yml does"
            );
        }
    }
    let workflow = crate::workflows::WorkflowName::Release;
    if let Some(why) = crate::rehearse::cannot_run_offline(&workflow.file())? {
        return Ok(Verdict::Skipped(why));
    }
    crate::rehearse::run(crate::rehearse::RehearseOptions {
        workflow,
        tag: "v0.0.0-rehearsal".into(),
        // Its three vmtest jobs (one guest each) at once.
        concurrent_jobs: 3,
        only: vec![],
        vmtest_kernels: vec![REHEARSAL_KERNEL.parse()?],
        cell_buckets: vec![REHEARSAL_KERNEL.parse()?],
        vmtest_collectors: vec![REHEARSAL_COLLECTOR.into()],
    })?;
    Ok(Verdict::Passed)
}
