//! `cargo xtask check-kernel`: does a kernel have what the collectors need, and which object
//! serves each collector there (kc-common's rule, as `kc-select` applies it)?

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kc_common::select::{Kernel, LegacyMode, Offer, Trial};
use kc_common::{select_bucket, KernelVersion};
use serde::Serialize;

use crate::kernels;

#[derive(Debug, Args)]
pub struct CheckKernelOptions {
    /// Kernel config (plain or .gz); default: /boot/config-<release>, else /proc/config.gz
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kernel BTF; default: /sys/kernel/btf/vmlinux
    #[arg(long)]
    pub btf: Option<PathBuf>,
    /// Kernel release to judge (as `uname -r` prints it); default: the running kernel's
    #[arg(long)]
    pub release: Option<String>,
    /// An installed release (`<prefix>/current`): choose from it as `kc-select` does, asking the
    /// running kernel whether each CO-RE object loads. Default: predict from the build matrix
    /// (collectors.toml, the lock's buckets) on BTF alone
    #[arg(long)]
    pub installed: Option<PathBuf>,
    /// Which legacy object the choice names: entry or return
    #[arg(long, default_value_t = LegacyMode::default())]
    pub legacy_mode: LegacyMode,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needed {
    /// Legacy and CO-RE objects both need it.
    All,
    /// Only CO-RE objects.
    CoRe,
    /// One attach family: without it the collectors attach by the others, and an event that
    /// only it reaches (see the collectors' headers) goes unobserved.
    Family,
}

/// What the collectors need from the kernel's configuration.
pub const REQUIREMENTS: &[(&str, Needed, &str)] = &[
    ("CONFIG_BPF", Needed::All, "eBPF"),
    ("CONFIG_BPF_SYSCALL", Needed::All, "the bpf() syscall"),
    ("CONFIG_BPF_JIT", Needed::All, "the BPF JIT compiler"),
    (
        "CONFIG_HAVE_EBPF_JIT",
        Needed::All,
        "an architecture with an eBPF JIT",
    ),
    (
        "CONFIG_PERF_EVENTS",
        Needed::All,
        "perf events, through which probes attach",
    ),
    (
        "CONFIG_KPROBES",
        Needed::Family,
        "kprobes: the probe attach family",
    ),
    (
        "CONFIG_KPROBE_EVENTS",
        Needed::Family,
        "kprobe events: the probe attach family",
    ),
    ("CONFIG_TRACEPOINTS", Needed::All, "tracepoints"),
    (
        "CONFIG_BPF_EVENTS",
        Needed::All,
        "BPF programs on tracing events",
    ),
    (
        "CONFIG_FTRACE_SYSCALLS",
        Needed::All,
        "syscall tracepoints (sync, mount, fd collectors)",
    ),
    (
        "CONFIG_DEBUG_INFO_BTF",
        Needed::CoRe,
        "kernel BTF, for CO-RE relocations",
    ),
];

/// `CONFIG_X=value` lines; `# CONFIG_X is not set` and absent keys are unset.
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub needed_by: Needed,
    pub why: String,
    pub ok: bool,
    pub value: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub release: String,
    pub bucket: Option<String>,
    pub bucket_error: Option<String>,
    pub checks: Vec<Check>,
    pub btf: bool,
    pub ring_buffer: bool,
    pub legacy: bool,
    pub core: bool,
}

/// Judges a kernel from its config, release and whether it exposes BTF (pure).
pub fn judge(
    release: &str,
    config: &BTreeMap<String, String>,
    btf: bool,
    buckets: &[kc_common::Bucket],
) -> Result<Verdict> {
    let version = KernelVersion::parse(release)?;
    let (bucket, bucket_error) = match select_bucket(&version, buckets) {
        Ok(b) => (Some(b.to_string()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut checks: Vec<Check> = REQUIREMENTS
        .iter()
        .map(|(key, needed_by, why)| {
            let value = config.get(*key).cloned();
            Check {
                what: key.to_string(),
                needed_by: *needed_by,
                why: why.to_string(),
                ok: matches!(value.as_deref(), Some("y")),
                value,
            }
        })
        .collect();
    checks.push(Check {
        what: "BTF exposed (/sys/kernel/btf/vmlinux)".into(),
        needed_by: Needed::CoRe,
        why: "CO-RE relocations".into(),
        ok: btf,
        value: None,
    });
    let all_ok = checks
        .iter()
        .filter(|c| c.needed_by == Needed::All)
        .all(|c| c.ok);
    let core_ok = checks
        .iter()
        .filter(|c| c.needed_by != Needed::Family)
        .all(|c| c.ok);
    Ok(Verdict {
        release: release.to_string(),
        legacy: all_ok && bucket.is_some(),
        core: core_ok,
        bucket,
        bucket_error,
        checks,
        btf,
        // BPF_MAP_TYPE_RINGBUF arrived in 5.8.
        ring_buffer: version >= KernelVersion::new(5, 8, 0),
    })
}

fn read_config(path: &Path) -> Result<String> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .with_context(|| format!("{} is not valid gzip", path.display()))?;
        Ok(s)
    } else {
        String::from_utf8(raw)
            .with_context(|| format!("{} is not a text kernel config", path.display()))
    }
}

/// What the build matrix offers: every collector's CO-RE object, and its legacy objects in
/// each bucket from its minimum kernel on.
fn matrix_offer(
    collectors: &[crate::collectors::Collector],
    buckets: &[kc_common::Bucket],
) -> Offer {
    let mut offer = Offer::default();
    for c in collectors {
        offer.collectors.insert(c.name.clone(), c.min_kernel);
        offer.core.insert(c.name.clone());
        offer.legacy.insert(
            c.name.clone(),
            buckets
                .iter()
                .copied()
                .filter(|b| *b >= c.min_kernel)
                .collect(),
        );
    }
    offer
}

/// The choice per collector: from an installed release as kc-select makes it, or predicted
/// from the build matrix.
fn selection(
    o: &CheckKernelOptions,
    release: &str,
    btf: &Path,
    buckets: &[kc_common::Bucket],
) -> Result<kc_select::Report> {
    if let Some(dir) = &o.installed {
        return kc_select::run(&kc_select::Options {
            release: dir.clone(),
            kernel: Some(release.to_string()),
            btf: btf.to_path_buf(),
            mode: o.legacy_mode,
            loader: None,
            trial: true,
            collectors: Vec::new(),
        });
    }
    let offer = matrix_offer(
        &crate::collectors::load_from(&crate::paths::project_root())?,
        buckets,
    );
    Ok(kc_select::report(
        Kernel::probe(release, btf)?,
        std::path::Path::new(kc_select::DEFAULT_PREFIX).join("current"),
        &offer,
        o.legacy_mode,
        &|_| Trial::NotTried,
    ))
}

pub fn run(o: CheckKernelOptions) -> Result<()> {
    let release = match o.release.clone() {
        Some(r) => r,
        None => crate::paths::running_kernel_release()?,
    };
    let config_path = match o.config.clone() {
        Some(p) => p,
        None => [PathBuf::from(format!("/boot/config-{release}")), PathBuf::from("/proc/config.gz")]
            .into_iter()
            .find(|p| p.exists())
            .with_context(|| format!("no kernel config found (/boot/config-{release}, /proc/config.gz); pass --config FILE"))?,
    };
    let config = parse_config(&read_config(&config_path)?);
    if config.is_empty() {
        bail!(
            "{} holds no CONFIG_ line: is it a kernel config?",
            config_path.display()
        );
    }
    let btf_path = o
        .btf
        .clone()
        .unwrap_or_else(|| PathBuf::from(kc_common::host::KERNEL_BTF));
    let btf = kc_common::host::btf_status(&btf_path).is_ok();
    let (_, lock) = kernels::load_checked_lock()?;
    let buckets = lock.buckets();
    let v = judge(&release, &config, btf, &buckets)?;
    let chosen = selection(&o, &release, &btf_path, &buckets)?;
    if o.json {
        let mut json = serde_json::to_value(&v)?;
        json["selection"] = serde_json::to_value(&chosen)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("kernel {} (config {})", v.release, config_path.display());
        for c in &v.checks {
            let need = if c.needed_by == Needed::CoRe {
                "CO-RE "
            } else {
                ""
            };
            println!(
                "  {:<4} {:<40} {need}{}",
                if c.ok { "yes" } else { "NO" },
                c.what,
                c.why
            );
        }
        println!(
            "  {:<4} {:<40} BPF ring buffer (5.8+)",
            if v.ring_buffer { "yes" } else { "no" },
            "ring buffer"
        );
        match (&v.bucket, &v.bucket_error) {
            (Some(b), _) => println!(
                "legacy objects: {} (bucket {b})",
                if v.legacy {
                    "supported"
                } else {
                    "NOT supported"
                }
            ),
            (None, Some(e)) => println!("legacy objects: NOT supported: {e}"),
            _ => {}
        }
        println!(
            "CO-RE objects: {}",
            if v.core { "supported" } else { "NOT supported" }
        );
        println!(
            "objects per collector ({}):",
            if o.installed.is_some() {
                "from the installed release, as kc-select chooses them"
            } else {
                "predicted from the build matrix on BTF alone; --installed DIR asks the kernel"
            }
        );
        print!("{}", kc_select::text(&chosen));
    }
    if !(v.legacy || v.core) {
        bail!(
            "kernel {} cannot run the collectors (see the NO lines above)",
            v.release
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_common::select;

    fn full_config() -> String {
        REQUIREMENTS
            .iter()
            .map(|(k, _, _)| format!("{k}=y\n"))
            .collect::<String>()
            + "# CONFIG_FOO is not set\nCONFIG_LOCALVERSION=\"-kc\"\n"
    }

    fn buckets() -> Vec<kc_common::Bucket> {
        vec!["5.10".parse().unwrap(), "6.1".parse().unwrap()]
    }

    #[test]
    fn the_matrix_offers_each_collector_from_its_minimum_kernel() {
        let c: Vec<crate::collectors::Collector> = crate::collectors::parse(
            "[[collector]]\nname = \"vfs\"\ndescription = \"d\"\nmin_kernel = \"5.10\"\n\
             [[collector]]\nname = \"new\"\ndescription = \"d\"\nmin_kernel = \"6.1\"\n",
        )
        .unwrap();
        let offer = matrix_offer(&c, &buckets());
        assert_eq!(offer.legacy["vfs"].len(), 2);
        assert_eq!(
            offer.legacy["new"]
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>(),
            ["6.1"]
        );
        let kernel = Kernel {
            release: "5.15.0".into(),
            version: KernelVersion::parse("5.15.0").unwrap(),
            btf: Err("no BTF".into()),
        };
        let s = select::choose(&kernel, &offer, LegacyMode::Entry, &|_| Trial::NotTried);
        assert_eq!(s[0].kind, select::Kind::None, "{:?}", s[0]);
        assert_eq!(s[1].object.as_deref(), Some("legacy/pkc_vfs.5.10.o"));
    }

    #[test]
    fn a_complete_kernel_supports_both() {
        let c = parse_config(&full_config());
        assert_eq!(c["CONFIG_LOCALVERSION"], "-kc");
        assert!(!c.contains_key("CONFIG_FOO"));
        let v = judge("6.1.0-50-cloud-amd64", &c, true, &buckets()).unwrap();
        assert!(v.legacy && v.core && v.ring_buffer);
        assert_eq!(v.bucket.as_deref(), Some("6.1"));
    }

    #[test]
    fn missing_pieces_say_which_mode_they_break() {
        let no_btf = parse_config(&full_config().replace(
            "CONFIG_DEBUG_INFO_BTF=y",
            "# CONFIG_DEBUG_INFO_BTF is not set",
        ));
        let v = judge("6.1.0", &no_btf, false, &buckets()).unwrap();
        assert!(v.legacy && !v.core);
        let no_kprobes = parse_config(&full_config().replace("CONFIG_KPROBE_EVENTS=y", ""));
        let v = judge("6.1.0", &no_kprobes, true, &buckets()).unwrap();
        assert!(
            v.legacy && v.core,
            "without kprobes the collectors attach by tracepoints and trampolines"
        );
        assert!(v
            .checks
            .iter()
            .any(|c| c.what == "CONFIG_KPROBE_EVENTS" && !c.ok));
        let no_tracing = parse_config(&full_config().replace("CONFIG_BPF_EVENTS=y", ""));
        let v = judge("6.1.0", &no_tracing, true, &buckets()).unwrap();
        assert!(!v.legacy && !v.core);
        let v = judge(
            "4.18.0-372.el8.x86_64",
            &parse_config(&full_config()),
            true,
            &buckets(),
        )
        .unwrap();
        assert!(
            !v.legacy && v.core,
            "too old for every bucket, CO-RE may still work"
        );
        assert!(v
            .bucket_error
            .unwrap()
            .contains("older than the oldest bucket"));
        assert!(judge("garbage", &parse_config(&full_config()), true, &buckets()).is_err());
    }
}
