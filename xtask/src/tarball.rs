//! Deterministic tar archives: sorted entries, fixed mtime, uid/gid 0, no owner names,
//! normalized modes. The same entries give the same bytes.

use std::path::Path;

use anyhow::{bail, Context, Result};

pub struct Entry {
    pub name: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// `SOURCE_DATE_EPOCH` when set (it must be an integer), else the last commit's time, else 0.
pub fn source_date_epoch() -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return parse_source_date_epoch(&v);
    }
    let sh = crate::process::shell_in(&crate::paths::project_root());
    Ok(
        crate::process::read(xshell::cmd!(sh, "git log -1 --format=%ct"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    )
}

pub fn parse_source_date_epoch(v: &str) -> Result<u64> {
    v.trim().parse().with_context(|| {
        format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970 (e.g. `SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)`)")
    })
}

pub fn to_bytes(entries: Vec<Entry>, mtime: u64) -> Result<Vec<u8>> {
    to_bytes_led_by(None, entries, mtime)
}

/// The archive with `first` ahead of the sorted rest: a reader that streams it meets the index
/// (a release's manifest) before the files it describes, and can hold each to its entry.
pub fn to_bytes_led_by(
    first: Option<Entry>,
    mut entries: Vec<Entry>,
    mtime: u64,
) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(f) = first {
        if entries.iter().any(|e| e.name == f.name) {
            bail!("two entries named {}", f.name);
        }
        entries.insert(0, f);
    }
    if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        bail!("two entries named {}", w[0].name);
    }
    let mut b = tar::Builder::new(Vec::new());
    for e in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(&e.name)
            .with_context(|| format!("tar entry name {}", e.name))?;
        h.set_size(e.bytes.len() as u64);
        h.set_mode(if e.executable { 0o755 } else { 0o644 });
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &e.bytes[..])?;
    }
    Ok(b.into_inner()?)
}

/// Writes the archive through a temporary file and a rename.
pub fn write(path: &Path, entries: Vec<Entry>, mtime: u64) -> Result<()> {
    let bytes = to_bytes(entries, mtime)?;
    crate::atomic::write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(order: &[&str]) -> Vec<Entry> {
        order
            .iter()
            .map(|n| Entry {
                name: n.to_string(),
                bytes: n.as_bytes().to_vec(),
                executable: n.ends_with("loader"),
            })
            .collect()
    }

    #[test]
    fn a_leading_entry_comes_first_and_the_rest_sorted() {
        let first = Entry {
            name: "z.json".into(),
            bytes: b"{}".to_vec(),
            executable: false,
        };
        let tar = to_bytes_led_by(Some(first), entries(&["b.o", "a.o"]), 0).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["z.json", "a.o", "b.o"]);
        let dup = Entry {
            name: "a.o".into(),
            bytes: vec![],
            executable: false,
        };
        assert!(to_bytes_led_by(Some(dup), entries(&["a.o"]), 0).is_err());
    }

    #[test]
    fn same_entries_same_bytes_in_any_order() {
        let a = to_bytes(entries(&["b.o", "a.o", "kc-loader"]), 1700000000).unwrap();
        let b = to_bytes(entries(&["kc-loader", "a.o", "b.o"]), 1700000000).unwrap();
        assert_eq!(a, b);
        let mut ar = tar::Archive::new(&a[..]);
        let listed: Vec<(String, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed[0], ("a.o".to_string(), 0o644, 1700000000));
        assert_eq!(listed[2], ("kc-loader".to_string(), 0o755, 1700000000));
    }

    #[test]
    fn source_date_epoch_must_be_a_number() {
        assert_eq!(parse_source_date_epoch("1700000000").unwrap(), 1700000000);
        let e = format!("{:#}", parse_source_date_epoch("garbage").unwrap_err());
        assert!(
            e.contains("SOURCE_DATE_EPOCH=\"garbage\"") && e.contains("seconds since 1970"),
            "{e}"
        );
        assert!(parse_source_date_epoch("-5").is_err());
    }

    #[test]
    fn duplicate_names_are_refused() {
        assert!(to_bytes(entries(&["a", "a"]), 0).is_err());
    }
}
