//! `cargo xtask fuzz`: runs the `verify_object` fuzz target (fuzz/) on a corpus seeded from
//! the objects under artifacts/cells. cargo-fuzz needs nightly features; the stable toolchain
//! provides them with RUSTC_BOOTSTRAP=1.

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::paths;

#[derive(Debug, Args)]
pub struct FuzzOptions {
    /// How long to fuzz
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
}

pub fn run(o: FuzzOptions) -> Result<()> {
    let sh = Shell::new()?;
    let root = paths::project_root();
    if cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stderr()
        .read()
        .is_err()
    {
        eprintln!("fuzz: installing cargo-fuzz");
        cmd!(sh, "cargo install --locked cargo-fuzz")
            .run()
            .context("installing cargo-fuzz")?;
    }
    let corpus = root.join("fuzz/corpus/verify_object");
    std::fs::create_dir_all(&corpus)?;
    let mut seeded = 0;
    for g in crate::verify::collect(&[root.join(crate::paths::CELLS)]).unwrap_or_default() {
        for (name, bytes) in g.files.iter().filter(|(n, _)| n.ends_with(".o")) {
            std::fs::write(corpus.join(name), bytes)?;
            seeded += 1;
        }
    }
    if seeded == 0 {
        bail!("no objects under artifacts/cells to seed the corpus: run `cargo xtask build` first");
    }
    eprintln!(
        "fuzz: corpus seeded with {seeded} objects; fuzzing for {} s",
        o.seconds
    );
    sh.change_dir(root.join("fuzz"));
    let budget = format!("-max_total_time={}", o.seconds);
    cmd!(
        sh,
        "cargo fuzz run verify_object {corpus} -- {budget} -print_final_stats=1"
    )
    .env("RUSTC_BOOTSTRAP", "1")
    .run()
    .context("the fuzz target found a crash: see fuzz/artifacts/verify_object/")?;
    Ok(())
}
