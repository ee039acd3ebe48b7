//! Which object serves each collector on a running kernel: the one rule that `kc-select` (for
//! agents, service units and the loader's users), the installer, `check-kernel` and vmtest
//! share.
//!
//! CO-RE when the kernel exposes BTF and the collector's CO-RE object loads there; else the
//! legacy object of the highest bucket `<=` the kernel that carries the collector; else
//! nothing, and why. Every object passed over is reported with its reason.
//!
//! Pure: what the kernel offers ([`Kernel`]), what the release offers ([`Offer`]) and what the
//! kernel said when asked to load each CO-RE object (a trial, run by the caller) go in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::kernel::{select_bucket, Bucket, KernelVersion};
use crate::names::{core_object, legacy_object, parse_legacy_object};
use crate::release::{Manifest, CORE_DIR, LEGACY_DIR, MANIFEST};

/// Which of a bucket's two legacy objects: entry probes only (`p`, cheapest) or entry and
/// return probes (`r`, also counts errors and returned bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacyMode {
    Entry,
    #[default]
    Return,
}

impl LegacyMode {
    pub const ALL: [LegacyMode; 2] = [LegacyMode::Entry, LegacyMode::Return];

    pub const fn as_str(self) -> &'static str {
        match self {
            LegacyMode::Entry => "entry",
            LegacyMode::Return => "return",
        }
    }
}

impl fmt::Display for LegacyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for LegacyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LegacyMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("legacy mode {s:?}: use entry or return"))
    }
}

/// What the running kernel offers the rule.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// As `uname -r` prints it.
    pub release: String,
    pub version: KernelVersion,
    /// `Ok` when the kernel exposes its BTF, else why not.
    pub btf: Result<(), String>,
}

impl Kernel {
    /// The kernel `release` names, with its BTF at `btf` (or why not).
    pub fn probe(release: &str, btf: &Path) -> Result<Kernel, crate::kernel::VersionError> {
        Ok(Kernel {
            release: release.to_string(),
            version: KernelVersion::parse(release)?,
            btf: crate::host::btf_status(btf),
        })
    }
}

/// What a release offers: the collectors, which have a CO-RE object, and the buckets that
/// carry each collector's legacy object (of the mode asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// Collector -> the oldest kernel it supports.
    pub collectors: BTreeMap<String, Bucket>,
    pub core: BTreeSet<String>,
    pub legacy: BTreeMap<String, BTreeSet<Bucket>>,
}

impl Offer {
    /// What an installed release directory holds: its manifests (`legacy/`, `co-re/`) say what
    /// the release has, the files present say what this install kept (`--only-bucket` keeps
    /// one bucket and no CO-RE).
    pub fn installed(dir: &Path, mode: LegacyMode) -> Result<Offer, String> {
        let read = |sub: &str| -> Result<Option<Manifest>, String> {
            let path = dir.join(sub).join(MANIFEST);
            match std::fs::read(&path) {
                Ok(b) => serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| format!("{}: not a release manifest: {e}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", path.display())),
            }
        };
        let legacy = read(LEGACY_DIR)?;
        let core = read(CORE_DIR)?;
        if legacy.is_none() && core.is_none() {
            return Err(format!(
                "{} holds no installed release ({LEGACY_DIR}/{MANIFEST} and {CORE_DIR}/{MANIFEST} are both missing): install one with kc-install",
                dir.display()
            ));
        }
        let mut offer = Offer::default();
        for (sub, m) in [(LEGACY_DIR, &legacy), (CORE_DIR, &core)] {
            let Some(m) = m else { continue };
            for c in &m.collectors {
                let min = c
                    .min_kernel
                    .parse()
                    .map_err(|e| format!("{}/{MANIFEST}: collector {}: {e}", sub, c.name))?;
                offer.collectors.insert(c.name.clone(), min);
            }
            for f in &m.files {
                if !dir.join(sub).join(&f.name).is_file() {
                    continue;
                }
                if sub == CORE_DIR {
                    if let Some(c) = f.name.strip_suffix(".bpf.o") {
                        offer.core.insert(c.to_string());
                    }
                } else if let Some((c, bucket, return_mode)) = parse_legacy_object(&f.name) {
                    if return_mode == (mode == LegacyMode::Return) {
                        offer.legacy.entry(c).or_default().insert(bucket);
                    }
                }
            }
        }
        Ok(offer)
    }

    /// The offer narrowed to `names` (an agent that runs some collectors chooses, and asks
    /// the kernel, for those alone); empty: all of it. A name the release does not offer is
    /// an error that lists the ones it does.
    pub fn only(mut self, names: &[String]) -> Result<Offer, String> {
        if names.is_empty() {
            return Ok(self);
        }
        if let Some(unknown) = names.iter().find(|n| !self.collectors.contains_key(*n)) {
            let offered: Vec<&str> = self.collectors.keys().map(String::as_str).collect();
            return Err(format!(
                "the release offers no collector {unknown:?}; it offers {}",
                offered.join(", ")
            ));
        }
        self.collectors.retain(|c, _| names.contains(c));
        self.core.retain(|c| names.contains(c));
        self.legacy.retain(|c, _| names.contains(c));
        Ok(self)
    }
}

/// What the kernel said when the collector's CO-RE object was loaded (not attached) there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trial {
    Loads,
    Refused(String),
    /// Not asked (no loader at hand, or the caller only predicts): CO-RE is chosen on BTF
    /// alone and the selection says so.
    NotTried,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    CoRe,
    Legacy,
    None,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Kind::CoRe => "co-re",
            Kind::Legacy => "legacy",
            Kind::None => "none",
        })
    }
}

/// The choice for one collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub collector: String,
    pub kind: Kind,
    /// The object, relative to the release directory (`co-re/vfs.bpf.o`,
    /// `legacy/rkc_vfs.6.1.o`); `None` when nothing fits.
    pub object: Option<String>,
    /// The legacy bucket chosen.
    pub bucket: Option<String>,
    /// Whether the kernel was asked to load the CO-RE object chosen.
    pub tried: bool,
    /// Why each better choice was passed over (or, for `none`, why nothing fits).
    pub passed_over: Vec<String>,
}

/// The rule, for every collector the release offers (sorted by name).
pub fn choose(
    kernel: &Kernel,
    offer: &Offer,
    mode: LegacyMode,
    trial: &dyn Fn(&str) -> Trial,
) -> Vec<Selection> {
    offer
        .collectors
        .iter()
        .map(|(collector, min)| {
            let mut passed_over = Vec::new();
            let none = |passed_over| Selection {
                collector: collector.clone(),
                kind: Kind::None,
                object: None,
                bucket: None,
                tried: false,
                passed_over,
            };
            if (kernel.version.major, kernel.version.minor) < (min.major, min.minor) {
                passed_over.push(format!(
                    "{collector} needs kernel {min} or later; this is {}",
                    kernel.release
                ));
                return none(passed_over);
            }
            match (&kernel.btf, offer.core.contains(collector)) {
                (_, false) => passed_over.push("co-re: not installed".into()),
                (Err(why), true) => passed_over.push(format!("co-re: {why}")),
                (Ok(()), true) => match trial(collector) {
                    Trial::Refused(why) => {
                        passed_over.push(format!("co-re: the kernel refused it: {why}"))
                    }
                    t => {
                        return Selection {
                            collector: collector.clone(),
                            kind: Kind::CoRe,
                            object: Some(format!("{CORE_DIR}/{}", core_object(collector))),
                            bucket: None,
                            tried: t == Trial::Loads,
                            passed_over,
                        }
                    }
                },
            }
            let buckets: Vec<Bucket> = offer
                .legacy
                .get(collector)
                .map(|b| b.iter().copied().collect())
                .unwrap_or_default();
            match select_bucket(&kernel.version, &buckets) {
                Ok(bucket) => Selection {
                    collector: collector.clone(),
                    kind: Kind::Legacy,
                    object: Some(format!(
                        "{LEGACY_DIR}/{}",
                        legacy_object(collector, bucket, mode == LegacyMode::Return)
                    )),
                    bucket: Some(bucket.to_string()),
                    tried: false,
                    passed_over,
                },
                Err(e) => {
                    passed_over.push(format!("legacy ({mode}): {e}"));
                    none(passed_over)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bucket {
        s.parse().unwrap()
    }

    fn kernel(release: &str, btf: bool) -> Kernel {
        Kernel {
            release: release.into(),
            version: KernelVersion::parse(release).unwrap(),
            btf: if btf {
                Ok(())
            } else {
                Err("no BTF at /sys/kernel/btf/vmlinux".into())
            },
        }
    }

    fn offer() -> Offer {
        let mut o = Offer::default();
        for c in ["vfs", "mdflush"] {
            o.core.insert(c.into());
        }
        o.collectors.insert("vfs".into(), b("5.10"));
        o.collectors.insert("mdflush".into(), b("6.12"));
        o.legacy
            .insert("vfs".into(), [b("5.10"), b("6.1"), b("6.12")].into());
        o.legacy.insert("mdflush".into(), [b("6.12")].into());
        o
    }

    fn pick(k: &Kernel, trial: &dyn Fn(&str) -> Trial) -> Vec<(Kind, Option<String>)> {
        choose(k, &offer(), LegacyMode::Return, trial)
            .into_iter()
            .map(|s| (s.kind, s.object))
            .collect()
    }

    #[test]
    fn an_offer_narrowed_to_some_collectors_keeps_theirs_and_refuses_unknown_names() {
        let offer = Offer {
            collectors: [("vfs", "5.10"), ("swap", "6.1")]
                .map(|(c, b)| (c.to_string(), b.parse().unwrap()))
                .into(),
            core: ["vfs".to_string(), "swap".to_string()].into(),
            legacy: [("vfs".to_string(), ["5.10".parse().unwrap()].into())].into(),
        };
        let vfs = offer.clone().only(&["vfs".into()]).unwrap();
        assert_eq!(vfs.collectors.keys().collect::<Vec<_>>(), ["vfs"]);
        assert_eq!(vfs.core.iter().collect::<Vec<_>>(), ["vfs"]);
        assert_eq!(vfs.legacy.len(), 1);
        assert_eq!(offer.clone().only(&[]).unwrap(), offer);
        let e = offer.only(&["vsf".into()]).unwrap_err();
        assert!(
            e.contains("no collector \"vsf\"; it offers swap, vfs"),
            "{e}"
        );
    }

    #[test]
    fn btf_and_a_load_choose_co_re() {
        let got = pick(&kernel("6.12.117+deb13-cloud-amd64", true), &|_| {
            Trial::Loads
        });
        assert_eq!(
            got,
            [
                (Kind::CoRe, Some("co-re/mdflush.bpf.o".into())),
                (Kind::CoRe, Some("co-re/vfs.bpf.o".into()))
            ]
        );
    }

    #[test]
    fn without_btf_or_when_refused_the_bucket_serves() {
        let sel = choose(
            &kernel("6.11.2", false),
            &offer(),
            LegacyMode::Entry,
            &|_| panic!("no trial without BTF"),
        );
        let vfs = &sel[1];
        assert_eq!(vfs.kind, Kind::Legacy);
        assert_eq!(vfs.object.as_deref(), Some("legacy/pkc_vfs.6.1.o"));
        assert_eq!(vfs.bucket.as_deref(), Some("6.1"));
        assert!(vfs.passed_over[0].contains("no BTF"), "{vfs:?}");
        // A kernel that refuses the CO-RE object: the reason is kept.
        let got = choose(&kernel("7.3.1", true), &offer(), LegacyMode::Return, &|c| {
            if c == "vfs" {
                Trial::Refused("Invalid argument".into())
            } else {
                Trial::Loads
            }
        });
        assert_eq!(got[1].object.as_deref(), Some("legacy/rkc_vfs.6.12.o"));
        assert!(got[1].passed_over[0].contains("refused it: Invalid argument"));
        assert_eq!(got[0].kind, Kind::CoRe);
    }

    #[test]
    fn nothing_fits_says_why() {
        // mdflush needs 6.12: on 6.1 neither object is for it.
        let sel = choose(
            &kernel("6.1.0-50-cloud-amd64", true),
            &offer(),
            LegacyMode::Return,
            &|_| Trial::Loads,
        );
        assert_eq!(sel[0].kind, Kind::None);
        assert!(sel[0].passed_over[0].contains("needs kernel 6.12 or later"));
        // Too old for every bucket and no BTF.
        let sel = choose(
            &kernel("5.4.0", false),
            &offer(),
            LegacyMode::Return,
            &|_| Trial::Loads,
        );
        assert!(sel.iter().all(|s| s.kind == Kind::None), "{sel:?}");
        // A lean install (no CO-RE) without the kernel's bucket.
        let mut lean = offer();
        lean.core.clear();
        lean.legacy.insert("vfs".into(), [b("6.12")].into());
        let sel = choose(&kernel("6.1.0", true), &lean, LegacyMode::Return, &|_| {
            Trial::Loads
        });
        assert_eq!(sel[1].kind, Kind::None);
        assert_eq!(sel[1].passed_over[0], "co-re: not installed");
        assert!(
            sel[1].passed_over[1].contains("older than the oldest bucket 6.12"),
            "{:?}",
            sel[1]
        );
    }

    #[test]
    fn a_prediction_is_marked_untried() {
        let sel = choose(
            &kernel("6.12.1", true),
            &offer(),
            LegacyMode::Return,
            &|_| Trial::NotTried,
        );
        assert!(sel.iter().all(|s| s.kind == Kind::CoRe && !s.tried));
    }

    #[test]
    fn legacy_modes_round_trip() {
        for m in LegacyMode::ALL {
            assert_eq!(m.to_string().parse::<LegacyMode>(), Ok(m));
        }
        assert!("p".parse::<LegacyMode>().is_err());
        assert_eq!(LegacyMode::default(), LegacyMode::Return);
    }
}
