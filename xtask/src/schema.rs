//! `cargo xtask schema`: the JSON Schemas of `kc-loader --json`'s report and of the release's
//! attach plan, generated from their Rust types (`kc_common::report::LoaderReport`,
//! `kc_common::plan::AttachPlan`) into `schema/`, where agents in other languages find them;
//! the release ships the same bytes. And the check that a report the C loader printed is valid
//! against its schema (the host checks and vmtest run it on every report they read).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{atomic, paths};

/// The report schema's file name, in `schema/` and in the release.
pub const FILE: &str = "loader-report.schema.json";
/// The plan schema's file name, in `schema/` and in the release.
pub const PLAN_FILE: &str = "attach-plan.schema.json";

/// Each schema's file name and text, generated from its type.
pub fn schemas() -> [(&'static str, String); 2] {
    [
        (FILE, kc_common::report::json_schema()),
        (PLAN_FILE, kc_common::plan::json_schema()),
    ]
}

#[derive(Debug, Args)]
pub struct SchemaOptions {
    /// Fail if a file in schema/ differs from its type, instead of writing it
    #[arg(long)]
    pub check: bool,
}

/// Where the repository keeps schema `file`.
pub fn path(root: &Path, file: &str) -> PathBuf {
    root.join("schema").join(file)
}

pub fn run(o: SchemaOptions) -> Result<()> {
    let root = paths::project_root();
    for (file, schema) in schemas() {
        let path = path(&root, file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == schema {
            eprintln!("schema: {} is up to date", path.display());
        } else if o.check {
            bail!(
                "{} is not the schema of its type: regenerate it with cargo xtask schema",
                path.display()
            );
        } else {
            atomic::write(&path, schema.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("schema: wrote {}", path.display());
        }
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
    fn the_repositorys_schemas_are_the_types() {
        for (file, schema) in schemas() {
            let path = path(&paths::project_root(), file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == schema,
                "{} is not the schema of its type: run cargo xtask schema",
                path.display()
            );
        }
    }

    #[test]
    fn a_plan_is_valid_against_its_schema() {
        let core = include_bytes!("../../kc-verify/tests/data/mount.bpf.o");
        let plan = crate::verify::attach_plan([("mount.bpf.o", &core[..])]).unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(&kc_common::plan::json_schema()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut doc = serde_json::to_value(&plan).unwrap();
        assert!(problems_by(&validator, &doc).is_empty());
        doc["objects"][0]["maps"][0]["role"] = "cache".into();
        assert!(!problems_by(&validator, &doc).is_empty());
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
