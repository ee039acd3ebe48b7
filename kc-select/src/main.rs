//! `kc-select`: prints, for the running kernel, the kernel-collector object each collector
//! should load from an installed release (CO-RE when the kernel has BTF and the object loads,
//! else the legacy object of the kernel's bucket), so that an agent or a service unit can load
//! them without reimplementing the rule:
//!
//!     kc-loader $(kc-select --paths)

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use kc_common::select::{Kind, LegacyMode};
use kc_select::{default_release, run, text, Options};

#[derive(Debug, Parser)]
#[command(
    name = "kc-select",
    version,
    about = "Choose each collector's object for the running kernel from an installed kernel-collector release"
)]
struct Cli {
    /// The installed release; default: the one this program belongs to, else
    /// /usr/libexec/kernel-collector/current
    #[arg(long)]
    release: Option<PathBuf>,
    /// Kernel release to choose for (as `uname -r` prints it); default: the running kernel's
    #[arg(long)]
    kernel: Option<String>,
    /// The kernel's BTF; a path that does not exist chooses as for a kernel without BTF
    #[arg(long, default_value = kc_common::host::KERNEL_BTF)]
    btf: PathBuf,
    /// Which legacy object: entry (entry probes only, cheapest) or return (also errors and sizes)
    #[arg(long, default_value_t = LegacyMode::default())]
    legacy_mode: LegacyMode,
    /// The loader that asks the kernel whether each CO-RE object loads; default: the release's
    #[arg(long)]
    loader: Option<PathBuf>,
    /// Do not ask the kernel: choose CO-RE on BTF alone
    #[arg(long)]
    no_trial: bool,
    /// Choose for this collector only (repeatable; default: every collector the release
    /// offers): the trial loads these objects alone
    #[arg(long = "collector", value_name = "NAME")]
    collectors: Vec<String>,
    /// Print the chosen objects' paths only, one per line
    #[arg(long, conflicts_with = "json")]
    paths: bool,
    #[arg(long)]
    json: bool,
}

fn main() {
    if let Err(e) = main_() {
        eprintln!("kc-select: error: {e:#}");
        std::process::exit(1);
    }
}

fn main_() -> Result<()> {
    let cli = Cli::parse();
    let exe = std::env::current_exe().ok();
    let o = Options {
        release: cli
            .release
            .unwrap_or_else(|| default_release(exe.as_deref())),
        kernel: cli.kernel,
        btf: cli.btf,
        mode: cli.legacy_mode,
        loader: cli.loader,
        trial: !cli.no_trial,
        collectors: cli.collectors,
    };
    let report = run(&o)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if cli.paths {
        for p in report.paths() {
            println!("{}", p.display());
        }
    } else {
        print!("{}", text(&report));
    }
    if report.selections.iter().all(|s| s.kind == Kind::None) {
        bail!(
            "no object of {} fits kernel {}",
            report.release.display(),
            report.kernel
        );
    }
    Ok(())
}
