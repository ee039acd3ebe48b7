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
}
