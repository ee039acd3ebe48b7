//! Attach plans of real objects (built from this repository: see tests/data), and broken plans
//! that `check` must refuse.

use kc_common::plan::{MapRole, Role, Target};
use kc_common::AttachFamily;

fn object(name: &str) -> (Vec<u8>, kc_verify::Report) {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap();
    let report = kc_verify::verify(name, &bytes);
    (bytes, report)
}

#[test]
fn a_core_objects_plan_names_its_events_maps_and_counters() {
    let (_, r) = object("mount.bpf.o");
    let plan = kc_verify::plan::plan_of("mount.bpf.o", &r).unwrap();
    assert_eq!(plan.collector, "mount");
    assert!(plan.other_programs.is_empty(), "{:?}", plan.other_programs);
    let mount = plan
        .events
        .iter()
        .find(|e| e.event == "kc_mount_mount")
        .expect("the mount event");
    let trampoline = &mount.families[&AttachFamily::Trampoline];
    assert!(trampoline.iter().any(|g| g.role == Role::Return));
    assert!(matches!(
        trampoline[0].alternatives[0].target,
        Target::BtfFunction { .. }
    ));
    let tracepoint = &mount.families[&AttachFamily::Tracepoint];
    assert!(matches!(
        tracepoint[0].alternatives[0].target,
        Target::Tracefs { .. }
    ));
    let totals = plan
        .maps
        .iter()
        .find(|m| m.role == MapRole::Totals)
        .expect("a totals map");
    assert_eq!(totals.name, "mount_counters");
    assert_eq!(
        totals.value_type.as_deref(),
        Some("struct kc_mount_counters")
    );
    let names: Vec<&str> = plan.counters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        totals
            .value_fields
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        names
    );
    assert_eq!(totals.value_size, Some(8 * names.len() as u32));
    let ctrl = plan.maps.iter().find(|m| m.role == MapRole::Ctrl).unwrap();
    assert_eq!(ctrl.value_fields, ["group_by", "insertions", "failures"]);
    assert!(plan.counters.iter().all(|c| !c.events.is_empty()));
    assert!(kc_verify::plan::check(&plan, "mount.bpf.o", &r).is_empty());
}

#[test]
fn a_legacy_object_has_no_trampolines() {
    let (_, r) = object("rkc_mount.6.1.o");
    let plan = kc_verify::plan::plan_of("rkc_mount.6.1.o", &r).unwrap();
    assert!(!plan.events.is_empty());
    assert!(plan
        .events
        .iter()
        .all(|e| !e.families.contains_key(&AttachFamily::Trampoline)));
}

#[test]
fn a_broken_plan_fails_with_what_is_wrong() {
    let (_, r) = object("mount.bpf.o");
    let plan = kc_verify::plan::plan_of("mount.bpf.o", &r).unwrap();
    let check = |p: &kc_common::plan::ObjectPlan| kc_verify::plan::check(p, "mount.bpf.o", &r);

    let mut renamed = plan.clone();
    let first = &mut renamed.events[0].families.values_mut().next().unwrap()[0].alternatives[0];
    let old = std::mem::replace(&mut first.program, "kc_mount_mount__probe_renamed".into());
    let wrong = check(&renamed);
    assert!(
        wrong.contains(
            &"the plan names program kc_mount_mount__probe_renamed, which the object lacks"
                .to_string()
        ) && wrong.contains(&format!("the object's program {old} is not in the plan")),
        "{wrong:?}"
    );

    let mut no_counter = plan.clone();
    let gone = no_counter.counters.pop().unwrap().name;
    assert_eq!(
        check(&no_counter),
        [format!("the object's counter {gone} is not in the plan")]
    );

    let mut extra_map = plan.clone();
    let mut m = extra_map.maps[0].clone();
    m.name = "mount_elsewhere".into();
    extra_map.maps.push(m);
    assert_eq!(
        check(&extra_map),
        ["the plan names map mount_elsewhere, which the object lacks"]
    );

    let mut target = plan;
    target.events[0].families.values_mut().next().unwrap()[0].alternatives[0].section =
        "kprobe/elsewhere".into();
    let wrong = check(&target);
    assert!(
        wrong[0].contains("differs from what the object holds"),
        "{wrong:?}"
    );
}
