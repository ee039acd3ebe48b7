//! The one way this pipeline runs another program. Short tools go through xshell (`cmd!`);
//! only long-lived children (qemu guests, container log streams) use `std::process` directly.
//! A failure always says the same three things: what ran, how it ended, and the tail of
//! what it printed.

use std::path::Path;
use std::process::Output;

use xshell::{Cmd, Shell};

/// Lines of output a failure carries.
const TAIL_LINES: usize = 40;
/// A command line longer than this is shortened in messages (compiler lines run to kilobytes).
const SHOWN_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
#[error("{program} failed ({status}): `{command}`\n{tail}")]
pub struct ToolError {
    /// The program's file name.
    pub program: String,
    /// The command line, shortened.
    pub command: String,
    /// `exit status: 1`, `signal: 9`, or why it could not start.
    pub status: String,
    /// The last lines of its stderr (else stdout).
    pub tail: String,
}

/// A shell whose commands run in the current directory.
pub fn shell() -> Shell {
    Shell::new().expect("the current directory is readable")
}

/// A shell whose commands run in `dir`.
pub fn shell_in(dir: &Path) -> Shell {
    let sh = shell();
    sh.change_dir(dir);
    sh
}

fn describe(cmd: &Cmd<'_>) -> (String, String) {
    let line = cmd.to_string();
    let program = line
        .split_whitespace()
        .next()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    let shown = if line.chars().count() > SHOWN_CHARS {
        let head: String = line.chars().take(SHOWN_CHARS).collect();
        format!("{head} …")
    } else {
        line
    };
    (program, shown)
}

/// The last [`TAIL_LINES`] lines of the output, stderr first.
pub fn tail_of(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        stderr
    };
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// The variables `cargo run` sets for the program it runs (its manifest, package and binary,
/// which describe xtask, not what xtask runs).
pub fn set_by_cargo_run(name: &str) -> bool {
    matches!(
        name,
        "CARGO"
            | "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
    ) || name.starts_with("CARGO_PKG_")
}

/// Finds the checkout, then drops what `cargo run` told this process about itself, so that
/// no child inherits it. A cargo that inherits `CARGO_PKG_NAME=xtask` or `CARGO_MANIFEST_DIR`
/// re-runs every build script that watches them (ring's, through the cc crate) and rebuilds
/// what depends on it, and a cargo without them (the rehearsal's jobs, the next `cargo
/// xtask`) rebuilds it all again. Called first thing in `main`, before any thread starts.
pub fn forget_cargo_run() {
    crate::paths::project_root();
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            std::env::remove_var(name);
        }
    }
}

/// `cmd` without what `cargo run` or `cargo test` told this process about itself (see
/// [`forget_cargo_run`]; a test binary has it too, and a `cargo build` it runs would
/// rebuild what watches it).
fn without_cargo_run(cmd: Cmd<'_>) -> Cmd<'_> {
    std::env::vars_os()
        .filter(|(name, _)| name.to_str().is_some_and(set_by_cargo_run))
        .fold(cmd, |cmd, (name, _)| cmd.env_remove(name))
}

/// Runs `cmd`, capturing its output, whatever its exit status; an error only when it could
/// not start.
pub fn capture(cmd: Cmd<'_>) -> Result<Output, ToolError> {
    let (program, command) = describe(&cmd);
    without_cargo_run(cmd)
        .quiet()
        .ignore_status()
        .output()
        .map_err(|e| ToolError {
            program,
            command,
            status: format!("could not start: {e}"),
            tail: String::new(),
        })
}

/// Runs `cmd`, capturing its output; a nonzero exit is an error.
pub fn output(cmd: Cmd<'_>) -> Result<Output, ToolError> {
    let (program, command) = describe(&cmd);
    let out = capture(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(ToolError {
            program,
            command,
            status: out.status.to_string(),
            tail: tail_of(&out),
        })
    }
}

/// Runs `cmd`, a tool that reports in JSON on stdout (kc-loader --json: a
/// `kc_common::report::LoaderReport`), whatever its exit status: the report as `T`, and the
/// status. No report of that type is an error with the tool's output tail.
pub fn json<T: serde::de::DeserializeOwned>(
    cmd: Cmd<'_>,
) -> Result<(T, std::process::ExitStatus), ToolError> {
    let (program, command) = describe(&cmd);
    let out = capture(cmd)?;
    serde_json::from_slice(&out.stdout)
        .map(|v| (v, out.status))
        .map_err(|e| ToolError {
            program,
            command,
            status: format!(
                "{}, and printed no report of the type {} ({e})",
                out.status,
                std::any::type_name::<T>()
            ),
            tail: tail_of(&out),
        })
}

/// Runs `cmd` and returns its stdout, trimmed.
pub fn read(cmd: Cmd<'_>) -> Result<String, ToolError> {
    output(cmd).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Runs `cmd` with its output on our terminal (long steps a user watches: `cargo test`).
pub fn stream(cmd: Cmd<'_>) -> Result<(), ToolError> {
    let (program, command) = describe(&cmd);
    let status = std::process::Command::from(without_cargo_run(cmd)).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ToolError {
            program,
            command,
            status: s.to_string(),
            tail: "(its output is above)".into(),
        }),
        Err(e) => Err(ToolError {
            program,
            command,
            status: format!("could not start: {e}"),
            tail: String::new(),
        }),
    }
}

/// Whether `program` can be started at all (probes for optional tools).
pub fn exists(program: &str) -> bool {
    let sh = shell();
    capture(xshell::cmd!(sh, "{program} --version")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xshell::cmd;

    #[test]
    fn a_failure_says_what_ran_how_it_ended_and_its_tail() {
        let sh = shell();
        let script = "for i in $(seq 1 60); do echo line$i >&2; done; exit 3";
        let e = output(cmd!(sh, "sh -c {script}")).unwrap_err();
        assert_eq!(e.program, "sh");
        assert!(e.status.contains("exit status: 3"), "{}", e.status);
        assert!(e.command.starts_with("sh -c"), "{}", e.command);
        assert!(
            e.tail.starts_with("line21\n") && e.tail.ends_with("line60"),
            "{}",
            e.tail
        );
        let text = e.to_string();
        assert!(
            text.starts_with("sh failed (exit status: 3): `sh -c"),
            "{text}"
        );
    }

    #[test]
    fn missing_programs_and_long_lines() {
        let sh = shell();
        let e = read(cmd!(sh, "kc-no-such-program-here")).unwrap_err();
        assert!(e.status.starts_with("could not start"), "{}", e.status);
        assert!(!exists("kc-no-such-program-here"));
        let long = "x".repeat(1000);
        let e = output(cmd!(sh, "false {long}")).unwrap_err();
        assert!(e.command.chars().count() < SHOWN_CHARS + 3, "{}", e.command);
        assert_eq!(read(cmd!(sh, "echo ' hi '")).unwrap(), "hi");
        let dir = tempfile::tempdir().unwrap();
        let sh = shell_in(dir.path());
        let pwd = read(cmd!(sh, "pwd")).unwrap();
        assert_eq!(Path::new(&pwd), dir.path().canonicalize().unwrap());
    }

    #[test]
    fn what_cargo_run_set_is_told_from_what_the_user_set() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_VERSION",
            "CARGO_PKG_NAME",
            "CARGO",
        ] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in ["CARGO_HOME", "CARGO_TARGET_DIR", "PATH", "CARGO_LOG"] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }

    /// A test binary has what `cargo test` set (as xtask has what `cargo run` set): the
    /// commands it runs must not.
    #[test]
    fn a_command_inherits_nothing_cargo_set_for_this_process() {
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "cargo test sets it"
        );
        let sh = shell();
        let seen = read(cmd!(
            sh,
            "sh -c 'echo ${CARGO_MANIFEST_DIR-unset} ${CARGO_PKG_NAME-unset} ${PATH:+path}'"
        ))
        .unwrap();
        assert_eq!(seen, "unset unset path");
    }
}
