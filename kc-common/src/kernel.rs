//! Kernel release strings (`uname -r`, Debian ABI names) and kernel buckets.
//!
//! A *bucket* is the `<major>.<minor>` of the kernel whose headers built a legacy
//! object. A running kernel selects the highest bucket that is `<=` its version.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `KERNEL_VERSION()` packs major and minor into 8 bits each.
const MAX_COMPONENT: u32 = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("kernel version is empty: expected MAJOR.MINOR[.PATCH][-suffix] as `uname -r` prints it, e.g. 6.1.0-13-cloud-amd64")]
    Empty,
    #[error("kernel version {input:?}: {reason}; expected MAJOR.MINOR[.PATCH][-suffix] as `uname -r` prints it, e.g. 6.1.0-13-cloud-amd64")]
    Malformed { input: String, reason: String },
    #[error("kernel version {input:?}: {what} {value} is out of range (at most {MAX_COMPONENT}, as KERNEL_VERSION() packs it)")]
    OutOfRange {
        input: String,
        what: &'static str,
        value: String,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BucketError {
    #[error("bucket {input:?}: expected MAJOR.MINOR, e.g. 6.1 ({source})")]
    Malformed { input: String, source: VersionError },
    #[error("bucket {input:?} has a patch level; a bucket is MAJOR.MINOR only, e.g. 6.1")]
    HasPatch { input: String },
    #[error("no bucket is available to select from")]
    NoBuckets,
    #[error("kernel {kernel} is older than the oldest bucket {oldest}: kernel-collector's legacy objects need {oldest} or later (CO-RE objects may still work)")]
    TooOld {
        kernel: KernelVersion,
        oldest: Bucket,
    },
}

/// A kernel version: what matters of a release string for selection and `LINUX_VERSION_CODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses a kernel release string such as `5.10.0-32-cloud-amd64`,
    /// `6.12.117+deb13-cloud-amd64`, `4.18.0-372.32.1.el8_6.x86_64` or `6.1`.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let malformed = |reason: &str| VersionError::Malformed {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        // The numeric prefix ends at the first character that is neither a digit nor a dot.
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (numeric, suffix) = s.split_at(end);
        if let Some(c) = suffix.chars().next() {
            if !matches!(c, '-' | '+' | '_' | '~') {
                return Err(malformed(&format!(
                    "unexpected {c:?} after the version number"
                )));
            }
        }
        if numeric.is_empty() {
            return Err(malformed("it does not start with a number"));
        }
        let parts: Vec<&str> = numeric.split('.').collect();
        if parts.len() < 2 {
            return Err(malformed("the minor version is missing"));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(malformed("a version component is missing around a dot"));
        }
        let component = |idx: usize, what: &'static str| -> Result<u32, VersionError> {
            let text = parts.get(idx).copied().unwrap_or("0");
            match text.parse::<u32>() {
                Ok(v) if what == "patch level" || v <= MAX_COMPONENT => Ok(v),
                _ => Err(VersionError::OutOfRange {
                    input: input.to_string(),
                    what,
                    value: text.to_string(),
                }),
            }
        };
        Ok(Self {
            major: component(0, "major version")?,
            minor: component(1, "minor version")?,
            patch: component(2, "patch level")?,
        })
    }

    /// `LINUX_VERSION_CODE` as the kernel computes it (`KERNEL_VERSION(a, b, c)`, `c` clamped to 255).
    pub fn code(&self) -> u32 {
        (self.major << 16) + (self.minor << 8) + self.patch.min(MAX_COMPONENT)
    }

    pub fn bucket(&self) -> Bucket {
        Bucket {
            major: self.major,
            minor: self.minor,
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}.{}.{}", self.major, self.minor, self.patch))
    }
}

impl FromStr for KernelVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A kernel bucket, `<major>.<minor>` (`5.10`, `6.1`, `6.12`, `7.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bucket {
    pub major: u32,
    pub minor: u32,
}

impl Bucket {
    pub fn contains(&self, kernel: &KernelVersion) -> bool {
        kernel.major == self.major && kernel.minor == self.minor
    }

    /// The `LINUX_VERSION_CODE` of the bucket's first release (`KERNEL_VERSION(major, minor, 0)`).
    pub fn base_code(&self) -> u32 {
        KernelVersion::new(self.major, self.minor, 0).code()
    }
}

impl FromStr for Bucket {
    type Err = BucketError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim()
            .contains(|c: char| !(c.is_ascii_digit() || c == '.'))
            || s.matches('.').count() > 1
        {
            if s.matches('.').count() > 1 && KernelVersion::parse(s).is_ok() {
                return Err(BucketError::HasPatch {
                    input: s.to_string(),
                });
            }
            return Err(BucketError::Malformed {
                input: s.to_string(),
                source: VersionError::Malformed {
                    input: s.to_string(),
                    reason: "a bucket holds digits and one dot only".into(),
                },
            });
        }
        let v = KernelVersion::parse(s).map_err(|source| BucketError::Malformed {
            input: s.to_string(),
            source,
        })?;
        Ok(v.bucket())
    }
}

impl TryFrom<String> for Bucket {
    type Error = BucketError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Bucket> for String {
    fn from(b: Bucket) -> String {
        b.to_string()
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}.{}", self.major, self.minor))
    }
}

/// Picks the highest bucket `<=` the kernel's `major.minor`.
pub fn select_bucket(kernel: &KernelVersion, buckets: &[Bucket]) -> Result<Bucket, BucketError> {
    let oldest = *buckets.iter().min().ok_or(BucketError::NoBuckets)?;
    buckets
        .iter()
        .copied()
        .filter(|b| (b.major, b.minor) <= (kernel.major, kernel.minor))
        .max()
        .ok_or(BucketError::TooOld {
            kernel: *kernel,
            oldest,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets() -> Vec<Bucket> {
        ["5.10", "6.1", "6.12", "7.2"]
            .iter()
            .map(|b| b.parse().unwrap())
            .collect()
    }

    #[test]
    fn parses_release_strings() {
        let cases = [
            ("5.10.0-32-cloud-amd64", (5, 10, 0)),
            ("6.12.117+deb13-cloud-amd64", (6, 12, 117)),
            ("7.2.6+deb13-cloud-amd64", (7, 2, 6)),
            ("4.18.0-372.32.1.el8_6.x86_64", (4, 18, 0)),
            ("6.1", (6, 1, 0)),
            ("6.8.0-rc1", (6, 8, 0)),
            (" 6.1.0 ", (6, 1, 0)),
            ("6.1.300", (6, 1, 300)),
        ];
        for (input, (a, b, c)) in cases {
            assert_eq!(
                KernelVersion::parse(input),
                Ok(KernelVersion::new(a, b, c)),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_garbage_with_a_clear_error() {
        assert_eq!(KernelVersion::parse(""), Err(VersionError::Empty));
        for input in [
            "abc", "6.", "6", "6..1", ".6.1", "6.1x", "v6.1", "6.1.", "6.1.-3",
        ] {
            let err = KernelVersion::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, VersionError::Malformed { .. }),
                "{input}: {msg}"
            );
            assert!(msg.contains("MAJOR.MINOR"), "{input}: {msg}");
        }
        let err = KernelVersion::parse("99999.1").unwrap_err();
        assert!(matches!(
            err,
            VersionError::OutOfRange {
                what: "major version",
                ..
            }
        ));
        assert!(err.to_string().contains("99999"));
        assert!(KernelVersion::parse("6.4096").is_err());
    }

    #[test]
    fn version_code_matches_kernel_macro() {
        assert_eq!(KernelVersion::new(6, 1, 0).code(), 0x060100);
        assert_eq!(KernelVersion::new(5, 10, 300).code(), 0x050aff);
        assert_eq!("6.12".parse::<Bucket>().unwrap().base_code(), 0x060c00);
    }

    #[test]
    fn selects_highest_bucket_not_above_kernel() {
        let b = buckets();
        let pick =
            |s: &str| select_bucket(&KernelVersion::parse(s).unwrap(), &b).map(|b| b.to_string());
        assert_eq!(pick("5.10.0-32-cloud-amd64").unwrap(), "5.10");
        assert_eq!(pick("5.15.0-100-generic").unwrap(), "5.10");
        assert_eq!(pick("6.1").unwrap(), "6.1");
        assert_eq!(pick("6.11.2").unwrap(), "6.1");
        assert_eq!(pick("6.12.117+deb13-cloud-amd64").unwrap(), "6.12");
        assert_eq!(pick("7.1.3+deb13-cloud-amd64").unwrap(), "6.12");
        assert_eq!(pick("7.2.6+deb13-cloud-amd64").unwrap(), "7.2");
        assert_eq!(pick("9.0").unwrap(), "7.2");
        let err = pick("4.18.0-372.32.1.el8_6.x86_64").unwrap_err();
        assert!(matches!(err, BucketError::TooOld { .. }));
        assert!(
            err.to_string()
                .contains("older than the oldest bucket 5.10"),
            "{err}"
        );
        assert_eq!(
            select_bucket(&KernelVersion::new(6, 1, 0), &[]),
            Err(BucketError::NoBuckets)
        );
    }

    #[test]
    fn bucket_parsing() {
        assert_eq!(
            "6.12".parse::<Bucket>().unwrap(),
            Bucket {
                major: 6,
                minor: 12
            }
        );
        assert!(matches!(
            "6.1.3".parse::<Bucket>(),
            Err(BucketError::HasPatch { .. })
        ));
        for bad in ["", "6", "6.", "x.1", "6.1-rc", "999.1"] {
            assert!(bad.parse::<Bucket>().is_err(), "{bad}");
        }
        // Ordering is numeric, not lexical.
        let mut b = ["6.12".parse::<Bucket>().unwrap(), "6.2".parse().unwrap()];
        b.sort();
        assert_eq!(b[0].to_string(), "6.2");
    }
}
