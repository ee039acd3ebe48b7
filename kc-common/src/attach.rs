//! Attach families and modes: how a collector's programs reach the kernel (see
//! `includes/kc_bpf.h`), and what `kc-loader --attach` takes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One way to attach a collector's event; the loader's program names carry it
/// (`<event>__<family>[_<role>][__<variant>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AttachFamily {
    /// fentry/fexit, or tp_btf on a tracepoint: BPF trampolines (CO-RE objects only).
    Trampoline,
    /// kprobe/kretprobe.
    Probe,
    /// A stable tracepoint, classic or raw, that observes the same event.
    Tracepoint,
}

impl AttachFamily {
    /// In the order `auto` prefers them.
    pub const ALL: [AttachFamily; 3] = [
        AttachFamily::Trampoline,
        AttachFamily::Probe,
        AttachFamily::Tracepoint,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AttachFamily::Trampoline => "trampoline",
            AttachFamily::Probe => "probe",
            AttachFamily::Tracepoint => "tracepoint",
        }
    }

    /// The ELF section prefixes (libbpf's program types) of its programs, as kc-loader's
    /// `kc_section_family` (co-re/loader/kc_attach.c) has them.
    pub const fn section_prefixes(self) -> &'static [&'static str] {
        match self {
            AttachFamily::Trampoline => &["fentry/", "fexit/", "tp_btf/"],
            AttachFamily::Probe => &["kprobe/", "kretprobe/", "ksyscall/", "kretsyscall/"],
            AttachFamily::Tracepoint => &["tracepoint/", "tp/", "raw_tp/", "raw_tracepoint/"],
        }
    }

    /// The family a program in `section` belongs to, if any.
    pub fn of_section(section: &str) -> Option<AttachFamily> {
        AttachFamily::ALL
            .into_iter()
            .find(|f| f.section_prefixes().iter().any(|p| section.starts_with(p)))
    }
}

/// `kc-loader --attach`: one family for every event, or the cheapest that fits, per event
/// (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttachMode {
    Only(AttachFamily),
    #[default]
    Auto,
}

impl AttachMode {
    /// Every family forced in turn, then auto: what vmtest runs in each guest.
    pub const ALL: [AttachMode; 4] = [
        AttachMode::Only(AttachFamily::Trampoline),
        AttachMode::Only(AttachFamily::Probe),
        AttachMode::Only(AttachFamily::Tracepoint),
        AttachMode::Auto,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AttachMode::Only(f) => f.as_str(),
            AttachMode::Auto => "auto",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("attach mode {0:?}: use auto, trampoline, probe or tracepoint")]
pub struct AttachModeError(String);

impl fmt::Display for AttachFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for AttachMode {
    type Err = AttachModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttachMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| AttachModeError(s.to_string()))
    }
}

impl FromStr for AttachFamily {
    type Err = AttachModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse()? {
            AttachMode::Only(f) => Ok(f),
            AttachMode::Auto => Err(AttachModeError(s.to_string())),
        }
    }
}

// As the strings `--attach` takes, so that a report names its mode as its command line did.
impl Serialize for AttachMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttachMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for AttachMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AttachMode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = AttachMode::ALL.iter().map(|m| m.as_str()).collect();
        schemars::json_schema!({
            "description": "`kc-loader --attach`: one family forced for every event, or `auto` (the cheapest that fits, per event).",
            "type": "string",
            "enum": names,
        })
    }
}

/// Why the loader passed a family over for an event (its report's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PassedOver {
    /// `--attach` named another family.
    NotAsked,
    /// A cheaper family fits.
    Costlier,
    /// The collector has no program of this family for the event (declared in its header).
    NoProgram,
    /// The kernel lacks the target (function, tracepoint).
    Absent,
    /// The kernel cannot attach this kind there (no kprobes, no BTF, refused).
    Refused,
    /// Our program failed to load or attach.
    Failed,
}

impl PassedOver {
    /// A family that cannot exist for this event on this kernel, as opposed to one that
    /// should have worked.
    pub fn cannot_exist(self) -> bool {
        matches!(self, PassedOver::NoProgram | PassedOver::Absent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in AttachMode::ALL {
            assert_eq!(m.to_string().parse::<AttachMode>().unwrap(), m);
        }
        for f in AttachFamily::ALL {
            assert_eq!(f.to_string().parse::<AttachFamily>().unwrap(), f);
        }
        assert!("kprobe".parse::<AttachMode>().is_err());
        assert!("auto".parse::<AttachFamily>().is_err());
        assert_eq!(
            AttachFamily::of_section("kretprobe/vfs_read"),
            Some(AttachFamily::Probe)
        );
        assert_eq!(
            AttachFamily::of_section("tp_btf/sched_switch"),
            Some(AttachFamily::Trampoline)
        );
        assert_eq!(AttachFamily::of_section("xdp"), None);
        for m in AttachMode::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<AttachMode>(&json).unwrap(), m);
        }
        assert!(serde_json::from_str::<AttachMode>("\"kprobe\"").is_err());
        let k: PassedOver = serde_json::from_str("\"no-program\"").unwrap();
        assert!(k.cannot_exist());
        let k: PassedOver = serde_json::from_str("\"refused\"").unwrap();
        assert!(!k.cannot_exist());
    }
}
