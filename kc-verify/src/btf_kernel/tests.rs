//! One case per rule family, on BTF built by hand; the differential test
//! (`tests/differential.rs`) holds the whole against the running kernel.

use super::*;

use crate::btf::tests::{build as btf, Record};

const S: &[u8] = b"\0int\0s\0a\0f\0v\0.bss\0";
const INT_32: Record = (1, INT, 0, false, 4, &[32]);

fn rule(data: &[u8]) -> String {
    check(data).unwrap_err().to_string()
}

#[test]
fn a_well_formed_btf_passes() {
    let good = btf(
        S,
        &[
            INT_32,                                 // [1] int
            (5, STRUCT, 1, false, 4, &[7, 1, 0]),   // [2] struct s { int a; }
            (0, PTR, 0, false, 2, &[]),             // [3] s *
            (0, FUNC_PROTO, 1, false, 1, &[7, 3]),  // [4] int (s *a)
            (9, FUNC, 1, false, 4, &[]),            // [5] f
            (11, VAR, 0, false, 1, &[1]),           // [6] v
            (13, DATASEC, 1, false, 4, &[6, 0, 4]), // [7] .bss
        ],
    );
    check(&good).unwrap();
}

#[test]
fn header_rules() {
    let good = btf(S, &[INT_32]);
    let mut flags = good.clone();
    flags[3] = 1;
    assert!(rule(&flags).contains("Unsupported flags"));
    let mut longer = good.clone();
    longer[4] = 28; // a 28-byte header whose extra word is not zero
    longer.splice(24..24, [1, 0, 0, 0]);
    assert!(rule(&longer).contains("Unsupported btf_header"));
    let mut gap = good.clone();
    gap.splice(24 + 16..24 + 16, [0, 0, 0, 0]); // four bytes between types and strings
    assert!(
        rule(&gap).contains("Unsupported section found") || rule(&gap).contains("String section")
    );
}

#[test]
fn loops_are_detected() {
    // [1] const -> [2] ptr -> [1]: a pointer loop through a modifier.
    let ptr_loop = btf(
        S,
        &[(0, CONST, 0, false, 2, &[]), (0, PTR, 0, false, 1, &[])],
    );
    assert!(rule(&ptr_loop).contains("Loop detected"));
    // [1] typedef a -> [1].
    let typedef_loop = btf(S, &[(7, TYPEDEF, 0, false, 1, &[])]);
    assert!(rule(&typedef_loop).contains("Loop detected"));
    // struct s { struct s a; } is a loop; struct s { struct s *a; } is not.
    let nested = btf(S, &[(5, STRUCT, 1, false, 4, &[7, 1, 0])]);
    assert!(rule(&nested).contains("Loop detected"));
    let linked = btf(
        S,
        &[
            (5, STRUCT, 1, false, 8, &[7, 2, 0]),
            (0, PTR, 0, false, 1, &[]),
        ],
    );
    check(&linked).unwrap();
}

#[test]
fn int_and_member_rules() {
    let too_wide = btf(S, &[(1, INT, 0, false, 4, &[64])]);
    assert!(rule(&too_wide).contains("nr_bits exceeds type_size"));
    let encoding = btf(S, &[(1, INT, 0, false, 4, &[(3 << 24) | 32])]);
    assert!(rule(&encoding).contains("Unsupported encoding"));
    let outside = btf(S, &[INT_32, (5, STRUCT, 1, false, 4, &[7, 1, 64])]);
    assert!(rule(&outside).contains("Member bits_offset exceeds its struct size"));
    let overlong = btf(S, &[INT_32, (5, STRUCT, 1, false, 4, &[7, 1, 8])]);
    assert!(
        rule(&overlong).contains("member #0: Member exceeds struct_size"),
        "{}",
        rule(&overlong)
    );
}

#[test]
fn func_var_and_datasec_rules() {
    let extern_func = btf(
        S,
        &[
            INT_32,
            (0, FUNC_PROTO, 0, false, 1, &[]),
            (9, FUNC, 2, false, 2, &[]),
        ],
    );
    assert!(rule(&extern_func).contains("Invalid func linkage"));
    let unnamed_arg = btf(
        S,
        &[
            INT_32,
            (0, FUNC_PROTO, 1, false, 1, &[0, 1]),
            (9, FUNC, 0, false, 2, &[]),
        ],
    );
    assert!(rule(&unnamed_arg).contains("Invalid arg#1"));
    let void_var = btf(S, &[(11, VAR, 0, false, 0, &[1])]);
    assert!(rule(&void_var).contains("Invalid type_id"));
    let extern_var = btf(S, &[INT_32, (11, VAR, 0, false, 1, &[2])]);
    assert!(rule(&extern_var).contains("Linkage not supported"));
    let past_end = btf(
        S,
        &[
            INT_32,
            (11, VAR, 0, false, 1, &[1]),
            (13, DATASEC, 1, false, 4, &[2, 4, 4]),
        ],
    );
    assert!(rule(&past_end).contains("Invalid offset"));
    let small = btf(
        S,
        &[
            INT_32,
            (11, VAR, 0, false, 1, &[1]),
            (13, DATASEC, 1, false, 4, &[2, 0, 2]),
        ],
    );
    assert!(rule(&small).contains("Invalid size"));
}

#[test]
fn findings_name_the_type_its_kind_and_the_rule() {
    let f = check(&btf(S, &[(1, INT, 0, true, 4, &[32])])).unwrap_err();
    assert_eq!(
        f.to_string(),
        "BTF type [1] INT int: Invalid btf_info kind_flag"
    );
}

/// The running kernel's own BTF is BTF the kernel accepts: so must we.
#[test]
fn the_running_kernels_btf_passes() {
    let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        kc_common::skip::skip(
            "the_running_kernels_btf_passes",
            "this kernel exposes no /sys/kernel/btf/vmlinux",
        );
        return;
    };
    check(&data).unwrap();
}

#[test]
fn every_truncation_is_a_finding_not_a_panic() {
    let good = btf(S, &[INT_32, (5, STRUCT, 1, false, 4, &[7, 1, 0])]);
    for cut in 0..good.len() {
        assert!(check(&good[..cut]).is_err(), "cut at {cut}");
    }
}

/// An ELF with no sections and no symbols: only externs can be laid out against it.
struct NoElf;

impl ElfLayout for NoElf {
    fn section_size(&self, _: &str) -> Option<u64> {
        None
    }
    fn data_symbol(&self, _: &str) -> Option<(u64, bool)> {
        None
    }
}

#[test]
fn kconfig_externs_are_laid_out_as_libbpf_does() {
    // extern char c __kconfig; extern int LINUX_KERNEL_VERSION __kconfig; extern u64 big __kconfig;
    let strings = b"\0int\0char\0u64\0c\0LINUX_KERNEL_VERSION\0big\0.kconfig\0";
    let types: &[Record] = &[
        (1, 1, 0, false, 4, &[(1 << 24) | 32]), // [1] int, signed
        (5, 1, 0, false, 1, &[8]),              // [2] char
        (10, 1, 0, false, 8, &[64]),            // [3] u64
        (14, 14, 0, false, 2, &[2]),            // [4] var c, extern
        (16, 14, 0, false, 1, &[2]),            // [5] var LINUX_KERNEL_VERSION, extern
        (37, 14, 0, false, 3, &[2]),            // [6] var big, extern
        (41, 15, 3, false, 0, &[4, 0, 1, 5, 0, 4, 6, 0, 8]), // [7] datasec .kconfig, size 0
    ];
    let data = btf(strings, types);
    let out = libbpf_fixup(&data, &NoElf).expect("a .kconfig section needs no ELF section");
    let fixed = crate::btf::Btf::parse(&out).unwrap();
    let sec = fixed.datasec(".kconfig").unwrap();
    // Alignment first (big: 8, LINUX_KERNEL_VERSION: 4, c: 1), sorted by offset.
    let by_offset: Vec<(&str, u32)> = sec
        .members
        .iter()
        .map(|&(id, off)| (fixed.name(fixed.get(id).unwrap()), off))
        .collect();
    assert_eq!(
        by_offset,
        [("big", 0), ("LINUX_KERNEL_VERSION", 8), ("c", 12)]
    );
    assert_eq!(sec.size_or_type, 13);
    for id in [4, 5, 6] {
        assert_eq!(
            fixed.get(id).unwrap().linkage,
            1,
            "externs become allocated globals"
        );
    }
    check(&out).expect("the kernel's rules accept the laid-out section");
}
