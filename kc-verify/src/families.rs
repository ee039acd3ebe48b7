//! The attach-family naming rule (`includes/kc_bpf.h`): a program named
//! `<event>__<family>[_<role>][__<variant>]` must sit in a section of that family, or the
//! loader would treat it as a program outside any family and load it whatever `--attach` says.

use kc_common::AttachFamily;

/// The family a section belongs to, if any (`kc_common::AttachFamily::of_section`).
pub fn section_family(section: &str) -> Option<&'static str> {
    AttachFamily::of_section(section).map(AttachFamily::as_str)
}

/// What is wrong with program `name` in `section`, if anything.
pub fn name_problem(name: &str, section: &str) -> Option<String> {
    let (event, token) = split_name(name)?;
    let Some(family) = AttachFamily::ALL
        .into_iter()
        .find(|f| f.as_str() == token)
        .map(AttachFamily::as_str)
    else {
        return Some(format!(
            "program {name}: `{token}` after `__` is not an attach family (trampoline, probe, tracepoint)"
        ));
    };
    if event.is_empty() {
        return Some(format!("program {name}: no event before `__`"));
    }
    match section_family(section) {
        Some(f) if f == family => None,
        Some(f) => Some(format!(
            "program {name} is named for the {family} family but its section {section} is {f}"
        )),
        None => Some(format!(
            "program {name} is named for the {family} family but its section {section} belongs to none"
        )),
    }
}

/// kc-loader's limits (`MAX_PROGS` and `MAX_EVENTS` in `co-re/loader/kc_loader.h`).
pub const LOADER_MAX_PROGRAMS: usize = 128;
pub const LOADER_MAX_EVENTS: usize = 32;

/// A program name's event and the word after its first `__` (its family, if named so).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let (event, rest) = name.split_once("__")?;
    Some((event, rest.split('_').next().unwrap_or("")))
}

/// The event a program named `<event>__<family>...` observes, if it is named so.
pub fn event_of(name: &str) -> Option<&str> {
    let (event, token) = split_name(name)?;
    (!event.is_empty() && AttachFamily::ALL.iter().any(|f| f.as_str() == token)).then_some(event)
}

/// What an object of `programs` programs observing `events` events exceeds of kc-loader.
pub fn over_loader_limits(programs: usize, events: usize) -> Vec<String> {
    let mut over = Vec::new();
    if programs > LOADER_MAX_PROGRAMS {
        over.push(format!(
            "{programs} programs, and kc-loader holds {LOADER_MAX_PROGRAMS}: split the collector, or raise MAX_PROGS in co-re/loader/kc_loader.h and LOADER_MAX_PROGRAMS in kc-verify/src/families.rs"
        ));
    }
    if events > LOADER_MAX_EVENTS {
        over.push(format!(
            "{events} events, and kc-loader holds {LOADER_MAX_EVENTS}: split the collector, or raise MAX_EVENTS in co-re/loader/kc_loader.h and LOADER_MAX_EVENTS in kc-verify/src/families.rs"
        ));
    }
    over
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sections_agree() {
        assert_eq!(
            name_problem("kc_vfs_read__probe_ret", "kretprobe/vfs_read"),
            None
        );
        assert_eq!(
            name_problem(
                "kc_x__tracepoint__folio",
                "tracepoint/writeback/writeback_dirty_folio"
            ),
            None
        );
        assert_eq!(
            name_problem("kc_x__trampoline", "tp_btf/sched_process_fork"),
            None
        );
        assert_eq!(name_problem("plain_program", "kprobe/x"), None);
        assert!(name_problem("kc_x__probe", "fentry/x")
            .unwrap()
            .contains("is trampoline"));
        assert!(name_problem("kc_x__folio", "kprobe/x")
            .unwrap()
            .contains("not an attach family"));
        assert!(name_problem("__probe", "kprobe/x")
            .unwrap()
            .contains("no event"));
        assert!(name_problem("kc_x__tracepoint", "xdp")
            .unwrap()
            .contains("belongs to none"));
    }

    /// kc-loader's C table of section prefixes is the Rust one.
    #[test]
    fn the_loaders_section_table_is_ours() {
        let c = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../co-re/loader/kc_attach.c"
        ))
        .unwrap();
        let mut theirs: Vec<(String, String)> = c
            .split("{ \"")
            .skip(1)
            .filter_map(|entry| {
                let (prefix, rest) = entry.split_once("\", KC_")?;
                let family = rest.split_once(' ')?.0.trim_end_matches('}').to_lowercase();
                Some((prefix.to_string(), family))
            })
            .collect();
        let mut ours: Vec<(String, String)> = AttachFamily::ALL
            .iter()
            .flat_map(|f| {
                f.section_prefixes()
                    .iter()
                    .map(move |p| (p.to_string(), f.as_str().to_string()))
            })
            .collect();
        theirs.sort();
        ours.sort();
        assert_eq!(theirs, ours);
    }

    #[test]
    fn the_loaders_limits_are_checked_and_are_the_loaders() {
        assert_eq!(event_of("kc_vfs_read__probe_ret"), Some("kc_vfs_read"));
        assert_eq!(event_of("kc_x__folio"), None);
        assert_eq!(event_of("plain"), None);
        assert!(over_loader_limits(128, 32).is_empty());
        let over = over_loader_limits(129, 33);
        assert!(
            over[0].contains("129 programs") && over[1].contains("33 events"),
            "{over:?}"
        );
        // The same numbers as the loader's own.
        let header = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../co-re/loader/kc_loader.h"
        ))
        .unwrap();
        let define = |name: &str| -> usize {
            header
                .lines()
                .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("kc_loader.h defines no {name}"))
        };
        assert_eq!(define("MAX_PROGS"), LOADER_MAX_PROGRAMS);
        assert_eq!(define("MAX_EVENTS"), LOADER_MAX_EVENTS);
    }
}
