//! `collectors.toml`: the collectors, their minimum kernels and declared unsupported kernels.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kc_common::Bucket;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    pub name: String,
    /// For people reading collectors.toml; not used by the pipeline yet.
    #[allow(dead_code)]
    pub description: String,
    /// The oldest kernel this collector supports, e.g. `5.10`.
    pub min_kernel: Bucket,
    /// Kernel series where the collector cannot work, each with the reason (vmtest: skipped).
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsupported {
    pub series: Bucket,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    collector: Vec<Collector>,
}

impl Collector {
    /// Is a legacy object of this collector built for `bucket`?
    pub fn builds_for(&self, bucket: Bucket) -> bool {
        bucket >= self.min_kernel
    }

    /// Why this collector does not work on `kernel`, if it does not.
    pub fn unsupported_on(&self, kernel: &kc_common::KernelVersion) -> Option<String> {
        if kernel.bucket() < self.min_kernel {
            return Some(format!("needs kernel {} or later", self.min_kernel));
        }
        self.unsupported
            .iter()
            .find(|u| u.series.contains(kernel))
            .map(|u| u.reason.clone())
    }
}

pub fn parse(text: &str) -> Result<Vec<Collector>> {
    let f: File = toml::from_str(text)?;
    let mut names = std::collections::BTreeSet::new();
    for c in &f.collector {
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("collector name {:?}: use lowercase letters, digits and `_` (it names files and C symbols)", c.name);
        }
        if !names.insert(&c.name) {
            bail!("collector {} is listed twice", c.name);
        }
    }
    Ok(f.collector)
}

/// Loads `<root>/collectors.toml` and checks that every collector has its source files.
pub fn load_from(root: &Path) -> Result<Vec<Collector>> {
    let path = root.join("collectors.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let all = parse(&text).with_context(|| format!("{} is malformed", path.display()))?;
    for c in &all {
        for f in source_files(root, &c.name) {
            if !f.is_file() {
                bail!(
                    "collector {} is listed in collectors.toml but {} is missing",
                    c.name,
                    f.display()
                );
            }
        }
    }
    Ok(all)
}

pub fn source_files(root: &Path, name: &str) -> [std::path::PathBuf; 3] {
    [
        root.join("includes/collectors")
            .join(format!("{name}.bpf.h")),
        root.join("kernel").join(format!("{name}_kern.c")),
        root.join("co-re").join(format!("{name}.bpf.c")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_collectors_are_complete() {
        let all = load_from(&crate::paths::project_root()).unwrap();
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        for want in [
            "process",
            "vfs",
            "cachestat",
            "disk",
            "fd",
            "sync",
            "swap",
            "oomkill",
            "mount",
            "hardirq",
            "softirq",
            "socket",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn min_kernel() {
        let c = &parse("[[collector]]\nname = \"x\"\ndescription = \"d\"\nmin_kernel = \"6.1\"\n")
            .unwrap()[0];
        assert!(!c.builds_for("5.10".parse().unwrap()));
        assert!(c.builds_for("6.1".parse().unwrap()));
        assert!(c.builds_for("7.2".parse().unwrap()));
    }

    #[test]
    fn bad_collector_files() {
        assert!(parse(
            "[[collector]]\nname = \"Bad-Name\"\ndescription = \"d\"\nmin_kernel = \"6.1\"\n"
        )
        .is_err());
        assert!(parse("[[collector]]\nname = \"a\"\ndescription = \"d\"\nmin_kernel = \"6.1\"\n[[collector]]\nname = \"a\"\ndescription = \"d\"\nmin_kernel = \"6.1\"\n").is_err());
        assert!(
            parse("[[collector]]\nname = \"a\"\ndescription = \"d\"\n").is_err(),
            "min_kernel is required"
        );
    }
}
