//! The exporter's flags: the command line, then its flags file (`--config`), re-read on
//! SIGHUP. A flag given twice takes the last value: the file's win over the command line's.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kc_common::report::GroupBy;
use kc_common::select::LegacyMode;
use kc_common::AttachMode;

#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "kc-exporter",
    version,
    args_override_self = true,
    about = "Serve an installed kernel-collector release's counters as a Prometheus exporter"
)]
pub struct Flags {
    /// The installed release; default: the one this program belongs to, else
    /// /usr/libexec/kernel-collector/current
    #[arg(long)]
    pub release: Option<PathBuf>,
    /// Where to serve /metrics
    #[arg(long, default_value = "127.0.0.1:9435")]
    pub listen: SocketAddr,
    /// Per-application rows: by process (pid, comm), by cgroup, or none (totals only)
    #[arg(long, default_value = "process")]
    pub group_by: GroupBy,
    /// Rows of each per-application table (default: twice the processes or cgroups found at
    /// start, a power of two from 2,048 to 65,536)
    #[arg(long)]
    pub table_size: Option<u32>,
    /// Per-application series at most, the most active rows first; the rest are summed into
    /// comm="other" (cgroup="other")
    #[arg(long, default_value_t = 2000)]
    pub max_series: usize,
    /// `auto` (the cheapest family per event), or one family for every event
    #[arg(long, default_value = "auto")]
    pub attach: AttachMode,
    /// Serve these collectors only (repeatable; default: every collector of the release)
    #[arg(long = "collector", value_name = "NAME")]
    pub collectors: Vec<String>,
    /// Which legacy object where a collector needs one: entry or return
    #[arg(long, default_value_t = LegacyMode::default())]
    pub legacy_mode: LegacyMode,
    /// The loader kc-select's trial load asks the kernel with; default: the release's
    #[arg(long)]
    pub loader: Option<PathBuf>,
    /// A file of more flags (one or more per line, `#` starts a comment), read after the
    /// command line and again on SIGHUP
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The largest flags file read.
const FILE_CAP: u64 = 64 << 10;

impl Flags {
    /// The command line `args` (without the program's name), then the flags file it names.
    pub fn parse(args: &[OsString]) -> Result<Flags> {
        let first = Flags::try_parse_from(program(args.iter().cloned()))?;
        let Some(file) = &first.config else {
            return Ok(first);
        };
        let more = read_file(file)?;
        let flags = Flags::try_parse_from(program(args.iter().cloned().chain(more)))
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if flags.config != first.config {
            bail!(
                "{}: --config cannot name another flags file",
                file.display()
            );
        }
        Ok(flags)
    }

    /// The change from `self` to `new` needs the objects loaded again (what they count or
    /// how their tables are sized changed).
    pub fn reload_needed(&self, new: &Flags) -> bool {
        let what = |f: &Flags| {
            (
                f.release.clone(),
                f.group_by,
                f.table_size,
                f.attach,
                f.collectors.clone(),
                f.legacy_mode,
                f.loader.clone(),
            )
        };
        what(self) != what(new)
    }
}

fn program(args: impl Iterator<Item = OsString>) -> impl Iterator<Item = OsString> {
    std::iter::once(OsString::from("kc-exporter")).chain(args)
}

/// The flags in `path`: whitespace-separated words, `#` to the end of a line a comment.
fn read_file(path: &Path) -> Result<Vec<OsString>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(FILE_CAP + 1).read_to_string(&mut text))
        .with_context(|| format!("reading the flags file {}", path.display()))?;
    if text.len() as u64 > FILE_CAP {
        bail!("the flags file {} is over {FILE_CAP} bytes", path.display());
    }
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .map(OsString::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_files_flags_come_after_the_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags");
        std::fs::write(
            &file,
            "# the exporter\n--max-series 10  # few\n--group-by=cgroup\n--collector vfs\n",
        )
        .unwrap();
        let f = Flags::parse(&args(&[
            "--max-series",
            "5",
            "--collector",
            "fd",
            "--config",
            file.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(f.max_series, 10);
        assert_eq!(f.group_by, GroupBy::Cgroup);
        assert_eq!(f.collectors, ["fd", "vfs"]);
        assert_eq!(f.listen.to_string(), "127.0.0.1:9435");
    }

    #[test]
    fn a_bad_flags_file_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags");
        std::fs::write(&file, "--group-by everything\n").unwrap();
        let e = Flags::parse(&args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(format!("{e:#}").contains(file.to_str().unwrap()), "{e:#}");
        let e = Flags::parse(&args(&["--config", "/nonexistent/flags"])).unwrap_err();
        assert!(
            format!("{e:#}").contains("reading the flags file /nonexistent/flags"),
            "{e:#}"
        );
    }

    #[test]
    fn only_what_the_objects_count_needs_a_reload() {
        let a = Flags::parse(&[]).unwrap();
        let mut b = a.clone();
        b.max_series = 3;
        assert!(!a.reload_needed(&b));
        b.table_size = Some(512);
        assert!(a.reload_needed(&b));
    }
}
