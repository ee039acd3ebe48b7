//! kc-exporter in a guest: on the newest amd64 kernel of a run, the guest's init starts the
//! installed release's kc-exporter, scrapes it once over loopback and stops it with SIGTERM
//! (co-re/tests/kc-vmtest-init.c, `run_exporter`); here the scrape is judged.

/// Whether kc-exporter runs in the guest of kernel `code` (the newest of the run, amd64).
pub fn runs_on(arch: kc_common::Arch, code: u32, newest: Option<u32>) -> bool {
    arch == kc_common::Arch::Amd64 && newest == Some(code)
}

/// What is wrong with the guest's exporter run: no scrape, a collector with no object up in
/// it, or an exit other than 0 after SIGTERM. Empty: it served every collector and stopped.
pub fn judge(console: &str, collectors: &[String]) -> Vec<String> {
    // A serial console ends its lines with CR LF.
    let console = console.replace("\r\n", "\n");
    let Some((_, rest)) = console.split_once("KC-EXPORTER-BEGIN\n") else {
        return vec!["kc-exporter: no scrape on the console (did init run it?)".into()];
    };
    let Some((scrape, end)) = rest.split_once("\nKC-EXPORTER-END status=") else {
        return vec![
            "kc-exporter: the scrape has no end marker (the guest stopped mid-scrape)".into(),
        ];
    };
    let mut problems = Vec::new();
    let status = end.lines().next().unwrap_or_default().trim();
    if status != "0" {
        problems.push(format!(
            "kc-exporter ended with status {status} after SIGTERM (not 0)"
        ));
    }
    let down: Vec<&str> = collectors
        .iter()
        .map(String::as_str)
        .filter(|c| !up(scrape, c))
        .collect();
    if !down.is_empty() {
        let lines = scrape.lines().count();
        problems.push(format!(
            "kc-exporter's scrape ({lines} lines) has no object up for {down:?}"
        ));
    }
    problems
}

/// The scrape says `kc_exporter_object_up{...,collector="C"} 1`.
pub fn up(scrape: &str, collector: &str) -> bool {
    let labels = format!("collector=\"{collector}\"}} ");
    scrape.lines().any(|l| {
        l.strip_prefix("kc_exporter_object_up{")
            .and_then(|l| l.split_once(&labels))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            == Some(1.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(scrape: &str, status: &str) -> String {
        format!(
            "boot\nKC-EXPORTER-BEGIN\n{scrape}\nKC-EXPORTER-END status={status}\nKC-VMTEST-DONE\n"
        )
    }

    #[test]
    fn every_collector_up_and_a_clean_stop_pass() {
        let scrape = "kc_exporter_object_up{object=\"vfs.bpf.o\",collector=\"vfs\"} 1\n\
                      kc_exporter_object_up{object=\"fd.bpf.o\",collector=\"fd\"} 1.0\n";
        let names = ["vfs".to_string(), "fd".to_string()];
        assert!(judge(&console(scrape, "0"), &names).is_empty());
        let serial = console(scrape, "0").replace('\n', "\r\n");
        assert!(judge(&serial, &names).is_empty());
    }

    #[test]
    fn a_collector_down_a_bad_stop_or_no_scrape_fail() {
        let scrape = "kc_exporter_object_up{object=\"vfs.bpf.o\",collector=\"vfs\"} 0\n";
        let names = ["vfs".to_string()];
        let p = judge(&console(scrape, "143"), &names);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("status 143"), "{p:?}");
        assert!(p[1].contains("[\"vfs\"]"), "{p:?}");
        assert!(judge("boot\nKC-VMTEST-DONE\n", &names)[0].contains("no scrape"));
        assert!(judge("KC-EXPORTER-BEGIN\nkc_", &names)[0].contains("no end marker"));
    }

    #[test]
    fn only_the_newest_amd64_kernel_runs_it() {
        use kc_common::Arch;
        assert!(runs_on(Arch::Amd64, 7, Some(7)));
        assert!(!runs_on(Arch::Amd64, 6, Some(7)));
        assert!(!runs_on(Arch::Arm64, 7, Some(7)));
    }
}
