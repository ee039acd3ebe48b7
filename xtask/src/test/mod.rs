//! `cargo xtask test`: every test (`cargo test`), then end-to-end checks against the real
//! mirror, toolchain, Docker engine, kernel, qemu and act. Checks are named and can be chosen
//! (`cargo xtask test build vmtest`; `--list` names them); a check that cannot run here is
//! reported as skipped with its reason, counted apart, and under `CI=true` fails the run.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use clap::Args;
use kc_common::skip::{in_ci, read_log, SKIP_LOG};
use xshell::cmd;

use crate::compile::{cell, Backend, BuildOptions};
use crate::{paths, process, setup};

pub(crate) mod agent;
mod arm64;
mod docker;
pub(crate) mod exporter;
mod exporter_dns;
mod host;
mod live_flows;
mod map_reads;
mod pipeline;
mod select;
mod vm;

/// Every cell of the host's libc, with the host's tools.
fn all_cells() -> BuildOptions {
    BuildOptions::everything(Backend::Host, None)
}

/// Every cell under `artifacts/cells/` carries the BPF objects and skeletons of its other
/// libc's cell byte for byte (they do not depend on the loader's libc).
fn libcs_agree() -> Result<()> {
    let cells = cell::read_all(&paths::cells_dir())?;
    let disagreements = cell::libc_disagreements(&cells);
    ensure!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    Ok(())
}

#[derive(Debug, Args)]
pub struct TestOptions {
    /// Run only these checks (and the checks whose outputs they read); default: every check
    #[arg(value_name = "CHECK")]
    pub checks: Vec<String>,
    /// Leave these checks out (repeatable), e.g. the rehearsal inside a workflow
    #[arg(long, value_name = "CHECK")]
    pub exclude: Vec<String>,
    /// List the checks, what each proves and what it reads, then exit
    #[arg(long)]
    pub list: bool,
    /// Run only `cargo test` (installs nothing); the same as `cargo xtask test unit`
    #[arg(long, conflicts_with_all = ["e2e_only", "checks"])]
    pub unit_only: bool,
    /// Run only the end-to-end checks, not `cargo test`
    #[arg(long, conflicts_with = "checks")]
    pub e2e_only: bool,
}

/// How a check ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// It could not run here (a resource this machine lacks), and why.
    Skipped(String),
}

/// A check: its name (for `cargo xtask test NAME`), the checks whose outputs it reads (run
/// first when it is chosen alone), what it proves, and the check itself.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub after: &'static [&'static str],
    pub proves: &'static str,
    pub run: fn() -> Result<Verdict>,
}

/// `cargo test` of the workspace; tests that skip say so through `KC_SKIP_LOG`.
const UNIT: &str = "unit";

/// Every check, in an order where each comes after the checks it reads.
pub const CHECKS: &[Check] = &[
    Check {
        name: UNIT,
        after: &[],
        proves: "cargo test of the workspace (unit and integration tests; tests that need what this machine lacks are reported as skipped)",
        run: unit,
    },
    Check {
        name: "live-lock",
        after: &[],
        proves: "the live mirror resolves the matrix, trusting only signed indexes",
        run: pipeline::live_lock,
    },
    Check {
        name: "fetch",
        after: &[],
        proves: "the lock covers the matrix; a cold fetch of the oldest bucket, then a warm one that does no network I/O",
        run: pipeline::fetch,
    },
    Check {
        name: "build",
        after: &[],
        proves: "every cell of the host's libc builds with the host's tools, then a no-op rebuild compiles nothing",
        run: pipeline::build,
    },
    Check {
        name: "host-load",
        after: &["build"],
        proves: "kc-loader --attach auto attaches every CO-RE and host-bucket legacy object on the host kernel (needs root)",
        run: host::host_load,
    },
    Check {
        name: "app-tables",
        after: &["build"],
        proves: "per-application tables: bounded by --table-size, rows of exited processes reported once then removed, grouped by cgroup or not at all; with --streams on each released process's exit and final row come through the ring buffer instead, with --streams off the stream's counters are unobserved; an agent on the skeleton and shipped headers reads them (needs root)",
        run: host::app_tables,
    },
    Check {
        name: "map-reads",
        after: &["build"],
        proves: "kc-loader reads full per-application tables the same in batches (BPF_MAP_LOOKUP_BATCH) and key by key: every filled row with its counts; an unknown --map-reads is refused (needs root)",
        run: map_reads::map_reads,
    },
    Check {
        name: "no-false-zeros",
        after: &["build"],
        proves: "every counter of every CO-RE object, each family forced on the host: a number only where a family observed its event and can see it, else null with a reason, in totals and rows (needs root)",
        run: host::no_false_zeros,
    },
    Check {
        name: "kernel-accounting",
        after: &["build"],
        proves: "on the host, --attach auto and a workload of its own: every counter with a kernel equivalent (kernel-accounting.toml) agrees with the kernel's own figures; a vfs that counts every read twice fails, naming counter, ours and the kernel's (needs root)",
        run: host::kernel_accounting,
    },
    Check {
        name: "live-flows",
        after: &["build"],
        proves: "on the host, --attach auto: a TCP connection made and left open while kc-loader runs is in the connections collector's table at both ends, ESTABLISHED, owned by its process, connect and accept, with the bytes and segments each way and the retransmits ss -tin shows for the same sockets (needs root)",
        run: live_flows::live_flows,
    },
    Check {
        name: "loader-stop",
        after: &["build"],
        proves: "kc-loader stopped by SIGTERM mid-collection passes it to its workload, detaches, reports what it counted (stopped_by) and exits 143; none of its programs stays in the kernel (needs root)",
        run: host::loader_stops_on_sigterm,
    },
    Check {
        name: "rust-agent",
        after: &["build"],
        proves: "kc-agent (the Rust consumer: aya and the attach plan) on the host, --attach auto, every CO-RE object: the same family per event, the same counters unobserved and the same workload figures as kc-loader (needs root)",
        run: agent::rust_agent,
    },
    Check {
        name: "go-agent",
        after: &["build"],
        proves: "the Go example (examples/go: cilium/ebpf 0.11 and the attach plan, built with Debian's Go packages) on the host, --attach auto, every CO-RE object: the same family per event, the same counters unobserved and the same workload figures as kc-loader, its report valid against the schema (needs root)",
        run: agent::go_agent,
    },
    Check {
        name: "exporter",
        after: &["build"],
        proves: "kc-exporter from a packaged release kc-install installed: refuses a port in use, a missing release and a non-root user; serves every collector; promtool check metrics accepts a scrape; a real Prometheus scraping it agrees with a workload's reads (last value and irate); SIGTERM leaves no program or link (needs root, Debian's prometheus)",
        run: exporter::exporter,
    },
    Check {
        name: "bench-overhead",
        after: &["build"],
        proves: "bench overhead fails on a costly auto: netdev built with one more program that only auto's family attaches makes it exit non-zero, naming the collector, event and figures, and that family over its floor's target (the same programs, empty) (needs root)",
        run: host::bench_overhead_fails_a_slowed_auto,
    },
    Check {
        name: "verify",
        after: &["build"],
        proves: "every built object passes the verifier",
        run: pipeline::verify,
    },
    Check {
        name: "docker",
        after: &["build"],
        proves: "docker backend: every cell of both libcs in containers (no network); glibc byte-identical to the host's, musl loader static and loading on the host (needs docker, root)",
        run: docker::docker,
    },
    Check {
        name: "arm64",
        after: &["build", "docker"],
        proves: "arm64: every cell of both libcs cross-built in the images (loaders aarch64, musl static, objects alike)",
        run: arm64::arm64,
    },
    Check {
        name: "vmtest",
        after: &["build", "docker", "arm64"],
        proves: "vmtest: every amd64 kernel of the matrix, and the oldest and newest arm64 kernels under qemu-system-aarch64 beside them, load, attach and count every object in every attach family, and the release's kc-select follows the rule",
        run: vm::vmtest,
    },
    Check {
        name: "package",
        after: &["build", "docker", "arm64"],
        proves: "package, sign and check a release of the built cells; kc-install installs CO-RE and every bucket, and the release's kc-select, check-kernel and kc-check-kernel.sh choose the same loadable objects, with BTF and without (needs root)",
        run: pipeline::package,
    },
    Check {
        name: "rehearsal",
        after: &[],
        proves: "release.yml rehearsed under act (one bucket's cells, one kernel and one collector per vmtest job): cells, vmtest, package, publish to the stand-in API, check-release (needs act, and GitHub or copies of the pinned actions)",
        run: vm::rehearsal,
    },
];

/// How one check ended.
#[derive(Debug)]
enum Ended {
    Passed,
    Skipped(String),
    Failed(String),
}

pub fn run(o: TestOptions) -> Result<()> {
    if o.list {
        print!("{}", list());
        return Ok(());
    }
    let chosen: Vec<String> = if o.unit_only {
        vec![UNIT.into()]
    } else if o.e2e_only {
        CHECKS
            .iter()
            .map(|c| c.name.to_string())
            .filter(|n| n != UNIT)
            .collect()
    } else {
        o.checks.clone()
    };
    let plan = plan(&chosen, &o.exclude)?;
    // Only the end-to-end checks need the machine set up: `cargo test` installs nothing.
    if plan.iter().any(|c| c.name != UNIT) {
        setup::run(setup::SetupOptions {
            check: false,
            role: setup::Role::All,
        })?;
    }
    let mut results: Vec<(&Check, Ended, f64)> = Vec::new();
    for check in plan {
        let failed_before: Vec<&str> = check
            .after
            .iter()
            .copied()
            .filter(|a| {
                results
                    .iter()
                    .any(|(c, e, _)| c.name == *a && matches!(e, Ended::Failed(_)))
            })
            .collect();
        let t = Instant::now();
        let ended = if !failed_before.is_empty() {
            Ended::Failed(format!(
                "not run: it reads what {failed_before:?} made, and that failed"
            ))
        } else {
            eprintln!("test: {} ...", check.name);
            match (check.run)() {
                Ok(Verdict::Passed) => Ended::Passed,
                Ok(Verdict::Skipped(why)) => Ended::Skipped(why),
                Err(e) => Ended::Failed(format!("{e:#}")),
            }
        };
        let secs = t.elapsed().as_secs_f64();
        match &ended {
            Ended::Passed => eprintln!("test: {} ... ok ({secs:.1} s)", check.name),
            Ended::Skipped(why) => eprintln!("test: {} ... SKIPPED: {why}", check.name),
            Ended::Failed(e) => eprintln!("test: {} ... FAILED ({secs:.1} s): {e}", check.name),
        }
        results.push((check, ended, secs));
    }
    let summary = summarize(
        &results
            .iter()
            .map(|(c, e, s)| (c.name, e, *s))
            .collect::<Vec<_>>(),
        in_ci(),
    );
    print!("{}", summary.text);
    if let Some(e) = summary.error {
        bail!(e);
    }
    Ok(())
}

/// The checks to run, in order: the chosen ones (all when none is named) and the checks they
/// read from, less the excluded ones.
fn plan(chosen: &[String], exclude: &[String]) -> Result<Vec<&'static Check>> {
    for name in chosen.iter().chain(exclude) {
        if !CHECKS.iter().any(|c| c.name == name) {
            bail!(
                "no check is named {name:?}; `cargo xtask test --list` names them: {}",
                CHECKS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut wanted: Vec<&str> = if chosen.is_empty() {
        CHECKS.iter().map(|c| c.name).collect()
    } else {
        chosen.iter().map(String::as_str).collect()
    };
    // What the chosen checks read, transitively (CHECKS lists each after what it reads).
    for c in CHECKS.iter().rev() {
        if wanted.contains(&c.name) {
            wanted.extend(c.after.iter().copied());
        }
    }
    Ok(CHECKS
        .iter()
        .filter(|c| wanted.contains(&c.name) && !exclude.iter().any(|e| e == c.name))
        .collect())
}

fn list() -> String {
    let mut s = String::new();
    for c in CHECKS {
        s.push_str(&format!("{:<11} {}\n", c.name, c.proves));
        if !c.after.is_empty() {
            s.push_str(&format!("{:<11} (after: {})\n", "", c.after.join(", ")));
        }
    }
    s
}

/// The end of a run: a table of checks, and the error that fails it, if any.
struct Summary {
    text: String,
    error: Option<String>,
}

fn summarize(results: &[(&str, &Ended, f64)], ci: bool) -> Summary {
    let mut text = String::from("\n");
    let (mut passed, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (name, ended, secs) in results {
        let what = match ended {
            Ended::Passed => {
                passed.push(*name);
                "ok".to_string()
            }
            Ended::Skipped(why) => {
                skipped.push(*name);
                format!("SKIPPED: {why}")
            }
            Ended::Failed(e) => {
                failed.push(*name);
                format!("FAILED: {}", e.lines().next().unwrap_or(""))
            }
        };
        text.push_str(&format!("test: {name:<11} {secs:>7.1} s  {what}\n"));
    }
    text.push_str(&format!(
        "test: {} passed, {} skipped, {} failed\n",
        passed.len(),
        skipped.len(),
        failed.len()
    ));
    let error = if !failed.is_empty() {
        Some(format!("checks failed: {}", failed.join(", ")))
    } else if ci && !skipped.is_empty() {
        Some(format!(
            "checks skipped under CI=true, where every resource must be present: {}",
            skipped.join(", ")
        ))
    } else {
        None
    };
    Summary { text, error }
}

/// `cargo test` of the workspace. Tests that cannot run here record why in a skip log; the
/// check passes with them named, or is skipped as a whole if every skip is all it did.
fn unit() -> Result<Verdict> {
    let log = tempfile::NamedTempFile::new()?;
    let sh = process::shell_in(&paths::project_root());
    let _env = sh.push_env(SKIP_LOG, log.path());
    process::stream(cmd!(sh, "cargo test --workspace --locked"))?;
    let skips = read_log(&std::fs::read_to_string(log.path())?);
    if skips.is_empty() {
        return Ok(Verdict::Passed);
    }
    let lines: Vec<String> = skips
        .iter()
        .map(|(t, why)| format!("{t} ({why})"))
        .collect();
    Ok(Verdict::Skipped(format!(
        "every other test passed; {} skipped: {}",
        skips.len(),
        lines.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(plan: &[&Check]) -> Vec<&'static str> {
        plan.iter().map(|c| c.name).collect()
    }

    #[test]
    fn a_chosen_check_brings_what_it_reads_in_order() {
        let p = plan(&["package".into()], &[]).unwrap();
        assert_eq!(names(&p), ["build", "docker", "arm64", "package"]);
        let p = plan(&["unit".into()], &[]).unwrap();
        assert_eq!(names(&p), ["unit"]);
        let all = plan(&[], &["rehearsal".into()]).unwrap();
        assert_eq!(all.len(), CHECKS.len() - 1);
        assert!(!names(&all).contains(&"rehearsal"));
    }

    #[test]
    fn every_check_comes_after_what_it_reads() {
        for (i, c) in CHECKS.iter().enumerate() {
            for a in c.after {
                let at = CHECKS.iter().position(|d| d.name == *a);
                assert!(at.is_some_and(|at| at < i), "{} reads {a}", c.name);
            }
        }
    }

    #[test]
    fn an_unknown_check_is_refused_with_the_names() {
        let e = plan(&["vmtests".into()], &[]).unwrap_err().to_string();
        assert!(
            e.contains("\"vmtests\"") && e.contains("arm64, vmtest"),
            "{e}"
        );
    }

    #[test]
    fn a_skip_is_counted_apart_and_fails_only_under_ci() {
        let skipped = Ended::Skipped("no Docker daemon answers".into());
        let rows = [("build", &Ended::Passed, 1.0), ("docker", &skipped, 0.0)];
        let local = summarize(&rows, false);
        assert!(local.error.is_none());
        assert!(
            local.text.contains("1 passed, 1 skipped, 0 failed"),
            "{}",
            local.text
        );
        assert!(local.text.contains("SKIPPED: no Docker daemon answers"));
        let ci = summarize(&rows, true);
        assert!(ci.error.unwrap().contains("docker"));
        let failed = Ended::Failed("boom\nmore".into());
        let rows = [("build", &failed, 1.0)];
        assert!(summarize(&rows, false).error.unwrap().contains("build"));
    }
}
