//! `cargo xtask matrix`: the (bucket, libc) build cells, in the shape GitHub Actions'
//! `strategy.matrix` takes through `fromJSON`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::kernels::matrix::Matrix;
use crate::paths;

pub const LIBCS: [&str; 2] = ["glibc", "musl"];

#[derive(Debug, Args)]
pub struct MatrixOptions {
    /// Print `{"include": [{"bucket": ..., "libc": ...}, ...]}`
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Cell {
    pub bucket: String,
    pub libc: String,
}

pub fn cells(m: &Matrix) -> Vec<Cell> {
    let mut out = Vec::new();
    for k in m.kernel.iter().filter(|k| k.bucket) {
        for libc in LIBCS {
            out.push(Cell {
                bucket: k.series.to_string(),
                libc: libc.to_string(),
            });
        }
    }
    out
}

pub fn run(o: MatrixOptions) -> Result<()> {
    let cells = cells(&Matrix::load(&paths::kernels_toml())?);
    if o.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "include": cells }))?
        );
    } else {
        for c in &cells {
            println!("{:<6} {}", c.bucket, c.libc);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_times_every_libc() {
        let m = Matrix::parse("flavour = \"x\"\n[[kernel]]\nseries = \"6.1\"\nsuites = [\"a\"]\nbucket = true\n[[kernel]]\nseries = \"6.16\"\nsuites = [\"a\"]\n").unwrap();
        let c = cells(&m);
        assert_eq!(
            c,
            [
                Cell {
                    bucket: "6.1".into(),
                    libc: "glibc".into()
                },
                Cell {
                    bucket: "6.1".into(),
                    libc: "musl".into()
                }
            ]
        );
        let json = serde_json::to_string(&serde_json::json!({ "include": c })).unwrap();
        assert_eq!(
            json,
            r#"{"include":[{"bucket":"6.1","libc":"glibc"},{"bucket":"6.1","libc":"musl"}]}"#
        );
    }
}
