//! The `Packages` index of a Debian suite: stanzas of `Field: value` lines.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("{source_name}: line {line}: {reason}; the index is malformed (a truncated or wrong download?). Check the mirror, then run `cargo xtask kernels lock` again")]
    Malformed {
        source_name: String,
        line: usize,
        reason: String,
    },
}

/// One binary package of the index, with what the lock needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Pool path relative to the archive root, e.g. `pool/main/l/linux/...deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub depends: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// `Some(v)` for an exact `(= v)` relation.
    pub exact_version: Option<String>,
}

/// Parses an index, keeping the packages whose name passes `keep` (the index of a suite
/// holds tens of thousands; the lock needs a few hundred). Every stanza is checked for syntax,
/// kept ones for the fields the lock needs.
pub fn parse(
    source_name: &str,
    text: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Package>, IndexError> {
    let mut out = Vec::new();
    let mut fields: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut last_field: Option<&str> = None;
    let err = |line: usize, reason: String| IndexError::Malformed {
        source_name: source_name.to_string(),
        line,
        reason,
    };
    let mut finish =
        |fields: &mut BTreeMap<&str, (usize, &str)>, end_line: usize| -> Result<(), IndexError> {
            if fields.is_empty() {
                return Ok(());
            }
            let stanza_line = fields.values().map(|(l, _)| *l).min().unwrap_or(end_line);
            let Some(&(_, name)) = fields.get("Package") else {
                return Err(err(stanza_line, "stanza without a Package field".into()));
            };
            if keep(name) {
                out.push(package_from(fields, stanza_line, &err)?);
            }
            fields.clear();
            Ok(())
        };
    let mut line_no = 0;
    for line in text.lines() {
        line_no += 1;
        if line.trim().is_empty() {
            finish(&mut fields, line_no)?;
            last_field = None;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if last_field.is_none() {
                return Err(err(line_no, "continuation line outside a field".into()));
            }
            continue; // Multi-line values (descriptions) are not needed.
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(err(
                line_no,
                format!("expected `Field: value`, found {:?}", truncate(line)),
            ));
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(
                line_no,
                format!("invalid field name {:?}", truncate(key)),
            ));
        }
        if fields.insert(key, (line_no, value.trim())).is_some() {
            return Err(err(line_no, format!("field {key} repeated in one stanza")));
        }
        last_field = Some(key);
    }
    finish(&mut fields, line_no + 1)?;
    Ok(out)
}

fn package_from(
    fields: &BTreeMap<&str, (usize, &str)>,
    stanza_line: usize,
    err: &impl Fn(usize, String) -> IndexError,
) -> Result<Package, IndexError> {
    let name = fields["Package"].1;
    let get = |key: &str| -> Result<(usize, &str), IndexError> {
        fields
            .get(key)
            .copied()
            .filter(|(_, v)| !v.is_empty())
            .ok_or_else(|| err(stanza_line, format!("package {name} has no {key} field")))
    };
    let (size_line, size) = get("Size")?;
    let size = size.parse::<u64>().map_err(|_| {
        err(
            size_line,
            format!("package {name}: Size {size:?} is not a number"),
        )
    })?;
    let (sha_line, sha256) = get("SHA256")?;
    if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(err(
            sha_line,
            format!(
                "package {name}: SHA256 {:?} is not 64 hex digits",
                truncate(sha256)
            ),
        ));
    }
    let (file_line, filename) = get("Filename")?;
    if filename.starts_with('/') || filename.split('/').any(|c| c == "..") {
        return Err(err(
            file_line,
            format!("package {name}: Filename {filename:?} leaves the archive"),
        ));
    }
    Ok(Package {
        name: name.to_string(),
        version: get("Version")?.1.to_string(),
        filename: filename.to_string(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        depends: fields
            .get("Depends")
            .map(|(_, d)| parse_depends(d))
            .unwrap_or_default(),
    })
}

/// `a (= 1), b (>= 2) | c, d:any` → every alternative, flattened: the lock only asks
/// "which packages does this one name, and at which exact version".
pub fn parse_depends(value: &str) -> Vec<Dependency> {
    value
        .split([',', '|'])
        .filter_map(|alt| {
            let alt = alt.trim();
            let (name, relation) = match alt.split_once('(') {
                Some((n, r)) => (n.trim(), Some(r.trim_end_matches(')').trim())),
                None => (alt, None),
            };
            let name = name.split(':').next().unwrap_or(name).trim();
            if name.is_empty() {
                return None;
            }
            let exact_version = relation
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().to_string());
            Some(Dependency {
                name: name.to_string(),
                exact_version,
            })
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
Package: linux-headers-6.1.0-50-cloud-amd64
Source: linux
Version: 6.1.176-1
Depends: linux-headers-6.1.0-50-common (= 6.1.176-1), linux-kbuild-6.1 (>= 6.1.176-1), linux-compiler-gcc-12-x86
Description: Header files for Linux 6.1.0-50-cloud-amd64
 A second line of the description.
Filename: pool/main/l/linux/linux-headers-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb
Size: 1440280
SHA256: 9fdb34aac8cbd0519c78c2e69db5a4d02df1e82a797bfde0dbbe7a1da4379a92

Package: zsh
Version: 5.9-4
Filename: pool/main/z/zsh/zsh_5.9-4_amd64.deb
Size: 1
SHA256: 00
";

    #[test]
    fn parses_kept_packages_only() {
        let pkgs = parse("bookworm", GOOD, |n| n.starts_with("linux-")).unwrap();
        assert_eq!(pkgs.len(), 1);
        let p = &pkgs[0];
        assert_eq!(p.version, "6.1.176-1");
        assert_eq!(p.size, 1440280);
        assert_eq!(p.depends.len(), 3);
        assert_eq!(p.depends[0].name, "linux-headers-6.1.0-50-common");
        assert_eq!(p.depends[0].exact_version.as_deref(), Some("6.1.176-1"));
        assert_eq!(p.depends[1].exact_version, None);
    }

    #[test]
    fn kept_package_with_bad_fields_is_an_error_with_line() {
        let err = parse("bookworm", GOOD, |_| true).unwrap_err().to_string();
        assert!(
            err.contains("bookworm: line 15") && err.contains("SHA256"),
            "{err}"
        );
    }

    #[test]
    fn malformed_indexes() {
        let cases = [
            ("Package: a\nthis line has no colon\n", "line 2", "expected `Field: value`"),
            (" continuation\n", "line 1", "continuation line"),
            ("Version: 1\nFilename: x\n", "line 1", "without a Package"),
            ("Package: linux-a\nPackage: linux-b\n", "line 2", "repeated"),
            ("Package: linux-a\nVersion: 1\nFilename: pool/x.deb\nSize: ten\nSHA256: 00\n", "line 4", "not a number"),
            ("Package: linux-a\nVersion: 1\nSize: 1\nSHA256: 9fdb34aac8cbd0519c78c2e69db5a4d02df1e82a797bfde0dbbe7a1da4379a92\n", "line 1", "no Filename"),
            ("Package: linux-a\nVersion: 1\nFilename: ../../etc/passwd\nSize: 1\nSHA256: 9fdb34aac8cbd0519c78c2e69db5a4d02df1e82a797bfde0dbbe7a1da4379a92\n", "line 3", "leaves the archive"),
            ("\u{0}\u{1}binary garbage", "line 1", "expected"),
        ];
        for (text, line, what) in cases {
            let err = parse("suite", text, |n| n.starts_with("linux-"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(line) && err.contains(what), "{text:?}: {err}");
            assert!(err.contains("kernels lock"), "{err}");
        }
    }

    #[test]
    fn depends_alternatives_and_arch_qualifiers() {
        let d = parse_depends("dracut | initramfs-tools (>= 0.120+deb8u2), linux-binary-7.2.12+deb13-cloud-amd64 (= 7.2.12-1~bpo13+1), perl:any");
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dracut",
                "initramfs-tools",
                "linux-binary-7.2.12+deb13-cloud-amd64",
                "perl"
            ]
        );
        assert_eq!(d[2].exact_version.as_deref(), Some("7.2.12-1~bpo13+1"));
    }
}
