//! Loader reports for the judges' tests, written as the few JSON fields a test is about: the
//! rest takes the type's defaults, and the result is a real `kc_common::report` value (a field
//! the type lacks fails the test).

use kc_common::report::{LoaderReport, ObjectReport};
use serde_json::{json, Value};

/// `fields` laid over `base`, key by key.
fn overlay(mut base: Value, fields: Value) -> Value {
    if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
        b.extend(f);
    }
    base
}

/// The JSON of an object's report: its events without `passed_over` and its rows without
/// `exited` get them empty and false.
fn object_json(fields: Value) -> Value {
    let mut o = overlay(
        serde_json::to_value(ObjectReport::default()).expect("a report serializes"),
        fields,
    );
    for e in o["events"].as_array_mut().into_iter().flatten() {
        e.as_object_mut()
            .map(|e| e.entry("passed_over").or_insert(json!({})));
    }
    for rows in ["per_process", "per_cgroup"] {
        for r in o[rows].as_array_mut().into_iter().flatten() {
            r.as_object_mut()
                .map(|r| r.entry("exited").or_insert(false.into()));
        }
    }
    o
}

/// An object's report with `fields` set.
pub fn object(fields: Value) -> ObjectReport {
    serde_json::from_value(object_json(fields)).expect("a fixture the report type describes")
}

/// A pass's report with `fields` set (`objects` as for [`object`], `kernel_figures` over
/// empty figures).
pub fn report(mut fields: Value) -> LoaderReport {
    if let Some(objects) = fields.get_mut("objects").and_then(Value::as_array_mut) {
        for o in objects.iter_mut() {
            *o = object_json(o.take());
        }
    }
    if let Some(k) = fields.get_mut("kernel_figures") {
        *k = overlay(
            json!({"workload": null, "inner": null, "outer": {}}),
            k.take(),
        );
    }
    let base = serde_json::to_value(LoaderReport::default()).expect("a report serializes");
    serde_json::from_value(overlay(base, fields)).expect("a fixture the report type describes")
}
