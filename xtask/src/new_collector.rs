//! `cargo xtask new-collector NAME --tracepoint CATEGORY/EVENT`: a working one-counter
//! collector, and every file a collector needs that can be derived from its name: its entry
//! in `collectors.toml`, the two compile shims (`kernel/<name>_kern.c`,
//! `co-re/<name>.bpf.c`), its counter list in `includes/kc_collectors.h` and its place in
//! README's list. What is left is a person's: the programs (`includes/collectors/<name>.bpf.h`,
//! written here as a start), what the vmtest workload makes it count (`counters.toml`), the
//! kernel's own figure for each counter (`kernel-accounting.toml`) and the workload itself
//! (`co-re/tests/kc-vmtest-init.c`). `docs/adding-a-collector.md` walks through them;
//! `collectors::checklist` (a unit test) says what is still missing, before any build.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::{atomic, collectors, paths};

#[derive(Debug, Args)]
pub struct NewCollectorOptions {
    /// The collector's name: lowercase letters, digits and `_` (it names files and C symbols)
    pub name: String,
    /// The tracepoint its first event is (`category/name`, as under tracefs' events/)
    #[arg(long)]
    pub tracepoint: String,
    /// What it counts, for collectors.toml and README
    #[arg(long)]
    pub description: String,
    /// The oldest kernel series it supports
    #[arg(long, default_value = "5.10")]
    pub min_kernel: kc_common::Bucket,
}

/// What the collector is made of: the names every file derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    name: String,
    category: String,
    event: String,
    description: String,
    min_kernel: kc_common::Bucket,
}

impl Spec {
    fn new(o: &NewCollectorOptions) -> Result<Self> {
        let ident = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        ensure!(
            ident(&o.name),
            "collector name {:?}: use lowercase letters, digits and `_`, not starting with a digit (it names files and C symbols)",
            o.name
        );
        let Some((category, event)) = o.tracepoint.split_once('/') else {
            bail!(
                "--tracepoint {:?}: write it as CATEGORY/EVENT, as under /sys/kernel/tracing/events/ (e.g. signal/signal_deliver)",
                o.tracepoint
            );
        };
        ensure!(
            ident(category) && ident(event),
            "--tracepoint {:?}: a category and event are lowercase identifiers",
            o.tracepoint
        );
        ensure!(
            !o.description.trim().is_empty() && !o.description.contains(['"', '\n']),
            "--description: one line, without double quotes"
        );
        Ok(Spec {
            name: o.name.clone(),
            category: category.to_string(),
            event: event.to_string(),
            description: o.description.trim().to_string(),
            min_kernel: o.min_kernel,
        })
    }

    fn upper(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// The counter (and event) the first program feeds: the tracepoint's name.
    fn counter(&self) -> &str {
        &self.event
    }

    fn header(&self) -> String {
        let (name, upper, counter) = (&self.name, self.upper(), self.counter());
        let counter_upper = counter.to_ascii_uppercase();
        let (category, event) = (&self.category, &self.event);
        format!(
            "/* SPDX-License-Identifier: GPL-2.0 */\n\
             /* {name}: {description}.\n \
             * Families: the {category}/{event} tracepoint (tp_btf as the trampoline, and classic). */\n\
             \n\
             KC_COLLECTOR({name}, {name})\n\
             \n\
             KC_TP_COUNT(kc_{name}_{counter}, {category}, {event}, kc_{name}_count(KC_{upper}_{counter_upper}, 1))\n",
            description = self.description
        )
    }

    fn legacy_shim(&self) -> String {
        shim(&self.name, "Legacy", "kc_legacy.h")
    }

    fn core_shim(&self) -> String {
        shim(&self.name, "CO-RE", "kc_core.h")
    }

    fn toml_entry(&self) -> String {
        format!(
            "\n[[collector]]\nname = \"{}\"\ndescription = \"{}\"\nmin_kernel = \"{}\"\n",
            self.name, self.description, self.min_kernel
        )
    }

    /// `includes/kc_collectors.h` with this collector's counter list and struct added.
    fn with_counters(&self, header: &str) -> Result<String> {
        let (upper, counter) = (self.upper(), self.counter());
        let list = format!(
            "#define KC_{upper}_COUNTERS(X) X({upper}, {}, {counter}, KC_FROM({counter}))\n\n",
            counter.to_ascii_uppercase()
        );
        let define = format!("KC_DEFINE_COUNTERS({}, {upper})\n", self.name);
        ensure!(
            !header.contains(&format!("KC_{upper}_COUNTERS(X)")),
            "includes/kc_collectors.h already lists KC_{upper}_COUNTERS"
        );
        let lists_end = header
            .find("#define KC_COUNTER_INDEX")
            .context("includes/kc_collectors.h has no `#define KC_COUNTER_INDEX` to add a counter list before")?;
        // After the last struct definition.
        let last = header
            .rfind("\nKC_DEFINE_COUNTERS(")
            .context("includes/kc_collectors.h has no KC_DEFINE_COUNTERS line to add one after")?;
        let end = last
            + 1
            + header[last + 1..]
                .find('\n')
                .map_or(header.len() - last - 1, |n| n + 1);
        ensure!(
            lists_end < last,
            "includes/kc_collectors.h defines its structs before its lists"
        );
        Ok(format!(
            "{}{list}{}{define}{}",
            &header[..lists_end],
            &header[lists_end..end],
            &header[end..]
        ))
    }
}

fn shim(name: &str, kind: &str, env: &str) -> String {
    format!(
        "// SPDX-License-Identifier: GPL-2.0\n/* {kind} {name} collector: see includes/collectors/{name}.bpf.h. */\n#include \"{env}\"\n#include \"collectors/{name}.bpf.h\"\n"
    )
}

/// README's sentence "`collectors.toml` lists them (a, b, c) with ..." with `name` added.
fn readme_with(readme: &str, name: &str) -> Result<String> {
    const LEAD: &str = "`collectors.toml` lists them (";
    let start = readme.find(LEAD).context(
        "README.md has no \"`collectors.toml` lists them (\" sentence to add the collector to",
    )? + LEAD.len();
    let end = start
        + readme[start..]
            .find(')')
            .context("README.md's collector list has no closing parenthesis")?;
    Ok(format!("{}, {name}{}", &readme[..end], &readme[end..]))
}

pub fn run(o: NewCollectorOptions) -> Result<()> {
    let spec = Spec::new(&o)?;
    let root = paths::project_root();
    let existing = collectors::load_from(&root)?;
    ensure!(
        !existing.iter().any(|c| c.name == spec.name),
        "collectors.toml already has a collector named {}",
        spec.name
    );
    let [header, legacy, core] = collectors::source_files(&root, &spec.name);
    for f in [&header, &legacy, &core] {
        ensure!(
            !f.exists(),
            "{} exists: remove it, or choose another name",
            f.display()
        );
    }
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let toml_path = root.join("collectors.toml");
    let counters_path = root.join("includes/kc_collectors.h");
    let readme_path = root.join("README.md");
    // Everything computed before anything is written: a refusal leaves the tree as it was.
    let writes: Vec<(PathBuf, String)> = vec![
        (header, spec.header()),
        (legacy, spec.legacy_shim()),
        (core, spec.core_shim()),
        (
            toml_path.clone(),
            format!("{}{}", read(&toml_path)?, spec.toml_entry()),
        ),
        (
            counters_path.clone(),
            spec.with_counters(&read(&counters_path)?)?,
        ),
        (
            readme_path.clone(),
            readme_with(&read(&readme_path)?, &spec.name)?,
        ),
    ];
    for (path, text) in &writes {
        atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("new-collector: wrote {}", path.display());
    }
    eprintln!(
        "new-collector: {} counts {} on {}/{}. Now (docs/adding-a-collector.md):\n{}",
        spec.name,
        spec.counter(),
        spec.category,
        spec.event,
        collectors::checklist(&root).join("\n")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(name: &str, tracepoint: &str) -> NewCollectorOptions {
        NewCollectorOptions {
            name: name.into(),
            tracepoint: tracepoint.into(),
            description: "signals delivered".into(),
            min_kernel: "5.10".parse().unwrap(),
        }
    }

    #[test]
    fn names_and_tracepoints_are_checked() {
        assert!(Spec::new(&options("sig", "signal/signal_deliver")).is_ok());
        let e = Spec::new(&options("Sig", "signal/signal_deliver")).unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
        let e = Spec::new(&options("sig", "signal_deliver")).unwrap_err();
        assert!(e.to_string().contains("CATEGORY/EVENT"), "{e}");
        assert!(Spec::new(&options("sig", "signal/Bad-Name")).is_err());
        assert!(Spec::new(&options("9sig", "signal/signal_deliver")).is_err());
    }

    #[test]
    fn the_shims_are_those_every_collector_has() {
        let root = paths::project_root();
        let spec = Spec::new(&options("vfs", "syscalls/sys_enter_read")).unwrap();
        let [_, legacy, core] = collectors::source_files(&root, "vfs");
        assert_eq!(spec.legacy_shim(), std::fs::read_to_string(legacy).unwrap());
        assert_eq!(spec.core_shim(), std::fs::read_to_string(core).unwrap());
    }

    #[test]
    fn the_counter_list_and_struct_go_where_the_others_are() {
        let spec = Spec::new(&options("sig", "signal/signal_deliver")).unwrap();
        let header = "#define KC_A_COUNTERS(X) X(A, B, b, KC_FROM(b))\n\n#define KC_COUNTER_INDEX(c) x\n\nKC_DEFINE_COUNTERS(a, A)\n\n#endif\n";
        let out = spec.with_counters(header).unwrap();
        assert_eq!(
            out,
            "#define KC_A_COUNTERS(X) X(A, B, b, KC_FROM(b))\n\n\
             #define KC_SIG_COUNTERS(X) X(SIG, SIGNAL_DELIVER, signal_deliver, KC_FROM(signal_deliver))\n\n\
             #define KC_COUNTER_INDEX(c) x\n\nKC_DEFINE_COUNTERS(a, A)\nKC_DEFINE_COUNTERS(sig, SIG)\n\n#endif\n"
        );
        assert!(spec.with_counters(&out).is_err(), "added twice");
        assert!(spec.with_counters("no anchors").is_err());
        assert!(spec
            .header()
            .contains("KC_TP_COUNT(kc_sig_signal_deliver, signal, signal_deliver, kc_sig_count(KC_SIG_SIGNAL_DELIVER, 1))"));
    }

    #[test]
    fn readme_lists_the_new_collector_last() {
        let out = readme_with(
            "x\n`collectors.toml` lists them (a, b,\nc) with y (z)\n",
            "d",
        )
        .unwrap();
        assert_eq!(
            out,
            "x\n`collectors.toml` lists them (a, b,\nc, d) with y (z)\n"
        );
        assert!(readme_with("no list", "d").is_err());
    }
}
