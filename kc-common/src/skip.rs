//! How a test that needs what this machine lacks (root, Docker, act, a tool) says so. A skip
//! is never a silent pass: it is printed, recorded in the file `KC_SKIP_LOG` names (where
//! `cargo xtask test` counts the skips apart from the passes), and where `CI=true` it fails
//! the test, because CI has every resource.

use std::io::Write;

/// The environment variable naming the file each skip is appended to (one line per skip:
/// the test, a tab, the reason).
pub const SKIP_LOG: &str = "KC_SKIP_LOG";

/// Whether this run is CI's (`CI=true`, as GitHub Actions, act and `.ci/run` set it): there no
/// resource is missing, so nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records that `test` could not run here, and why (say what to install). Under CI this
/// panics: the test fails.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test} cannot run: {reason} (CI=true, where a skipped test is a failure)"
    );
    eprintln!("skipped {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG) {
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        // O_APPEND: tests of several threads and processes append whole lines.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "could not record the skip in {}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

/// The skips a log holds: (test, reason), in the order they were recorded.
pub fn read_log(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(t, r)| (t.to_string(), r.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_back_as_written() {
        let got = read_log("a_test\tno docker\nb\tno act: run setup\n\ngarbage\n");
        assert_eq!(
            got,
            vec![
                ("a_test".to_string(), "no docker".to_string()),
                ("b".to_string(), "no act: run setup".to_string())
            ]
        );
    }
}
