//! A row's id as labels: a process's pid and `comm` (from `/proc`), a cgroup's path (its id is
//! the inode of its directory in the cgroup2 hierarchy).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kc_common::report::GroupBy;

use crate::metrics::RowLabels;

/// Directories of the cgroup hierarchy walked at most, to find a cgroup's path.
const CGROUP_WALK_CAP: usize = 100_000;

#[derive(Debug)]
pub struct Host {
    proc: PathBuf,
    cgroup_root: PathBuf,
    comms: HashMap<u32, String>,
    cgroups: HashMap<u64, String>,
    walked: bool,
}

impl Host {
    pub fn new() -> Host {
        Host {
            proc: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            comms: HashMap::new(),
            cgroups: HashMap::new(),
            walked: false,
        }
    }

    /// A new scrape: cgroups created since the last walk may be looked up again.
    pub fn next_scrape(&mut self) {
        self.walked = false;
        if self.comms.len() > 1 << 16 {
            self.comms.clear();
        }
    }

    fn comm(&mut self, pid: u32) -> String {
        if let Some(c) = self.comms.get(&pid) {
            return c.clone();
        }
        // A process gone before its first scrape has no comm left to read.
        let Ok(c) = std::fs::read_to_string(self.proc.join(pid.to_string()).join("comm")) else {
            return String::new();
        };
        let c = c.trim_end_matches('\n').to_string();
        self.comms.insert(pid, c.clone());
        c
    }

    fn cgroup(&mut self, id: u64) -> Option<String> {
        if !self.walked && !self.cgroups.contains_key(&id) {
            self.walked = true;
            self.cgroups = walk(&self.cgroup_root);
        }
        self.cgroups.get(&id).cloned()
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

/// Inode -> path (relative to the root, `/` for it) of every cgroup directory.
fn walk(root: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if out.len() >= CGROUP_WALK_CAP {
            break;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let rel = dir.strip_prefix(root).unwrap_or(&dir);
        out.insert(meta.ino(), format!("/{}", rel.display()));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        stack.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    out
}

impl RowLabels for Host {
    fn labels(&mut self, group_by: GroupBy, id: u64) -> Vec<(String, String)> {
        match group_by {
            GroupBy::Cgroup => {
                let path = self.cgroup(id).unwrap_or_else(|| format!("id:{id}"));
                vec![("cgroup".into(), path)]
            }
            _ => vec![
                ("pid".into(), id.to_string()),
                ("comm".into(), self.comm(id as u32)),
            ],
        }
    }

    fn alive(&self, group_by: GroupBy, id: u64) -> bool {
        match group_by {
            GroupBy::Cgroup => self.cgroups.contains_key(&id),
            _ => self.proc.join(id.to_string()).exists(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_labelled_by_its_pid_and_comm() {
        let mut h = Host::new();
        let me = std::process::id();
        let l = h.labels(GroupBy::Process, u64::from(me));
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        assert_eq!(
            l,
            [
                ("pid".into(), me.to_string()),
                ("comm".into(), comm.trim().to_string())
            ]
        );
        assert!(h.alive(GroupBy::Process, u64::from(me)));
    }

    #[test]
    fn a_cgroup_is_labelled_by_its_path_found_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("system.slice/app.service")).unwrap();
        let ino = std::fs::metadata(dir.path().join("system.slice/app.service"))
            .unwrap()
            .ino();
        let mut h = Host {
            cgroup_root: dir.path().to_path_buf(),
            ..Host::new()
        };
        assert_eq!(
            h.labels(GroupBy::Cgroup, ino),
            [("cgroup".into(), "/system.slice/app.service".into())]
        );
        assert_eq!(
            h.labels(GroupBy::Cgroup, 1),
            [("cgroup".into(), "id:1".into())]
        );
    }
}
