//! What the running kernel has for a plan's targets: its BTF (functions, BTF tracepoints),
//! kallsyms, tracefs events and kprobe support. Asked once per run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aya::Btf;
use aya_obj::btf::BtfKind;
use kc_common::plan::Target;
use kc_common::{AttachFamily, PassedOver};

pub struct Kernel {
    pub btf: Option<Btf>,
    kallsyms: HashSet<String>,
    kprobes: bool,
    tracefs: Option<PathBuf>,
}

impl Kernel {
    pub fn probe() -> Kernel {
        let kallsyms = std::fs::read_to_string("/proc/kallsyms")
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Kernel {
            btf: Btf::from_sys_fs().ok(),
            kallsyms,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
            tracefs: ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.join("events").is_dir()),
        }
    }

    /// Whether this kernel has `target`, else why not (absent or refused) in words.
    pub fn has(&self, family: AttachFamily, target: &Target) -> Result<(), (PassedOver, String)> {
        let absent = |what: String| Err((PassedOver::Absent, what));
        match target {
            Target::BtfFunction { function } => match &self.btf {
                None => Err((PassedOver::Refused, "the kernel exposes no BTF".into())),
                Some(btf) if btf.id_by_type_name_kind(function, BtfKind::Func).is_ok() => Ok(()),
                Some(_) => absent(format!("no function {function} in the kernel's BTF")),
            },
            Target::BtfTracepoint { tracepoint } => match &self.btf {
                None => Err((PassedOver::Refused, "the kernel exposes no BTF".into())),
                Some(btf)
                    if btf
                        .id_by_type_name_kind(&format!("btf_trace_{tracepoint}"), BtfKind::Typedef)
                        .is_ok() =>
                {
                    Ok(())
                }
                Some(_) => absent(format!("no BTF tracepoint {tracepoint}")),
            },
            Target::Kallsyms { function } => {
                if !self.kprobes {
                    Err((PassedOver::Refused, "this kernel has no kprobes".into()))
                } else if self.kallsyms.contains(function) {
                    Ok(())
                } else {
                    absent(format!("no {function} in /proc/kallsyms"))
                }
            }
            Target::Tracefs { category, name } => match &self.tracefs {
                Some(t) if t.join("events").join(category).join(name).is_dir() => Ok(()),
                Some(_) => absent(format!("no tracepoint {category}/{name}")),
                None => Err((PassedOver::Refused, "tracefs is not mounted".into())),
            },
            Target::RawTracepoint { name } => match &self.tracefs {
                Some(t) if raw_tracepoint_exists(t, name) => Ok(()),
                Some(_) => absent(format!("no tracepoint {name}")),
                None => Err((PassedOver::Refused, "tracefs is not mounted".into())),
            },
        }
        .map_err(|(k, why)| (k, format!("{family}: {why}")))
    }
}

fn raw_tracepoint_exists(tracefs: &Path, name: &str) -> bool {
    std::fs::read_dir(tracefs.join("events"))
        .map(|dirs| dirs.flatten().any(|d| d.path().join(name).is_dir()))
        .unwrap_or(false)
}
