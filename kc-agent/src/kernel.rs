//! What the running kernel has for a plan's targets: its BTF (functions, BTF tracepoints),
//! kallsyms, tracefs events and kprobe support. Asked once per run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aya::Btf;
use aya_obj::btf::BtfKind;
use kc_common::plan::Target;
use kc_common::{AttachFamily, PassedOver};

pub struct Kernel {
    pub btf: Option<Btf>,
    /// Each function of /proc/kallsyms and its address: None where the name is on more than
    /// one line (or kptr_restrict hides addresses).
    kallsyms: HashMap<String, Option<u64>>,
    kprobes: bool,
    /// The kprobe PMU, where kprobes are better attached by address than by name: before 6.1
    /// the kernel looks a kprobe's function up by a linear scan of every symbol, two to four
    /// times per kprobe (~80 ms each on 5.10 under emulation); 6.1 made it a binary search.
    kprobe_by_address: Option<crate::sys::KprobePmu>,
    /// `uname -r`.
    pub release: String,
    tracefs: Option<PathBuf>,
    /// Calls in flight a return probe follows (`probe_events::maxactive`).
    pub return_probe_room: u32,
}

impl Kernel {
    pub fn probe() -> Kernel {
        let kallsyms = std::fs::read_to_string("/proc/kallsyms")
            .map(|text| kallsyms_addresses(&text))
            .unwrap_or_default();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let lookup_is_linear =
            kc_common::KernelVersion::parse(&release).is_ok_and(|v| (v.major, v.minor) < (6, 1));
        Kernel {
            btf: Btf::from_sys_fs().ok(),
            kallsyms,
            kprobe_by_address: lookup_is_linear
                .then(|| crate::sys::KprobePmu::read().ok())
                .flatten(),
            release,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
            tracefs: ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.join("events").is_dir()),
            return_probe_room: crate::probe_events::maxactive(aya::util::nr_cpus().unwrap_or(1)),
        }
    }

    /// Where tracefs is mounted, if it is.
    pub fn tracefs(&self) -> Option<&Path> {
        self.tracefs.as_deref()
    }

    /// The kprobe PMU and the address a kprobe on `function` is better attached at than its
    /// name (where the kernel's own lookup is linear and kallsyms has one line of that name),
    /// as kc-loader does.
    pub fn kprobe_address(&self, function: &str) -> Option<(crate::sys::KprobePmu, u64)> {
        let pmu = self.kprobe_by_address?;
        Some((pmu, self.kallsyms.get(function).copied().flatten()?))
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
                } else if self.kallsyms.contains_key(function) {
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

/// /proc/kallsyms' names and addresses (`address type name [module]` lines); a name on two
/// lines, or a zero address (kptr_restrict), has none.
fn kallsyms_addresses(text: &str) -> HashMap<String, Option<u64>> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(address), Some(_), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let address = u64::from_str_radix(address, 16).ok().filter(|&a| a != 0);
        names
            .entry(name.to_string())
            .and_modify(|a| *a = None)
            .or_insert(address);
    }
    names
}

fn raw_tracepoint_exists(tracefs: &Path, name: &str) -> bool {
    std::fs::read_dir(tracefs.join("events"))
        .map(|dirs| dirs.flatten().any(|d| d.path().join(name).is_dir()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_on_two_lines_or_hidden_has_no_address() {
        let names = super::kallsyms_addresses(
            "ffffffff81000000 T vfs_read\nffffffff81000100 t dup\nffffffff81000200 t dup [ext4]\n0000000000000000 T hidden\nbad\n",
        );
        assert_eq!(names["vfs_read"], Some(0xffffffff81000000));
        assert_eq!(names["dup"], None);
        assert_eq!(names["hidden"], None);
        assert!(!names.contains_key("bad"));
    }
}
