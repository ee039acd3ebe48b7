//! The attach-family naming rule (`includes/kc_bpf.h`): a program named
//! `<event>__<family>[_<role>][__<variant>]` must sit in a section of that family, or the
//! loader would treat it as a program outside any family and load it whatever `--attach` says.

/// The families and the section prefixes of each, as kc-loader's `kc_section_family`.
const FAMILIES: &[(&str, &[&str])] = &[
    ("trampoline", &["fentry/", "fexit/", "tp_btf/"]),
    (
        "probe",
        &["kprobe/", "kretprobe/", "ksyscall/", "kretsyscall/"],
    ),
    (
        "tracepoint",
        &["tracepoint/", "tp/", "raw_tp/", "raw_tracepoint/"],
    ),
];

/// The family a section belongs to, if any.
pub fn section_family(section: &str) -> Option<&'static str> {
    FAMILIES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| section.starts_with(p)))
        .map(|(f, _)| *f)
}

/// What is wrong with program `name` in `section`, if anything.
pub fn name_problem(name: &str, section: &str) -> Option<String> {
    let (event, rest) = name.split_once("__")?;
    let token = rest.split('_').next().unwrap_or("");
    let Some((family, _)) = FAMILIES.iter().find(|(f, _)| *f == token) else {
        return Some(format!(
            "program {name}: `{token}` after `__` is not an attach family (trampoline, probe, tracepoint)"
        ));
    };
    if event.is_empty() {
        return Some(format!("program {name}: no event before `__`"));
    }
    match section_family(section) {
        Some(f) if f == *family => None,
        Some(f) => Some(format!(
            "program {name} is named for the {family} family but its section {section} is {f}"
        )),
        None => Some(format!(
            "program {name} is named for the {family} family but its section {section} belongs to none"
        )),
    }
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
}
