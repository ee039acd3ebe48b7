//! `kc-install`: downloads a kernel-collector release, verifies it against a pinned public key,
//! and installs the objects the running kernel selects. See the library for the steps.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use kc_common::Libc;
use kc_install::{install, Options, Outcome};

#[derive(Debug, Parser)]
#[command(
    name = "kc-install",
    version,
    about = "Download, verify and install a kernel-collector release"
)]
struct Cli {
    /// Release base URL (the files of the release sit under it) or a local directory
    #[arg(long)]
    from: String,
    /// The release tag, e.g. v1.2.3
    #[arg(long)]
    tag: String,
    /// The trusted public key (minisign); the release must be signed by its secret key
    #[arg(long)]
    pubkey: PathBuf,
    /// Where releases are installed; `<prefix>/current` points at the installed one
    #[arg(long, default_value = "/usr/libexec/kernel-collector")]
    prefix: PathBuf,
    /// glibc or musl; default: detected
    #[arg(long)]
    libc: Option<Libc>,
    /// Kernel release to install for; default: the running kernel's
    #[arg(long)]
    kernel: Option<String>,
    /// Complete releases to keep under <prefix>/releases, the current one included
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    keep: u16,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kc-install: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pubkey = std::fs::read_to_string(&cli.pubkey)
        .with_context(|| format!("reading the public key {}", cli.pubkey.display()))?;
    let kernel = match cli.kernel {
        Some(k) => k,
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the running kernel's release")?
            .trim()
            .to_string(),
    };
    let libc = cli.libc.unwrap_or_else(kc_common::host::host_libc);
    let o = Options {
        from: cli.from,
        tag: cli.tag,
        pubkey,
        prefix: cli.prefix,
        libc,
        kernel,
        keep: usize::from(cli.keep),
        limits: Default::default(),
    };
    match install(&o)? {
        Outcome::AlreadyInstalled(dir) => {
            println!("{} is already installed in {}", o.tag, dir.display())
        }
        Outcome::Installed { dir, bucket, files } => {
            println!(
                "installed {} ({} files, bucket {bucket}) in {}",
                o.tag,
                files,
                dir.display()
            )
        }
    }
    Ok(())
}
