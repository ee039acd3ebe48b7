//! Command-line types that several verbs share.

use clap::ValueEnum;
use kc_common::Libc;

/// `--libc`: one libc, or every libc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LibcChoice {
    Glibc,
    Musl,
    All,
}

impl LibcChoice {
    pub fn libcs(self) -> Vec<Libc> {
        match self {
            Self::Glibc => vec![Libc::Glibc],
            Self::Musl => vec![Libc::Musl],
            Self::All => Libc::ALL.to_vec(),
        }
    }
}

impl From<Libc> for LibcChoice {
    fn from(libc: Libc) -> Self {
        match libc {
            Libc::Glibc => Self::Glibc,
            Libc::Musl => Self::Musl,
        }
    }
}

/// The series a comma-separated environment variable `var` lists (how a workflow's variable
/// narrows a matrix); unset or empty: none, which the caller takes as "all".
pub fn series_from_env(var: &str) -> anyhow::Result<Vec<kc_common::Bucket>> {
    parse_series_list(var, std::env::var(var).ok().as_deref())
}

/// The names a comma-separated variable lists (unset or empty: none).
pub fn list_from_env(var: &str) -> Vec<String> {
    split_list(std::env::var(var).ok().as_deref().unwrap_or(""))
        .map(String::from)
        .collect()
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_series_list(var: &str, value: Option<&str>) -> anyhow::Result<Vec<kc_common::Bucket>> {
    use anyhow::Context;
    split_list(value.unwrap_or(""))
        .map(|s| {
            s.parse()
                .with_context(|| {
                    format!(
                        "{var}={:?}: {s:?} is not a kernel series; list series of kernels.toml, comma-separated (e.g. 5.10,7.3), or unset it for all",
                        value.unwrap_or("")
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_names_its_libcs() {
        for libc in Libc::ALL {
            assert_eq!(LibcChoice::from(libc).libcs(), [libc]);
            // The clap spelling is the libc's own name.
            let v = LibcChoice::from(libc).to_possible_value().unwrap();
            assert_eq!(v.get_name(), libc.as_str());
        }
        assert_eq!(LibcChoice::All.libcs(), Libc::ALL);
    }

    #[test]
    fn a_variable_lists_series_and_empty_means_all() {
        assert!(parse_series_list("V", None).unwrap().is_empty());
        assert!(parse_series_list("V", Some("")).unwrap().is_empty());
        let got = parse_series_list("V", Some("7.3, 5.10")).unwrap();
        assert_eq!(got, vec!["7.3".parse().unwrap(), "5.10".parse().unwrap()]);
        let e = format!(
            "{:#}",
            parse_series_list("V", Some("7.3,seven")).unwrap_err()
        );
        assert!(e.contains("V=") && e.contains("\"seven\""), "{e}");
    }
}
