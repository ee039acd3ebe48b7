//! A suite's `Release` file, once its signature is checked: which suite it describes, until
//! when it may be trusted, and the checksums of the indexes it vouches for.
//!
//! Pure functions only; the signature itself is [`super::signature`]'s business.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "it describes suite {found:?} (Codename {codename:?}), not {wanted}: \
         the mirror answered with another suite's file (a replay or a misconfigured mirror); \
         check KC_DEBIAN_MIRROR or the apt sources"
    )]
    WrongSuite {
        wanted: String,
        found: String,
        codename: String,
    },
    #[error(
        "it expired on {valid_until} (Valid-Until), {ago} ago: the mirror serves a stale copy \
         (or replays an old one); use an up-to-date mirror"
    )]
    Expired { valid_until: String, ago: String },
    #[error(
        "its {field} field {value:?} is not a date of the form `Tue, 01 Dec 2026 02:12:15 UTC`"
    )]
    BadDate { field: &'static str, value: String },
}

/// The fields of a Release file this pipeline relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    pub valid_until: Option<String>,
    /// The `SHA256:` section: path → (size, sha256).
    pub sha256: BTreeMap<String, (u64, String)>,
}

impl Release {
    pub fn parse(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        Self {
            suite: field("Suite").unwrap_or_default(),
            codename: field("Codename").unwrap_or_default(),
            valid_until: field("Valid-Until"),
            sha256: checksums(text),
        }
    }

    /// Refuses a Release file for another suite, or one past its `Valid-Until` at `now`
    /// (seconds since the epoch). As apt does, a file without `Valid-Until` never expires.
    pub fn check_for(&self, wanted: &str, now: i64) -> Result<(), ReleaseError> {
        if self.suite != wanted && self.codename != wanted {
            return Err(ReleaseError::WrongSuite {
                wanted: wanted.into(),
                found: self.suite.clone(),
                codename: self.codename.clone(),
            });
        }
        if let Some(v) = &self.valid_until {
            let until = parse_date(v).ok_or_else(|| ReleaseError::BadDate {
                field: "Valid-Until",
                value: v.clone(),
            })?;
            if now > until {
                return Err(ReleaseError::Expired {
                    valid_until: v.clone(),
                    ago: human_duration(now - until),
                });
            }
        }
        Ok(())
    }
}

/// The `SHA256:` section of a Release file: path → (size, sha256).
fn checksums(text: &str) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut in_sha256 = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_sha256 = line.trim_end() == "SHA256:";
            continue;
        }
        if !in_sha256 {
            continue;
        }
        let mut w = line.split_whitespace();
        if let (Some(sha), Some(size), Some(path)) = (w.next(), w.next(), w.next()) {
            if let Ok(size) = size.parse() {
                out.insert(path.to_string(), (size, sha.to_ascii_lowercase()));
            }
        }
    }
    out
}

/// An archive date (`Tue, 01 Dec 2026 02:12:15 UTC`, RFC 2822 in UTC, the form dak writes) as
/// seconds since the epoch. Other zones are refused rather than guessed.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    // The weekday is optional and carries nothing the date does not.
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut w = s.split_whitespace();
    let day: i64 = w.next()?.parse().ok()?;
    let month = w.next()?;
    let year: i64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some()
        || !matches!(w.next()?, "UTC" | "GMT" | "+0000" | "Z")
        || w.next().is_some()
    {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn human_duration(secs: i64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKPORTS: &str = "Origin: Debian Backports\nSuite: oldstable-backports\nCodename: bookworm-backports\n\
        Date: Tue, 24 Nov 2026 02:12:15 UTC\nValid-Until: Tue, 01 Dec 2026 02:12:15 UTC\n\
        MD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n abcd 8790396 main/binary-amd64/Packages.xz\n EF01 300 main/binary-amd64/Packages.gz\n";

    #[test]
    fn reads_the_fields_and_the_sha256_section_only() {
        let r = Release::parse(BACKPORTS);
        assert_eq!(r.suite, "oldstable-backports");
        assert_eq!(r.codename, "bookworm-backports");
        assert_eq!(
            r.valid_until.as_deref(),
            Some("Tue, 01 Dec 2026 02:12:15 UTC")
        );
        assert_eq!(
            r.sha256["main/binary-amd64/Packages.xz"],
            (8790396, "abcd".into())
        );
        assert_eq!(
            r.sha256["main/binary-amd64/Packages.gz"],
            (300, "ef01".into())
        );
        assert_eq!(r.sha256.len(), 2);
    }

    #[test]
    fn archive_dates_are_utc_seconds() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Tue, 14 Nov 2023 22:13:20 UTC"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_date("29 Feb 2024 00:00:00 +0000"),
            Some(1_709_164_800)
        );
        for bad in [
            "Tue, 01 Dec 2026 02:12:15 CET",
            "Tue, 01 Dek 2026 02:12:15 UTC",
            "Tue, 01 Dec 2026 02:12 UTC",
            "Tue, 32 Dec 2026 02:12:15 UTC",
            "Tue, 01 Dec 2026 02:12:15 UTC extra",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_suite_matches_by_suite_or_codename() {
        let r = Release::parse(BACKPORTS);
        let before = parse_date("Mon, 30 Nov 2026 00:00:00 UTC").unwrap();
        assert_eq!(r.check_for("bookworm-backports", before), Ok(()));
        assert_eq!(r.check_for("oldstable-backports", before), Ok(()));
        let e = r.check_for("trixie-backports", before).unwrap_err();
        assert!(matches!(e, ReleaseError::WrongSuite { .. }), "{e}");
        assert!(e.to_string().contains("not trixie-backports"), "{e}");
    }

    #[test]
    fn an_expired_release_is_refused_and_says_since_when() {
        let r = Release::parse(BACKPORTS);
        let later = parse_date("Thu, 03 Dec 2026 02:12:15 UTC").unwrap();
        let e = r.check_for("bookworm-backports", later).unwrap_err();
        assert_eq!(
            e,
            ReleaseError::Expired {
                valid_until: "Tue, 01 Dec 2026 02:12:15 UTC".into(),
                ago: "2 days".into()
            }
        );
        // Without Valid-Until (the stable suites), a Release file does not expire.
        let stable = Release::parse("Suite: stable\nCodename: bookworm\n");
        assert_eq!(stable.check_for("bookworm", i64::MAX), Ok(()));
        let garbled = Release::parse("Codename: bookworm\nValid-Until: soon\n");
        assert!(matches!(
            garbled.check_for("bookworm", 0),
            Err(ReleaseError::BadDate { .. })
        ));
    }
}
