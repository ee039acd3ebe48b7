//! `cargo xtask names`: every program, map and counter name of the objects, and where in the
//! source it comes from. Most are pasted together by macros (`kc_vfs_read__trampoline_ret`,
//! `vfs_counters`), so grep finds only their uses; this lists each one with the line that
//! makes it: a program's first line (its BTF line info: the macro's call), a map's or counter's
//! line in the collector's header or `includes/kc_collectors.h`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kc_common::CellId;
use serde::Serialize;

use crate::{host, paths, verify};

#[derive(Debug, Args)]
pub struct NamesOptions {
    /// Object files, directories or tarballs; default: the CO-RE cell of this host's libc
    pub paths: Vec<PathBuf>,
    /// Print the names as JSON
    #[arg(long)]
    pub json: bool,
}

/// What a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameKind {
    Program,
    Map,
    Counter,
}

/// One name of one object and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Name {
    pub object: String,
    pub kind: NameKind,
    pub name: String,
    /// A program's section, a counter's source tags.
    pub detail: String,
    /// `file:line`, or empty where no line could be found.
    pub source: String,
}

pub fn run(o: NamesOptions) -> Result<()> {
    let root = paths::project_root();
    let paths = if o.paths.is_empty() {
        vec![paths::cell_dir(CellId::core(host::host_libc()))]
    } else {
        o.paths
    };
    let mut names = Vec::new();
    for group in verify::collect(&paths)? {
        for (file, data) in &group.files {
            if !file.ends_with(".o") {
                continue;
            }
            let report = kc_verify::verify(file, data);
            names.extend(of_object(&root, file, &report)?);
        }
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else {
        print!("{}", table(&names));
    }
    Ok(())
}

/// The names of one verified object.
fn of_object(root: &Path, file: &str, r: &kc_verify::Report) -> Result<Vec<Name>> {
    let object = Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file)
        .to_string();
    let collector = r.maps.iter().find_map(|m| m.strip_suffix("_counters"));
    let header = collector.map(|c| root.join(format!("includes/collectors/{c}.bpf.h")));
    let header_text = match &header {
        Some(h) if h.is_file() => {
            std::fs::read_to_string(h).with_context(|| format!("reading {}", h.display()))?
        }
        _ => String::new(),
    };
    let list = root.join("includes/kc_collectors.h");
    let list_text =
        std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    let mut names = Vec::new();
    for f in r.functions.iter().filter(|f| f.section != ".text") {
        let line = program_line(&header_text, &f.name);
        let source = match line {
            Some(_) => located(root, header.as_deref(), line),
            None => in_tree(root, &f.file, f.line),
        };
        names.push(Name {
            object: object.clone(),
            kind: NameKind::Program,
            name: f.name.clone(),
            detail: f.section.clone(),
            source,
        });
    }
    for map in &r.maps {
        // Written out where it is declared, else made by the collector's macro.
        let line = line_of(&header_text, |l| l.contains(map.as_str())).or_else(|| {
            line_of(&header_text, |l| {
                (l.starts_with("KC_") && l.contains("COLLECTOR(")) || l.starts_with("KC_TOTALS(")
            })
        });
        names.push(Name {
            object: object.clone(),
            kind: NameKind::Map,
            name: map.clone(),
            detail: String::new(),
            source: located(root, header.as_deref(), line),
        });
    }
    let set = counter_lines(
        &list_text,
        collector.unwrap_or(""),
        r.counters.iter().map(|c| c.name.as_str()),
    );
    for c in &r.counters {
        let line = set
            .lines
            .iter()
            .find(|(n, _)| *n == c.name)
            .map(|(_, l)| *l)
            .or(set.defined);
        names.push(Name {
            object: object.clone(),
            kind: NameKind::Counter,
            name: c.name.clone(),
            detail: c.tags.join(" "),
            source: located(root, Some(&list), line),
        });
    }
    Ok(names)
}

/// The line of a collector's header that makes program `name`
/// (`<event>__<family>[_<role>][__<variant>]`): where the name is written out whole, else the
/// first macro call that writes its event (`kc_vfs_read`, always written out) with its role or
/// variant (`pread64`, `folio`), else the first that writes its event.
fn program_line(header: &str, name: &str) -> Option<usize> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let writes = |line: &str, word: &str| {
        line.match_indices(word).any(|(at, _)| {
            let before = line[..at].chars().next_back().is_none_or(|c| !is_word(c));
            let after = line[at + word.len()..]
                .chars()
                .next()
                .is_none_or(|c| !is_word(c));
            before && after
        })
    };
    if let Some(line) = line_of(header, |l| writes(l, name)) {
        return Some(line);
    }
    let (event, rest) = name.split_once("__")?;
    // After the family: `_<role>` and `__<variant>`.
    let extra: Vec<&str> = rest
        .split('_')
        .skip(1)
        .filter(|w| !w.is_empty() && *w != "ret")
        .collect();
    line_of(header, |l| {
        writes(l, event) && extra.iter().all(|w| writes(l, w))
    })
    .or_else(|| line_of(header, |l| writes(l, event)))
}

/// Where `includes/kc_collectors.h` writes each counter of one set: its `X(SET, INDEX, name,
/// ...)` lines, and the `KC_DEFINE_COUNTERS` line that makes names it does not write out
/// (filesystem's are pasted per file system).
struct CounterLines<'a> {
    lines: Vec<(&'a str, usize)>,
    defined: Option<usize>,
}

/// The set whose written-out names cover most of `names`, and where each is written; where
/// none is written out, the `KC_DEFINE_COUNTERS` line of `collector`.
fn counter_lines<'a, 'b>(
    list: &'a str,
    collector: &str,
    names: impl Iterator<Item = &'b str> + Clone,
) -> CounterLines<'a> {
    let mut sets: std::collections::BTreeMap<&str, Vec<(&str, usize)>> = Default::default();
    for (i, line) in list.lines().enumerate() {
        for call in line.split("X(").skip(1) {
            let mut args = call.split(',').map(str::trim);
            if let (Some(set), Some(_), Some(name)) = (args.next(), args.next(), args.next()) {
                sets.entry(set).or_default().push((name, i + 1));
            }
        }
    }
    let covered = |lines: &Vec<(&str, usize)>| {
        names
            .clone()
            .filter(|n| lines.iter().any(|(m, _)| m == n))
            .count()
    };
    let best = sets
        .into_iter()
        .map(|(set, lines)| (covered(&lines), set, lines))
        .max_by_key(|(n, ..)| *n);
    match best {
        Some((n, set, lines)) if n > 0 => {
            let define = format!(", {set})");
            let defined = line_of(list, |l| {
                l.starts_with("KC_DEFINE_COUNTERS(") && l.contains(&define)
            });
            CounterLines { lines, defined }
        }
        _ => {
            let define = format!("KC_DEFINE_COUNTERS({collector},");
            CounterLines {
                lines: Vec::new(),
                defined: line_of(list, |l| l.starts_with(&define)),
            }
        }
    }
}

/// The 1-based line of `text` where `hit` first holds.
fn line_of(text: &str, hit: impl Fn(&str) -> bool) -> Option<usize> {
    text.lines().position(hit).map(|i| i + 1)
}

/// `file:line` relative to the checkout.
fn located(root: &Path, file: Option<&Path>, line: Option<usize>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{}:{l}", f.strip_prefix(root).unwrap_or(f).display()),
        _ => String::new(),
    }
}

/// A BTF line info's file (as the compiler saw it: relative after `-ffile-prefix-map`, or
/// absolute) as a path in the checkout, with its line.
fn in_tree(root: &Path, file: &str, line: u32) -> String {
    if file.is_empty() {
        return String::new();
    }
    let path = Path::new(file);
    let shown = path.strip_prefix(root).unwrap_or(path);
    let shown = shown.strip_prefix("./").unwrap_or(shown);
    format!("{}:{line}", shown.display())
}

/// One line per name, aligned.
fn table(names: &[Name]) -> String {
    let width = |f: fn(&Name) -> usize| names.iter().map(f).max().unwrap_or(0);
    let (wo, wn) = (width(|n| n.object.len()), width(|n| n.name.len()));
    let mut out = String::new();
    for n in names {
        let kind = match n.kind {
            NameKind::Program => "program",
            NameKind::Map => "map",
            NameKind::Counter => "counter",
        };
        out.push_str(&format!(
            "{:wo$}  {kind:7}  {:wn$}  {:40}  {}\n",
            n.object, n.name, n.source, n.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kc-verify fixture (a CO-RE mount object of a real build): every program, map and
    /// counter is listed, each with the line that makes it.
    #[test]
    fn every_name_of_an_object_has_its_source_line() {
        let root = paths::project_root();
        let data = std::fs::read(root.join("kc-verify/tests/data/mount.bpf.o")).unwrap();
        let report = kc_verify::verify("mount.bpf.o", &data);
        let names = of_object(&root, "mount.bpf.o", &report).unwrap();
        let program = names
            .iter()
            .find(|n| n.name == "kc_mount_mount__tracepoint")
            .expect("the mount syscall's tracepoint program");
        let header = std::fs::read_to_string(root.join("includes/collectors/mount.bpf.h")).unwrap();
        let line: usize = program.source.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            header
                .lines()
                .nth(line - 1)
                .unwrap()
                .contains("kc_mount_mount"),
            "{program:?} points at a line that does not make it"
        );
        assert_eq!(program.kind, NameKind::Program);
        assert!(
            program
                .source
                .starts_with("includes/collectors/mount.bpf.h:"),
            "{program:?}"
        );
        let counter = names.iter().find(|n| n.name == "umount_error").unwrap();
        assert!(
            counter.source.starts_with("includes/kc_collectors.h:"),
            "{counter:?}"
        );
        assert!(counter.detail.contains("kc_event:umount"), "{counter:?}");
        let map = names.iter().find(|n| n.name == "mount_counters").unwrap();
        assert!(
            map.source.starts_with("includes/collectors/mount.bpf.h:"),
            "{map:?}"
        );
        for n in &names {
            assert!(!n.source.is_empty(), "{n:?} has no source line");
        }
    }
}
