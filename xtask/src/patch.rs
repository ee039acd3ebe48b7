//! Applies unified diffs (`kernel-patches/<bucket>/*.diff[.gz]`) to a header tree.
//!
//! Paths are taken as `-p1` does (the first component, `a/` or `b/`, is dropped). Each hunk
//! must match its context exactly; it may have moved up to [`MAX_OFFSET`] lines (as `patch`
//! allows). A hunk that does not match is an error naming the patch, file and hunk.

use thiserror::Error;

const MAX_OFFSET: usize = 200;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("{patch}: line {line}: {reason}")]
    Parse {
        patch: String,
        line: usize,
        reason: String,
    },
    #[error("{patch}: hunk #{hunk} ({header}) does not apply to {file}: {reason}")]
    HunkFailed {
        patch: String,
        file: String,
        hunk: usize,
        header: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Path after `-p1`; `None` for `/dev/null` (file creation or deletion).
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    pub fn target(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub header: String,
    pub old_start: usize,
    /// (' ', '-' or '+', line text without its newline)
    pub lines: Vec<(char, String)>,
}

fn strip_p1(raw: &str) -> Option<String> {
    let path = raw.split('\t').next().unwrap_or(raw).trim();
    if path == "/dev/null" {
        return None;
    }
    Some(
        path.split_once('/')
            .map_or(path, |(_, rest)| rest)
            .to_string(),
    )
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    let (start, count) = match s.split_once(',') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => (s.parse().ok()?, 1),
    };
    Some((start, count))
}

/// Parses every file section of a unified diff (text before the first `---` is ignored).
pub fn parse(patch_name: &str, text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let err = |line: usize, reason: String| PatchError::Parse {
        patch: patch_name.to_string(),
        line,
        reason,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !(lines[i].starts_with("--- ")
            && lines.get(i + 1).is_some_and(|l| l.starts_with("+++ ")))
        {
            i += 1;
            continue;
        }
        let old_path = strip_p1(&lines[i][4..]);
        let new_path = strip_p1(&lines[i + 1][4..]);
        for p in [&old_path, &new_path].into_iter().flatten() {
            if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(err(i + 1, format!("path {p:?} leaves the tree")));
            }
        }
        i += 2;
        let mut hunks = Vec::new();
        while i < lines.len() && lines[i].starts_with("@@ ") {
            let header = lines[i].to_string();
            let ranges: Vec<&str> = header
                .trim_start_matches("@@ ")
                .split(" @@")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let parsed = match ranges.as_slice() {
                [old, new] => old
                    .strip_prefix('-')
                    .and_then(parse_range)
                    .zip(new.strip_prefix('+').and_then(parse_range)),
                _ => None,
            };
            let Some(((old_start, old_count), (_, new_count))) = parsed else {
                return Err(err(i + 1, format!("malformed hunk header {header:?}")));
            };
            i += 1;
            let (mut seen_old, mut seen_new) = (0, 0);
            let mut body = Vec::new();
            while seen_old < old_count || seen_new < new_count {
                let Some(line) = lines.get(i) else {
                    return Err(err(
                        i + 1,
                        format!("hunk {header:?} ends early (the patch is truncated)"),
                    ));
                };
                let (kind, rest) = match line.chars().next() {
                    Some(c @ (' ' | '-' | '+')) => (c, &line[1..]),
                    None => (' ', ""), // An empty context line whose space was stripped.
                    Some('\\') => {
                        i += 1;
                        continue;
                    }
                    Some(_) => {
                        return Err(err(
                            i + 1,
                            format!("unexpected line in hunk {header:?}: {line:?}"),
                        ))
                    }
                };
                if kind != '+' {
                    seen_old += 1;
                }
                if kind != '-' {
                    seen_new += 1;
                }
                body.push((kind, rest.to_string()));
                i += 1;
            }
            if seen_old != old_count || seen_new != new_count {
                return Err(err(
                    i,
                    format!("hunk {header:?} line counts do not match its header"),
                ));
            }
            while lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                i += 1;
            }
            hunks.push(Hunk {
                header,
                old_start,
                lines: body,
            });
        }
        if hunks.is_empty() {
            return Err(err(i + 1, "file section without hunks".into()));
        }
        files.push(FilePatch {
            old_path,
            new_path,
            hunks,
        });
    }
    if files.is_empty() {
        return Err(err(
            1,
            "no `---`/`+++` file section: not a unified diff".into(),
        ));
    }
    Ok(files)
}

/// Applies the hunks of one file to its contents (`""` for a new file).
pub fn apply(patch_name: &str, file: &FilePatch, original: &str) -> Result<String, PatchError> {
    let trailing_newline = original.is_empty() || original.ends_with('\n');
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    // Hunks apply in order; track how earlier hunks shifted line numbers.
    let mut delta: isize = 0;
    for (n, hunk) in file.hunks.iter().enumerate() {
        let fail = |reason: String| PatchError::HunkFailed {
            patch: patch_name.to_string(),
            file: file.target().to_string(),
            hunk: n + 1,
            header: hunk.header.clone(),
            reason,
        };
        let old: Vec<&str> = hunk
            .lines
            .iter()
            .filter(|(k, _)| *k != '+')
            .map(|(_, l)| l.as_str())
            .collect();
        let new: Vec<String> = hunk
            .lines
            .iter()
            .filter(|(k, _)| *k != '-')
            .map(|(_, l)| l.clone())
            .collect();
        let expected = (hunk.old_start.saturating_sub(1) as isize + delta).max(0) as usize;
        let expected = if old.is_empty() && hunk.old_start > 0 {
            expected + 1
        } else {
            expected
        };
        let matches_at = |at: usize| {
            at + old.len() <= lines.len()
                && lines[at..at + old.len()]
                    .iter()
                    .zip(&old)
                    .all(|(a, b)| a == b)
        };
        let found = (0..=MAX_OFFSET)
            .flat_map(|off| [expected.checked_add(off), expected.checked_sub(off)])
            .flatten()
            .find(|&at| matches_at(at));
        let Some(at) = found else {
            return Err(fail(format!(
                "its {} context/removed lines were not found within {MAX_OFFSET} lines of line {}",
                old.len(),
                hunk.old_start
            )));
        };
        lines.splice(at..at + old.len(), new.iter().cloned());
        delta += new.len() as isize - old.len() as isize + (at as isize - expected as isize);
    }
    let mut out = lines.join("\n");
    if !lines.is_empty() && trailing_newline {
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIG: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";

    const PATCH: &str = "\
Some description.
diff --git a/include/x.h b/include/x.h
--- a/include/x.h\t2024-01-01
+++ b/include/x.h
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
@@ -5,3 +5,4 @@ context
 five
 six
+six and a half
 seven
--- /dev/null
+++ b/include/new.h
@@ -0,0 +1,2 @@
+#pragma once
+int x;
";

    #[test]
    fn parses_and_applies() {
        let files = parse("p.diff", PATCH).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].target(), "include/x.h");
        assert_eq!(files[1].old_path, None);
        let out = apply("p.diff", &files[0], ORIG).unwrap();
        assert_eq!(
            out,
            "one\nTWO\nthree\nfour\nfive\nsix\nsix and a half\nseven\n"
        );
        assert_eq!(
            apply("p.diff", &files[1], "").unwrap(),
            "#pragma once\nint x;\n"
        );
    }

    #[test]
    fn applies_with_offset() {
        let files = parse("p.diff", PATCH).unwrap();
        let shifted = format!("zero\nminus one\n{ORIG}");
        let out = apply("p.diff", &files[0], &shifted).unwrap();
        assert!(out.starts_with("zero\nminus one\none\nTWO\n"), "{out}");
        assert!(out.contains("six and a half\nseven\n"));
    }

    #[test]
    fn failing_hunk_names_patch_file_and_hunk() {
        let files = parse("0001-fix.diff", PATCH).unwrap();
        let changed = ORIG.replace("six", "SIX");
        let err = apply("0001-fix.diff", &files[0], &changed).unwrap_err();
        match &err {
            PatchError::HunkFailed {
                patch, file, hunk, ..
            } => {
                assert_eq!(
                    (patch.as_str(), file.as_str(), *hunk),
                    ("0001-fix.diff", "include/x.h", 2)
                );
            }
            e => panic!("{e}"),
        }
        assert!(
            err.to_string()
                .contains("hunk #2 (@@ -5,3 +5,4 @@ context)"),
            "{err}"
        );
    }

    #[test]
    fn malformed_patches() {
        for (text, want) in [
            ("just text\n", "not a unified diff"),
            ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n one\n", "truncated"),
            ("--- a/x\n+++ b/x\n@@ bogus @@\n", "malformed hunk header"),
            ("--- a/x\n+++ b/x\n", "without hunks"),
            (
                "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
                "leaves the tree",
            ),
            (
                "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n*b\n",
                "unexpected line",
            ),
        ] {
            let err = parse("bad.diff", text).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("bad.diff"),
                "{text:?}: {err}"
            );
        }
    }
}
