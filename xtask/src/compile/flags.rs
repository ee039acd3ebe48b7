//! The compilers' flags: a legacy (per-bucket) compile, llc, a CO-RE compile. Pure: the
//! same inputs give the same arguments, and every path in them is one the compiler sees.

use std::path::{Path, PathBuf};

use kc_common::Arch;

use crate::kernels::fetch::HeaderTree;

/// Where build inputs live, as paths the compiler sees (host paths, or mount points in a container).
#[derive(Debug, Clone)]
pub struct Inputs {
    pub project: PathBuf,
    /// A directory whose `bpf/` holds libbpf's headers, and nothing else of `/usr/include`.
    pub libbpf_parent: PathBuf,
    pub resource_include: PathBuf,
}

/// Flags that keep file names out of the objects, so that where the checkout and the cache
/// are does not change the bytes: the checkout becomes `.`, a header tree becomes `/`.
fn prefix_maps(inputs: &Inputs, tree_root: Option<&Path>) -> Vec<String> {
    let mut v = vec![format!("-ffile-prefix-map={}=.", inputs.project.display())];
    if let Some(root) = tree_root {
        v.push(format!("-ffile-prefix-map={}=/", root.display()));
    }
    v
}

/// What a legacy compile produces: LLVM IR of a collector, or the bucket's precompiled
/// kernel headers (`includes/kc_legacy_kernel.h`) that every collector's compile then loads.
pub enum LegacyOutput<'a> {
    Ir {
        return_mode: bool,
        pch: Option<&'a Path>,
    },
    Pch,
}

/// clang arguments for a legacy compile against one bucket's headers (LLVM bitcode, then `llc`).
/// Kernel headers hold x86 inline assembly that `-target bpf` rejects, so the IR is made for
/// the host target and lowered by the BPF backend, as the kernel's samples/bpf did.
pub fn legacy_clang_args(
    inputs: &Inputs,
    tree: &HeaderTree,
    what: LegacyOutput,
    src: &Path,
    out: &Path,
) -> Vec<String> {
    let f = &tree.flavour_dir;
    let c = &tree.common_dir;
    let tree_root = f.parent().and_then(Path::parent).and_then(Path::parent);
    let arch = tree.arch.kernel_arch();
    let mut a: Vec<String> = [
        "-g",
        "-O2",
        "-Wall",
        "-Werror",
        "-D__KERNEL__",
        "-D__BPF_TRACING__",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match tree.arch {
        // The headers' inline assembly is the host's (x86-64): the IR is made for it.
        Arch::Amd64 => a.extend(["-D__ASM_SYSREG_H".into(), "-D__TARGET_ARCH_x86".into()]),
        // arm64's headers need their own target for the IR (type sizes, `__aarch64__`, its
        // inline assembly) and its sysreg.h, which amd64's compiles keep out.
        Arch::Arm64 => a.extend([
            "--target=aarch64-linux-gnu".into(),
            "-D__TARGET_ARCH_arm64".into(),
        ]),
    }
    // What the kernel's own Makefile defines for every compile unit (x86 builds with
    // -mfentry; arm64 patches its entries another way).
    if tree.arch == Arch::Amd64 {
        a.push("-DCC_USING_FENTRY".into());
    }
    a.extend(
        [
            "-DKBUILD_MODNAME=\"kc\"",
            // 6.19+ headers embed tagged structs anonymously, which needs Microsoft extensions.
            "-fms-extensions",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-nostdinc",
        ]
        .map(String::from),
    );
    a.extend(prefix_maps(inputs, tree_root));
    a.push("-isystem".into());
    a.push(inputs.resource_include.display().to_string());
    // The kernel's include order; -isystem keeps the kernel's own warnings out of -Wall.
    for dir in [
        f.join(format!("arch/{arch}/include/generated")),
        c.join(format!("arch/{arch}/include")),
        f.join("include"),
        c.join("include"),
        c.join(format!("arch/{arch}/include/uapi")),
        f.join(format!("arch/{arch}/include/generated/uapi")),
        c.join("include/uapi"),
        f.join("include/generated/uapi"),
    ] {
        a.push("-isystem".into());
        a.push(dir.display().to_string());
    }
    a.push("-include".into());
    a.push(c.join("include/linux/kconfig.h").display().to_string());
    a.push(format!("-I{}", inputs.project.join("includes").display()));
    // libbpf's headers after the kernel's.
    a.push("-idirafter".into());
    a.push(inputs.libbpf_parent.display().to_string());
    match what {
        // No header mtimes in the PCH: its cache key already names the tree's content, and
        // a tree unpacked again (same bytes, new mtimes) must not fail every compile that
        // loads a cached PCH with "has been modified since the precompiled header".
        LegacyOutput::Pch => {
            a.extend(["-Xclang", "-fno-pch-timestamp", "-x", "c-header"].map(String::from))
        }
        LegacyOutput::Ir { return_mode, pch } => {
            // Bitcode, not text IR: llc reads it in less time, and the object is the same.
            a.splice(0..0, ["-c".to_string(), "-emit-llvm".to_string()]);
            a.push(format!("-DKC_RETURN_MODE={}", return_mode as u8));
            if let Some(pch) = pch {
                a.push("-include-pch".into());
                a.push(pch.display().to_string());
            }
        }
    }
    a.push(src.display().to_string());
    a.push("-o".into());
    a.push(out.display().to_string());
    a
}

/// The BPF CPU of legacy objects: v2 has the conditional jumps that 4.x verifiers accept.
pub const LEGACY_CPU: &str = "v2";

/// `llc`'s arguments for a legacy object, as upstream's Makefile runs it (`bench build`'s
/// baseline; our build lowers with `bpf-codegen`, to the same bytes).
pub fn llc_args(ir: &Path, out: &Path) -> Vec<String> {
    [
        "-march=bpf".to_string(),
        format!("-mcpu={LEGACY_CPU}"),
        "-filetype=obj".to_string(),
    ]
    .into_iter()
    .chain([
        ir.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ])
    .collect()
}

/// The `vmlinux.h` CO-RE objects of `arch` compile against, under the checkout: written by
/// `cargo xtask vmlinux` from a kernel's BTF.
pub fn vmlinux_header(arch: Arch) -> PathBuf {
    match arch {
        Arch::Amd64 => PathBuf::from("co-re/vmlinux.h"),
        other => Path::new("co-re").join(other.as_str()).join("vmlinux.h"),
    }
}

/// clang arguments for a CO-RE collector: BPF target, vmlinux.h, BTF (`-g`).
pub fn core_clang_args(inputs: &Inputs, arch: Arch, src: &Path, out: &Path) -> Vec<String> {
    let target_arch = format!("-D__TARGET_ARCH_{}", arch.kernel_arch());
    let mut a: Vec<String> = [
        "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v2",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        target_arch,
        // vmlinux.h of 6.19+ kernels embeds tagged structs anonymously (as their headers
        // do: see the legacy flags), which clang accepts as a Microsoft extension.
        "-fms-extensions".into(),
        "-Wno-microsoft-anon-tag".into(),
        "-nostdinc".into(),
    ])
    .collect();
    a.extend(prefix_maps(inputs, None));
    a.push("-isystem".into());
    a.push(inputs.resource_include.display().to_string());
    // The architecture's vmlinux.h: amd64's is `co-re/vmlinux.h`, found in `co-re/`; another
    // architecture's directory comes first so that its own is found instead.
    if arch != Arch::Amd64 {
        a.push(format!(
            "-I{}",
            inputs.project.join("co-re").join(arch.as_str()).display()
        ));
    }
    a.push(format!("-I{}", inputs.project.join("co-re").display()));
    a.push(format!("-I{}", inputs.project.join("includes").display()));
    a.push("-idirafter".into());
    a.push(inputs.libbpf_parent.display().to_string());
    a.extend([
        "-c".into(),
        src.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            project: "/src".into(),
            libbpf_parent: "/libbpf".into(),
            resource_include: "/clang/include".into(),
        }
    }

    fn tree() -> HeaderTree {
        HeaderTree {
            series: "6.1".into(),
            arch: kc_common::Arch::Amd64,
            release: "6.1.0-50-cloud-amd64".into(),
            kernel_version: "6.1.176".into(),
            flavour_dir: "/cache/t/usr/src/linux-headers-6.1.0-50-cloud-amd64".into(),
            common_dir: "/cache/t/usr/src/linux-headers-6.1.0-50-common".into(),
            patches: vec![],
        }
    }

    #[test]
    fn legacy_args_order_and_modes() {
        let ir = LegacyOutput::Ir {
            return_mode: true,
            pch: Some(Path::new("/p/k.pch")),
        };
        let a = legacy_clang_args(
            &inputs(),
            &tree(),
            ir,
            Path::new("/src/kernel/vfs_kern.c"),
            Path::new("/o/vfs.bc"),
        );
        assert!(a.contains(&"-DKC_RETURN_MODE=1".to_string()));
        assert_eq!(&a[..3], ["-c", "-emit-llvm", "-g"]);
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-include-pch" && w[1] == "/p/k.pch"));
        assert!(
            a.contains(&"-ffile-prefix-map=/cache/t=/".to_string()),
            "{a:?}"
        );
        let pos = |s: &str| {
            a.iter()
                .position(|x| x.ends_with(s))
                .unwrap_or_else(|| panic!("{s} missing"))
        };
        // Generated headers first, libbpf after every kernel directory.
        assert!(pos("cloud-amd64/arch/x86/include/generated") < pos("common/arch/x86/include"));
        assert!(pos("common/include/uapi") < pos("/libbpf"));
        assert!(pos("/clang/include") < pos("cloud-amd64/arch/x86/include/generated"));
        let p = legacy_clang_args(
            &inputs(),
            &tree(),
            LegacyOutput::Ir {
                return_mode: false,
                pch: None,
            },
            Path::new("x.c"),
            Path::new("x.ll"),
        );
        assert!(
            p.contains(&"-DKC_RETURN_MODE=0".to_string())
                && !p.contains(&"-include-pch".to_string())
        );
        let h = legacy_clang_args(
            &inputs(),
            &tree(),
            LegacyOutput::Pch,
            Path::new("k.h"),
            Path::new("k.pch"),
        );
        assert!(h.windows(2).any(|w| w[0] == "-x" && w[1] == "c-header"));
        assert!(
            !h.iter().any(|x| x.starts_with("-DKC_RETURN_MODE")),
            "the header serves both modes"
        );
        assert_eq!(h[0], "-g", "objects built on the PCH need -g for their BTF");
    }

    #[test]
    fn core_args() {
        let a = core_clang_args(
            &inputs(),
            Arch::Amd64,
            Path::new("/src/co-re/vfs.bpf.c"),
            Path::new("/o/vfs.bpf.o"),
        );
        assert!(a.windows(2).any(|w| w[0] == "-target" && w[1] == "bpf"));
        assert!(a.contains(&"-I/src/co-re".to_string()) && a.contains(&"-Werror".to_string()));
        assert!(a.contains(&"-D__TARGET_ARCH_x86".to_string()));
        // arm64's own vmlinux.h is found before amd64's.
        let a = core_clang_args(
            &inputs(),
            Arch::Arm64,
            Path::new("/src/co-re/vfs.bpf.c"),
            Path::new("/o/vfs.bpf.o"),
        );
        let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
        assert!(pos("-I/src/co-re/arm64") < pos("-I/src/co-re"));
        assert!(a.contains(&"-D__TARGET_ARCH_arm64".to_string()));
    }
}
