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

/// The counter set a collector's header declares (`KC_COLLECTOR(name, set)`,
/// `KC_TOTALS(name, set)`, or `irq` for `KC_HANDLER_COLLECTOR(name, ids)`).
fn counter_set(header: &str) -> Option<String> {
    if header.contains("KC_HANDLER_COLLECTOR(") {
        return Some("irq".into());
    }
    ["KC_COLLECTOR(", "KC_TOTALS("].iter().find_map(|m| {
        let at = header.find(m)? + m.len();
        let args = &header[at..at + header[at..].find(')')?];
        Some(args.split(',').nth(1)?.trim().to_string())
    })
}

/// The counters a set lists literally in `kc_collectors.h` (`X(SET, INDEX, name, source)`);
/// None where its list is built by another macro (filesystem's per file system).
fn literal_counters(counters_h: &str, set: &str) -> Option<Vec<String>> {
    let upper = set.to_ascii_uppercase();
    let start = counters_h.find(&format!("#define KC_{upper}_COUNTERS(X)"))?;
    let body: String = counters_h[start..]
        .lines()
        .scan(true, |more, line| {
            let this = *more;
            *more = line.trim_end().ends_with('\\');
            this.then_some(line)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let prefix = format!("X({upper}, ");
    let names: Vec<String> = body
        .match_indices(&prefix)
        .filter_map(|(at, _)| {
            let args = &body[at + prefix.len()..];
            Some(args.split(',').nth(1)?.trim().to_string())
        })
        .collect();
    (!names.is_empty()).then_some(names)
}

/// Where README's list of collectors ("`collectors.toml` lists them (a, b, c)") lies: the
/// byte range of what the parentheses hold.
pub fn readme_list(readme: &str) -> Option<(usize, usize)> {
    const LEAD: &str = "`collectors.toml` lists them (";
    let start = readme.find(LEAD)? + LEAD.len();
    Some((start, start + readme[start..].find(')')?))
}

/// What each collector still lacks, one line each naming the file and what to add: its
/// sources, its counter struct, its expectations for the vmtest workload (`counters.toml`),
/// the kernel's own figure or why there is none for each counter (`kernel-accounting.toml`),
/// and its place in README's list. Empty when every collector is whole. Reads files only: no
/// build, no boot.
pub fn checklist(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let text = |file: &str| std::fs::read_to_string(root.join(file)).unwrap_or_default();
    let all = match std::fs::read_to_string(root.join("collectors.toml"))
        .map_err(anyhow::Error::from)
        .and_then(|t| parse(&t))
    {
        Ok(all) => all,
        Err(e) => return vec![format!("collectors.toml: {e:#}")],
    };
    let counters_h = text("includes/kc_collectors.h");
    let readme = text("README.md");
    let listed: Vec<&str> = readme_list(&readme)
        .map(|(a, b)| {
            readme[a..b]
                .split([',', ' ', '\n'])
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let expected = crate::vmtest::expect::load(root);
    let accounting = crate::accounting::load(root);
    for c in &all {
        let name = &c.name;
        let mut lack = |what: String| missing.push(format!("{name}: {what}"));
        let sources = source_files(root, name);
        for f in &sources {
            if !f.is_file() {
                lack(format!("{} is missing", f.display()));
            }
        }
        let header = std::fs::read_to_string(&sources[0]).unwrap_or_default();
        let set = counter_set(&header);
        match &set {
            None => lack(format!(
                "includes/collectors/{name}.bpf.h declares no counters: start it with KC_COLLECTOR({name}, {name}) (totals and per-application rows) or KC_TOTALS({name}, {name})"
            )),
            Some(set) if !counters_h.contains(&format!("KC_DEFINE_COUNTERS({set}, ")) => lack(format!(
                "includes/kc_collectors.h has no KC_{}_COUNTERS(X) list and KC_DEFINE_COUNTERS({set}, {}) line",
                set.to_ascii_uppercase(),
                set.to_ascii_uppercase()
            )),
            Some(_) => {}
        }
        let counters = set
            .as_deref()
            .and_then(|s| literal_counters(&counters_h, s));
        match &expected {
            Err(e) => lack(format!("counters.toml: {e:#}")),
            Ok(t) => match t.get(name) {
                None => lack(format!(
                    "counters.toml has no [{name}]: write what the vmtest workload makes each counter count"
                )),
                Some(have) => {
                    for counter in counters.iter().flatten() {
                        if !have.contains_key(counter) {
                            lack(format!(
                                "counters.toml's [{name}] has no expectation for {counter}"
                            ));
                        }
                    }
                }
            },
        }
        match (&accounting, &expected) {
            (Err(e), _) => lack(format!("kernel-accounting.toml: {e:#}")),
            (Ok(k), Ok(t)) => {
                for counter in t.get(name).map(|c| c.keys()).into_iter().flatten() {
                    if !k.get(name).is_some_and(|k| k.contains_key(counter)) {
                        lack(format!(
                            "kernel-accounting.toml has no {name}.{counter}: the kernel's own figure for it, or `none = \"why the kernel keeps none\"`"
                        ));
                    }
                }
            }
            _ => {}
        }
        if !listed.contains(&name.as_str()) {
            lack("README.md's \"`collectors.toml` lists them (...)\" does not name it".into());
        }
    }
    missing
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
    fn every_collector_is_whole_before_any_build() {
        let missing = checklist(&crate::paths::project_root());
        assert!(
            missing.is_empty(),
            "docs/adding-a-collector.md says how to finish:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn a_collector_missing_its_parts_is_listed_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["includes/collectors", "kernel", "co-re"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("collectors.toml"),
            "[[collector]]\nname = \"sig\"\ndescription = \"d\"\nmin_kernel = \"5.10\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("includes/collectors/sig.bpf.h"),
            "KC_COLLECTOR(sig, sig)\n",
        )
        .unwrap();
        std::fs::write(
            root.join("includes/kc_collectors.h"),
            "#define KC_SIG_COUNTERS(X) X(SIG, A, a, KC_FROM(a)) X(SIG, B, b, KC_FROM(b))\nKC_DEFINE_COUNTERS(sig, SIG)\n",
        )
        .unwrap();
        std::fs::write(root.join("counters.toml"), "[sig]\na = { total_min = 1 }\n").unwrap();
        std::fs::write(root.join("kernel-accounting.toml"), "").unwrap();
        std::fs::write(
            root.join("README.md"),
            "`collectors.toml` lists them (x, y)",
        )
        .unwrap();
        let missing = checklist(root);
        let has = |s: &str| missing.iter().any(|m| m.contains(s));
        assert!(has("kernel/sig_kern.c is missing"), "{missing:?}");
        assert!(has("co-re/sig.bpf.c is missing"), "{missing:?}");
        assert!(has("[sig] has no expectation for b"), "{missing:?}");
        assert!(has("kernel-accounting.toml has no sig.a"), "{missing:?}");
        assert!(has("README.md"), "{missing:?}");
        assert_eq!(missing.len(), 5, "{missing:?}");
    }

    #[test]
    fn counter_sets_and_their_literal_lists() {
        assert_eq!(
            counter_set("x\nKC_COLLECTOR(hardirq, irq)\n").as_deref(),
            Some("irq")
        );
        assert_eq!(
            counter_set("KC_TOTALS(disk, disk)").as_deref(),
            Some("disk")
        );
        assert_eq!(
            counter_set("KC_HANDLER_COLLECTOR(softirq, 10)").as_deref(),
            Some("irq")
        );
        assert_eq!(counter_set("nothing"), None);
        let h = "#define KC_A_COUNTERS(X)  \\\n\tX(A, ONE, one, KC_FROM(e)) \\\n\tX(A, TWO, two, KC_FROM(e))\n\n#define KC_B_COUNTERS(X) X(B, T, t, KC_FROM(t))\n";
        assert_eq!(literal_counters(h, "a").unwrap(), ["one", "two"]);
        assert_eq!(literal_counters(h, "b").unwrap(), ["t"]);
        assert_eq!(literal_counters(h, "c"), None);
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
