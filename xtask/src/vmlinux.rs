//! `cargo xtask vmlinux`: regenerates `co-re/vmlinux.h` from a kernel's BTF.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use xshell::cmd;

use crate::compile::toolchain::Toolchain;
use crate::{atomic, paths, process};

#[derive(Debug, Args)]
pub struct VmlinuxOptions {
    /// A BTF file: /sys/kernel/btf/vmlinux, or a vmlinux with a .BTF section
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    pub btf: PathBuf,
}

/// `bpftool btf dump file BTF format c` into co-re/vmlinux.h, through a temporary file.
pub fn run(o: VmlinuxOptions) -> Result<()> {
    let bpftool = Toolchain::detect()?.bpftool;
    let sh = process::shell();
    let btf = &o.btf;
    let header = process::output(cmd!(sh, "{bpftool} btf dump file {btf} format c"))?.stdout;
    if header.is_empty() {
        bail!("bpftool printed nothing for {}", btf.display());
    }
    let path = paths::project_root().join("co-re/vmlinux.h");
    atomic::write(&path, &header)?;
    eprintln!(
        "wrote {} ({} bytes) from {}",
        path.display(),
        header.len(),
        btf.display()
    );
    Ok(())
}
