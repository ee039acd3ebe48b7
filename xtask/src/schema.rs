//! `cargo xtask schema`: the JSON Schema of `kc-loader --json`'s report, generated from its Rust
//! type (`kc_common::report::LoaderReport`) into `schema/`, where agents in other languages
//! find it; the release ships the same bytes. And the check that a report the C loader printed
//! is valid against it (the host checks run it on every report they read).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{atomic, paths};

/// The schema's file name, in `schema/` and in the release.
pub const FILE: &str = "loader-report.schema.json";

#[derive(Debug, Args)]
pub struct SchemaOptions {
    /// Fail if the file in schema/ differs from the type, instead of writing it
    #[arg(long)]
    pub check: bool,
}

/// Where the repository keeps the schema.
pub fn path(root: &Path) -> PathBuf {
    root.join("schema").join(FILE)
}

pub fn run(o: SchemaOptions) -> Result<()> {
    let path = path(&paths::project_root());
    let schema = kc_common::report::json_schema();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == schema {
        eprintln!("schema: {} is up to date", path.display());
    } else if o.check {
        bail!(
            "{} is not the schema of kc_common::report::LoaderReport: regenerate it with cargo xtask schema",
            path.display()
        );
    } else {
        atomic::write(&path, schema.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("schema: wrote {}", path.display());
    }
    Ok(())
}

/// The schema of the type, compiled once.
fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: serde_json::Value = serde_json::from_str(&kc_common::report::json_schema())
            .expect("the type's schema is JSON");
        jsonschema::validator_for(&schema).expect("the type's schema compiles")
    })
}

/// Where one report is not valid against the schema, and why: "at /objects/0: ...".
pub fn problems(doc: &serde_json::Value) -> Vec<String> {
    problems_by(validator(), doc)
}

fn problems_by(validator: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

/// Every JSON document in `text` (one per pass, as `kc-loader --json` prints them) against the
/// report's schema: how many there are; `Err` lists each document's errors with where they are.
pub fn validate_reports(text: &str) -> Result<usize> {
    validate_with(validator(), text)
}

/// [`validate_reports`] against the schema in `schema` (a release's copy).
pub fn validate_reports_against(schema: &str, text: &str) -> Result<usize> {
    let schema: serde_json::Value =
        serde_json::from_str(schema).context("the schema is not JSON")?;
    let validator = jsonschema::validator_for(&schema).context("compiling the report's schema")?;
    validate_with(&validator, text)
}

fn validate_with(validator: &jsonschema::Validator, text: &str) -> Result<usize> {
    let mut errors = Vec::new();
    let mut n = 0;
    for doc in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let doc = doc.context("a report that is not JSON")?;
        n += 1;
        errors.extend(
            problems_by(validator, &doc)
                .into_iter()
                .map(|p| format!("report {n}, {p}")),
        );
    }
    if n == 0 {
        bail!("kc-loader printed no report");
    }
    if !errors.is_empty() {
        bail!(
            "kc-loader's output is not valid against {FILE} ({} errors):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::json;

    #[test]
    fn the_repositorys_schema_is_the_types() {
        let path = path(&paths::project_root());
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == kc_common::report::json_schema(),
            "{} is not the schema of kc_common::report::LoaderReport: run cargo xtask schema",
            path.display()
        );
    }

    #[test]
    fn the_schema_takes_a_report_and_refuses_one_field_more_or_less() {
        let pass = report(json!({"attach": "tracepoint", "objects": [
            {"object": "vfs.bpf.o", "status": "ok", "counters": {"read": 3, "write": null},
             "unobserved": {"write": "blind"},
             "events": [{"event": "kc_vfs_read", "family": "tracepoint",
                         "passed_over": {"probe": {"kind": "refused", "why": "no kprobes"},
                                         "tracepoint": {"kind": "used", "why": ""}}}],
             "per_process": [{"tgid": 7, "counters": {"read": 3, "write": null}}]}]}));
        let good = serde_json::to_value(&pass).unwrap();
        let text = format!("{good}\n{good}\n");
        assert_eq!(validate_reports(&text).unwrap(), 2);
        let mut extra = good.clone();
        extra["objects"][0]["new_field"] = 1.into();
        let e = validate_reports(&extra.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/objects/0") && e.contains("new_field"), "{e}");
        let mut missing = good.clone();
        missing["objects"][0]
            .as_object_mut()
            .unwrap()
            .remove("missed_runs");
        let e = validate_reports(&missing.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missed_runs"), "{e}");
        let mut family = good.clone();
        family["objects"][0]["events"][0]["family"] = "kprobe".into();
        assert!(validate_reports(&family.to_string()).is_err());
        let mut passed_over = good.clone();
        passed_over["objects"][0]["events"][0]["passed_over"]["kprobe"] =
            json!({"kind": "refused", "why": ""});
        assert!(validate_reports(&passed_over.to_string()).is_err());
        let mut negative = good;
        negative["objects"][0]["counters"]["read"] = (-1).into();
        assert!(validate_reports(&negative.to_string()).is_err());
    }
}
