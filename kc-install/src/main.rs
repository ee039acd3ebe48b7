//! `kc-install`: downloads a kernel-collector release, verifies it against a pinned public key,
//! and installs the objects of every kernel the host may boot (CO-RE and every bucket), or
//! with `--only-bucket` the running kernel's bucket alone. See the library for the steps;
//! `kc-select` (installed with the release) chooses among them at run time.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use kc_common::Libc;
use kc_install::{install, predict, Options, Outcome};

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
    /// Kernel release whose bucket --only-bucket keeps, and for which the install reports the
    /// choice; default: the running kernel's
    #[arg(long)]
    kernel: Option<String>,
    /// Install the legacy objects of the kernel's bucket only (no CO-RE, no other bucket): a
    /// kernel upgrade to another bucket then needs a reinstall
    #[arg(long)]
    only_bucket: bool,
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
        arch: kc_common::host::host_arch()?,
        kernel,
        only_bucket: cli.only_bucket,
        keep: usize::from(cli.keep),
        limits: Default::default(),
    };
    let dir = match install(&o)? {
        Outcome::AlreadyInstalled(dir) => {
            println!("{} is already installed in {}", o.tag, dir.display());
            dir
        }
        Outcome::Installed { dir, bucket, files } => {
            let what = bucket.map_or_else(
                || "CO-RE and every bucket".to_string(),
                |b| format!("bucket {b} only"),
            );
            println!(
                "installed {} ({files} files: {what}) in {}",
                o.tag,
                dir.display()
            );
            dir
        }
    };
    // What this kernel will load, by the rule kc-select applies (which also asks the kernel).
    let btf = std::path::Path::new(kc_common::host::KERNEL_BTF);
    let choice = predict(&dir, &o.kernel, btf)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for s in &choice {
        let key = match (&s.kind, &s.bucket) {
            (k, Some(b)) => format!("{k} {b}"),
            (k, None) => k.to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "kernel {}: {} (kc-select prints the objects)",
        o.kernel,
        summary.join(", ")
    );
    for s in choice.iter().filter(|s| s.object.is_none()) {
        eprintln!(
            "kc-install: warning: nothing serves {} on kernel {}: {}",
            s.collector,
            o.kernel,
            s.passed_over.join("; ")
        );
    }
    Ok(())
}
