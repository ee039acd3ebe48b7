//! The installed release on the host kernel: its own `kc-select` (static, asking the kernel
//! through the release's loader) chooses each collector's object, with this kernel's BTF and
//! as for a kernel without it; the chosen objects load; `check-kernel` (predicted and from the
//! installed release) and the release's `kc-check-kernel.sh` report the same choice.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use kc_common::release::{CORE_DIR, LEGACY_DIR, SELECT_TOOL};
use kc_common::report::{LoaderReport, ObjectStatus};
use kc_common::select::{Kind, Selection};
use kc_common::{select_bucket, KernelVersion};
use xshell::cmd;

use crate::{kernels, paths, process};

/// The JSON report of a tool that must succeed.
fn report(cmd: xshell::Cmd<'_>) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&process::read(cmd)?)?)
}

/// (collector, kind, bucket) of a selection report's choices.
fn choices(report: &serde_json::Value) -> Result<Vec<(String, Kind, Option<String>)>> {
    let s: Vec<Selection> = serde_json::from_value(report["selections"].clone())
        .context("the report has no selections")?;
    Ok(s.into_iter()
        .map(|s| (s.collector, s.kind, s.bucket))
        .collect())
}

pub fn check_installed_release(prefix: &Path) -> Result<()> {
    let current = prefix.join("current");
    let select = current.join(SELECT_TOOL);
    let loader = current.join(LEGACY_DIR).join(kc_select::LOADER);
    let sh = process::shell_in(&paths::project_root());
    // This binary, even after `cargo test` of the workspace replaced the file on disk.
    let xtask = "/proc/self/exe";
    let release = paths::running_kernel_release()?;
    let (_, lock) = kernels::load_checked_lock()?;
    let bucket = select_bucket(&KernelVersion::parse(&release)?, &lock.buckets())?.to_string();

    // With this kernel's BTF: every collector's CO-RE object, each one loaded by the kernel.
    let with_btf = report(cmd!(sh, "{select} --json"))?;
    let chosen = choices(&with_btf)?;
    let n = crate::collectors::load_from(&paths::project_root())?.len();
    ensure!(
        chosen.len() == n,
        "kc-select chose for {} collectors, not {n}",
        chosen.len()
    );
    for s in serde_json::from_value::<Vec<Selection>>(with_btf["selections"].clone())? {
        ensure!(
            s.kind == Kind::CoRe && s.tried,
            "{}: expected a CO-RE object the kernel loaded, got {:?} ({})",
            s.collector,
            s.kind,
            s.passed_over.join("; ")
        );
    }
    // Without BTF: the legacy objects of this kernel's bucket.
    let without = report(cmd!(sh, "{select} --btf /nonexistent --json"))?;
    let fallback = choices(&without)?;
    ensure!(
        fallback
            .iter()
            .all(|(_, k, b)| *k == Kind::Legacy && b.as_deref() == Some(bucket.as_str())),
        "without BTF every collector should fall back to bucket {bucket}: {fallback:?}"
    );
    // The release ships its loader's report schema, generated from the report's type.
    let schema_path = current.join(LEGACY_DIR).join(crate::schema::FILE);
    let shipped_schema = std::fs::read_to_string(&schema_path)
        .with_context(|| format!("the release has no {}", schema_path.display()))?;
    ensure!(
        shipped_schema == kc_common::report::json_schema(),
        "{} is not the schema of kc_common::report::LoaderReport",
        schema_path.display()
    );
    // Each installed directory's attach plan names exactly what its objects hold.
    for dir in [LEGACY_DIR, CORE_DIR] {
        let dir = current.join(dir);
        ensure!(
            dir.join(kc_common::plan::PLAN_FILE).is_file(),
            "the release installed no {} in {}",
            kc_common::plan::PLAN_FILE,
            dir.display()
        );
        let results: Vec<crate::verify::ObjectResult> =
            crate::verify::collect(std::slice::from_ref(&dir))?
                .iter()
                .flat_map(crate::verify::verify_group)
                .collect();
        let wrong: Vec<String> = results
            .iter()
            .flat_map(|r| r.errors.iter().map(move |e| format!("{}: {e}", r.file)))
            .collect();
        ensure!(
            wrong.is_empty() && !results.is_empty(),
            "the installed {} does not verify against its plan:\n{}",
            dir.display(),
            wrong.join("\n")
        );
    }
    // What was chosen loads and attaches (the release's loader; auto picks the families).
    for args in [&[][..], &["--btf", "/nonexistent"][..]] {
        let paths = process::read(cmd!(sh, "{select} --paths {args...}"))?;
        let objects: Vec<&str> = paths.lines().collect();
        let count = objects.len();
        let out = process::capture(cmd!(sh, "{loader} --json {objects...}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // The release's loader against the release's schema, as an agent would hold it.
        crate::schema::validate_reports_against(&shipped_schema, &text)
            .and_then(|_| Ok(serde_json::from_str::<LoaderReport>(&text)?))
            .with_context(|| {
                format!(
                    "loading the objects kc-select chose ({}):\n{}",
                    out.status,
                    process::tail_of(&out)
                )
            })?;
        let loaded: LoaderReport = serde_json::from_str(&text)?;
        let refused: Vec<String> = loaded
            .objects
            .iter()
            .filter(|o| !matches!(o.status, ObjectStatus::Ok | ObjectStatus::Partial))
            .map(|o| format!("{}: {}", o.object, o.error))
            .collect();
        ensure!(
            refused.is_empty() && count == n,
            "the objects kc-select chose ({args:?}) did not all load: {refused:?}"
        );
    }
    // check-kernel: predicted from the build matrix, and from the installed release.
    let predicted = report(cmd!(sh, "{xtask} check-kernel --json"))?;
    let predicted_without = report(cmd!(sh, "{xtask} check-kernel --btf /nonexistent --json"))?;
    let from_release = report(cmd!(
        sh,
        "{xtask} check-kernel --installed {current} --json"
    ))?;
    ensure!(
        choices(&predicted["selection"])? == chosen
            && choices(&predicted_without["selection"])? == fallback
            && from_release["selection"]["selections"] == with_btf["selections"],
        "check-kernel and kc-select disagree:\ncheck-kernel {}\nkc-select {}",
        predicted["selection"],
        with_btf
    );
    // The release's shell checker reports kc-select's choice.
    let checker = current.join(LEGACY_DIR).join("kc-check-kernel.sh");
    let text = process::read(cmd!(sh, "sh {checker}"))?;
    let listed = process::read(cmd!(sh, "{select}"))?;
    ensure!(
        text.contains("objects this kernel loads (kc-select):")
            && listed.lines().skip(1).all(|l| text.contains(l)),
        "kc-check-kernel.sh does not report kc-select's choice:\n{text}"
    );
    eprintln!(
        "e2e: kc-select on {release}: {n} CO-RE objects (each loaded by the kernel); without BTF {n} legacy objects of bucket {bucket}; both sets load; check-kernel and kc-check-kernel.sh agree"
    );
    Ok(())
}
