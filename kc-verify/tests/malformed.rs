//! Bad input, on real objects of ours (tests/data, built by `cargo xtask build`): every
//! defect is a problem naming the section and byte offset, never a panic.

use object::{Object, ObjectSection};

const CORE: &[u8] = include_bytes!("data/mount.bpf.o");
const LEGACY: &[u8] = include_bytes!("data/rkc_mount.6.1.o");

fn section(data: &[u8], name: &str) -> (usize, usize) {
    let owned = data.to_vec(); // heap memory is aligned as `object` wants
    let f = object::File::parse(&owned[..]).unwrap();
    let s = f
        .section_by_name(name)
        .unwrap_or_else(|| panic!("{name} missing"));
    let (off, len) = s.file_range().unwrap();
    (off as usize, len as usize)
}

fn problems(name: &str, data: &[u8]) -> Vec<String> {
    kc_verify::verify(name, data)
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn the_fixtures_are_clean() {
    assert_eq!(problems("mount.bpf.o", CORE), Vec::<String>::new());
    assert_eq!(problems("rkc_mount.6.1.o", LEGACY), Vec::<String>::new());
    let r = kc_verify::verify("mount.bpf.o", CORE);
    assert!(
        r.core_relos > 0 && r.btf_types > 0 && r.maps.contains(&"mount_counters".to_string()),
        "{r:?}"
    );
    assert_eq!(
        kc_verify::verify("rkc_mount.6.1.o", LEGACY)
            .version_code
            .map(|c| c >> 8),
        Some(0x0601)
    );
}

#[test]
fn truncated_at_every_byte() {
    for (name, data) in [("mount.bpf.o", CORE), ("rkc_mount.6.1.o", LEGACY)] {
        for cut in 0..data.len() {
            let p = problems(name, &data[..cut]);
            assert!(!p.is_empty(), "{name} cut at {cut} verified clean");
        }
    }
}

#[test]
fn btf_defects_name_section_and_offset() {
    let (btf, _) = section(CORE, ".BTF");
    let patch = |at: usize, v: u32| {
        let mut d = CORE.to_vec();
        d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        d
    };
    let cases = [
        (patch(btf + 12, 0x00ff_ffff), "type section"), // type_len past the end
        (patch(btf + 20, 0x00ff_ffff), "string section"), // str_len past the end
        (patch(btf + 24 + 4, (4 << 24) | 0xffff), "vlen 65535"), // absurd vlen on type #1
        (patch(btf + 24, 0x00ff_ffff), "name offset"),  // name past the strings
        (patch(btf + 24 + 4, 30 << 24), "unknown kind 30"),
    ];
    for (data, want) in cases {
        let p = problems("mount.bpf.o", &data);
        assert!(
            p.iter()
                .any(|e| e.contains("section .BTF, byte") && e.contains(want)),
            "{want}: {p:?}"
        );
    }
}

#[test]
fn btf_ext_record_size_below_minimum() {
    let (ext, _) = section(CORE, ".BTF.ext");
    let hdr_len = u32::from_le_bytes(CORE[ext + 4..ext + 8].try_into().unwrap()) as usize;
    let core_off = u32::from_le_bytes(CORE[ext + 24..ext + 28].try_into().unwrap()) as usize;
    let mut d = CORE.to_vec();
    let rec = ext + hdr_len + core_off;
    d[rec..rec + 4].copy_from_slice(&4u32.to_le_bytes());
    let p = problems("mount.bpf.o", &d);
    assert!(
        p.iter()
            .any(|e| e.contains("section .BTF.ext") && e.contains("smaller than the minimum 16")),
        "{p:?}"
    );
}

#[test]
fn legacy_version_must_match_the_name() {
    let p = problems("rkc_mount.5.10.o", LEGACY);
    assert!(
        p.iter()
            .any(|e| e.contains("section version") && e.contains("bucket 5.10")),
        "{p:?}"
    );
}

#[test]
fn not_bpf_objects() {
    let exe = std::fs::read("/proc/self/exe").unwrap();
    let p = problems("renamed.o", &exe);
    assert!(p[0].contains("x86-64") && p[0].contains("byte 18"), "{p:?}");
    assert!(problems("empty.o", b"")[0].contains("empty"));
    assert!(problems("text.o", b"#!/bin/sh\n")[0].contains("not an ELF"));
}

#[test]
fn a_license_that_is_not_gpl_compatible() {
    let (lic, len) = section(CORE, "license");
    let mut d = CORE.to_vec();
    d[lic..lic + len].fill(0);
    d[lic..lic + 3].copy_from_slice(b"MIT");
    let p = problems("mount.bpf.o", &d);
    assert!(p.iter().any(|e| e.contains("not GPL-compatible")), "{p:?}");
}

/// Found by the fuzz target: a relocation whose offset overflows when added to its
/// section's file offset.
#[test]
fn fuzz_regressions() {
    {
        let data = &include_bytes!("data/fuzz-reloc-offset-overflow.o")[..];
        let _ = kc_verify::verify("rkc_fuzz.6.1.o", data);
        let _ = kc_verify::verify("fuzz.bpf.o", data);
    }
}
