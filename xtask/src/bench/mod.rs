//! `cargo xtask bench ...`: each benchmark runs ours and its baseline side by side in one run.

mod arch_build;
mod build;
mod collect;
mod consumers;
mod docker;
mod exporter;
mod fetch;
mod install;
mod memory;
pub(crate) mod overhead;
mod package;
mod stream;
mod verify;
mod vmtest;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cold fetch+unpack of one bucket's headers vs `apt-get download` + `dpkg-deb -x`; warm fetch
    Fetch(fetch::FetchBench),
    /// `verify` of every object under artifacts/ vs `bpftool btf dump file` of each; type counts must agree
    Verify(verify::VerifyBench),
    /// Packaging of the full release vs GNU `tar --sort=name ... | xz -6` of the same files
    Package(package::PackageBench),
    /// vmtest: each kernel's time to boot and report (one at a time), then the matrix with --jobs 2
    Vmtest(vmtest::VmtestBench),
    /// kc-install of the release from a loopback server vs curl + sha256sum -c + minisign -V + tar -x
    Install(install::InstallBench),
    /// One bucket built our way (headers package, parallel, cached) vs upstream's (full kernel
    /// source, `make defconfig scripts prepare`, then the same compiles); and a no-op rebuild
    Build(build::BuildBench),
    /// The cold build of one bucket for arm64 next to the same bucket for amd64
    ArchBuild(arch_build::ArchBuildBench),
    /// The full matrix (every bucket x both libcs) in our two images, cold and warm, vs one
    /// image per (kernel, libc) with the kernel baked in, built from scratch
    Docker(docker::DockerBench),
    /// The Rust consumer (kc-agent, aya) vs kc-loader (libbpf): every CO-RE object attached
    /// and detached on this host, and the families each chose
    Consumers(consumers::ConsumersBench),
    /// The kernel's memlock of every CO-RE object's maps in guests with 1, 2, 4 and 8 CPUs and
    /// on this host, at two table sizes; a linear model per object checked against each point
    /// and projected to 64-512 CPUs
    Memory(memory::MemoryBench),
    /// One collection of every CO-RE object's per-application tables, full at 4,096 and
    /// 65,536 rows: kc-loader and kc-agent, batched reads vs one key at a time
    Collect(collect::CollectBench),
    /// A scrape of kc-exporter with its tables full (4096 live processes) vs reading the same
    /// processes' counts from /proc: time, CPU, RSS, series
    Exporter(exporter::ExporterBench),
    /// A flood of short-lived processes: their exits and final rows through the ring buffer
    /// (kc-loader --streams on) vs left in the per-application table (--streams off)
    Stream(stream::StreamBench),
    /// ns each collector adds per event of a workload that hits its main event: no program vs
    /// each attach family vs auto, on this host and in a guest
    Overhead(overhead::OverheadBench),
}

pub fn run(c: Command) -> Result<()> {
    match c {
        Command::Fetch(o) => fetch::run(o),
        Command::Build(o) => build::run(o),
        Command::ArchBuild(o) => arch_build::run(o),
        Command::Verify(o) => verify::run(o),
        Command::Package(o) => package::run(o),
        Command::Vmtest(o) => vmtest::run(o),
        Command::Install(o) => install::run(o),
        Command::Docker(o) => docker::run(o),
        Command::Overhead(o) => overhead::run(o),
        Command::Consumers(o) => consumers::run(o),
        Command::Memory(o) => memory::run(o),
        Command::Collect(o) => collect::run(o),
        Command::Exporter(o) => exporter::run(o),
        Command::Stream(o) => stream::run(o),
    }
}

/// The median of a non-empty sample.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of a non-empty sample and its median absolute deviation from it.
pub fn median_mad(v: &[f64]) -> (f64, f64) {
    let m = median(v.to_vec());
    (m, median(v.iter().map(|x| (x - m).abs()).collect()))
}

/// `sync`: writes back dirty pages, so that a timed step does not pay for earlier ones'.
pub fn flush_page_cache_writes() -> Result<()> {
    let sh = crate::process::shell();
    crate::process::output(xshell::cmd!(sh, "sync"))?;
    Ok(())
}
