//! `xtask bpf-codegen` (hidden): lowers legacy collectors' LLVM bitcode to BPF objects, many
//! per process, through the C API of the very `libLLVM` the toolchain's `llc` links.
//!
//! Why: `llc -march=bpf` spends longer loading libLLVM (about 26 ms of page faults here) than
//! lowering one collector (about 18 ms), once per object. This helper pays the load once per
//! worker. It does what `llc -march=bpf -mcpu=<cpu> -filetype=obj` does (the module's triple
//! with its architecture set to `bpfel`, default optimization, relocation and code models)
//! and writes the same bytes: the build's byte-identity checks hold it to that.
//!
//! It runs as its own process, in the checkout, because the BPF backend reads the sources
//! named in the debug info (relative to the working directory, as llc did) to copy their
//! lines into BTF.ext, and because LLVM exits the process on a fatal error.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::cmd;

use crate::compile::flags::LEGACY_CPU;
use crate::process;

#[derive(Debug, Args)]
pub struct BpfCodegenOptions {
    /// The libLLVM to load (a file name the dynamic loader resolves, as for `llc`)
    #[arg(long)]
    pub library: String,
    /// The BPF CPU (`llc -mcpu`)
    #[arg(long)]
    pub cpu: String,
    /// Pairs of bitcode input and object output
    #[arg(required = true, num_args = 2..)]
    pub files: Vec<PathBuf>,
}

/// Lowers every pair; objects are written whole (temp file, then rename) so that an object
/// that exists is complete. Fails if any pair failed; LLVM itself may end the process on a
/// fatal error, which leaves that pair's object and every later one absent.
pub fn run(o: BpfCodegenOptions) -> Result<()> {
    if !o.files.len().is_multiple_of(2) {
        bail!(
            "bpf-codegen takes pairs of bitcode and object, got {} paths",
            o.files.len()
        );
    }
    let llvm = Llvm::load(&o.library)?;
    let mut failed = 0;
    for pair in o.files.chunks(2) {
        let (bitcode, object) = (&pair[0], &pair[1]);
        match llvm.lower(bitcode, &o.cpu) {
            Ok(bytes) => crate::atomic::write(object, &bytes)?,
            Err(e) => {
                // One line per module, which `failure_of` finds again.
                let reason: Vec<&str> =
                    e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                eprintln!("{}: {}", bitcode.display(), reason.join(" | "));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} modules did not lower", o.files.len() / 2);
    }
    Ok(())
}

/// Runs the helper (this xtask binary) in `dir` on `pairs`; returns the error of a failed run
/// (the pairs whose object exists succeeded even then).
pub fn lower_batch(
    library: &str,
    dir: &Path,
    pairs: &[(PathBuf, PathBuf)],
) -> std::result::Result<(), String> {
    let exe = crate::paths::xtask_exe().map_err(|e| format!("{e:#}"))?;
    let files: Vec<&Path> = pairs
        .iter()
        .flat_map(|(b, o)| [b.as_path(), o.as_path()])
        .collect();
    let sh = process::shell_in(dir);
    process::output(cmd!(
        sh,
        "{exe} bpf-codegen --library {library} --cpu {LEGACY_CPU} {files...}"
    ))
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// What a failed [`lower_batch`] said about one module of the batch, when it named it (a
/// fatal LLVM error ends the helper without naming anything).
pub fn failure_of(batch_error: &str, bitcode: &Path) -> Option<String> {
    let prefix = format!("{}: ", bitcode.display());
    batch_error
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|reason| format!("lowering to BPF failed: {reason}"))
}

/// The libLLVM an `llc` binary links (its `DT_NEEDED` entry), for [`Llvm::load`].
pub fn libllvm_of(llc: &Path) -> Result<String> {
    let data = std::fs::read(llc).with_context(|| format!("reading {}", llc.display()))?;
    needed_libllvm(&data)
        .with_context(|| format!("reading the dynamic section of {}", llc.display()))?
        .with_context(|| {
            format!(
                "{} links no libLLVM (a static llc?): the build lowers bitcode through libLLVM's C API; \
                 put Debian's llvm (`cargo xtask setup`) first on PATH",
                llc.display()
            )
        })
}

/// The first `DT_NEEDED` entry of an ELF64 file that names a libLLVM.
fn needed_libllvm(data: &[u8]) -> Result<Option<String>> {
    use object::elf::{FileHeader64, DT_NEEDED};
    use object::read::elf::{Dyn, FileHeader};
    use object::Endianness;
    let header = FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let Some((entries, strings_index)) = sections.dynamic(endian, data)? else {
        return Ok(None);
    };
    let strings = sections.strings(endian, data, strings_index)?;
    for d in entries {
        if d.tag32(endian) == Some(DT_NEEDED) {
            let name = String::from_utf8_lossy(d.string(endian, strings)?).into_owned();
            if name.starts_with("libLLVM") {
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

type Ref = *mut c_void;
type DiagnosticHandler = unsafe extern "C" fn(Ref, *mut c_void);

/// What LLVM reported about one module: its errors (severity `LLVMDSError`) are the
/// module's failure; warnings go to stderr as llc prints them.
struct Diagnostics<'a> {
    llvm: &'a Llvm,
    errors: Vec<String>,
}

const SEVERITY_ERROR: c_int = 0;
const SEVERITY_WARNING: c_int = 1;

/// LLVM's default handler exits the process on an error; this one records it instead, so
/// that the module fails by name and the batch goes on.
unsafe extern "C" fn on_diagnostic(info: Ref, context: *mut c_void) {
    // SAFETY: `context` is the `Diagnostics` that `Llvm::lower` registered with this
    // handler, alive until it removes the handler with the context.
    let d = unsafe { &mut *(context as *mut Diagnostics) };
    let (severity, text) = unsafe {
        let severity = (d.llvm.diagnostic_severity)(info);
        (
            severity,
            take_message(d.llvm, (d.llvm.diagnostic_text)(info)),
        )
    };
    match severity {
        SEVERITY_ERROR => d.errors.push(text),
        SEVERITY_WARNING => eprintln!("warning: {text}"),
        _ => {}
    }
}

/// The few entry points of LLVM's C API the lowering needs, resolved from the loaded library.
struct Llvm {
    context_create: unsafe extern "C" fn() -> Ref,
    context_dispose: unsafe extern "C" fn(Ref),
    context_set_handler: unsafe extern "C" fn(Ref, Option<DiagnosticHandler>, *mut c_void),
    diagnostic_text: unsafe extern "C" fn(Ref) -> *mut c_char,
    diagnostic_severity: unsafe extern "C" fn(Ref) -> c_int,
    buffer_from_file: unsafe extern "C" fn(*const c_char, *mut Ref, *mut *mut c_char) -> c_int,
    buffer_start: unsafe extern "C" fn(Ref) -> *const c_char,
    buffer_size: unsafe extern "C" fn(Ref) -> usize,
    buffer_dispose: unsafe extern "C" fn(Ref),
    parse_bitcode: unsafe extern "C" fn(Ref, Ref, *mut Ref) -> c_int,
    module_triple: unsafe extern "C" fn(Ref) -> *const c_char,
    module_dispose: unsafe extern "C" fn(Ref),
    machine_create: unsafe extern "C" fn(
        Ref,
        *const c_char,
        *const c_char,
        *const c_char,
        c_int,
        c_int,
        c_int,
    ) -> Ref,
    machine_emit: unsafe extern "C" fn(Ref, Ref, c_int, *mut *mut c_char, *mut Ref) -> c_int,
    machine_dispose: unsafe extern "C" fn(Ref),
    message_dispose: unsafe extern "C" fn(*mut c_char),
    bpf: Ref,
    _library: libloading::Library,
}

// LLVMCodeGenOptLevel, LLVMRelocMode, LLVMCodeModel and LLVMCodeGenFileType values: llc's
// defaults (-O2, the target's relocation and code models) and an object file.
const OPT_DEFAULT: c_int = 2;
const RELOC_DEFAULT: c_int = 0;
const CODE_MODEL_DEFAULT: c_int = 0;
const OBJECT_FILE: c_int = 1;

/// Takes an LLVM-allocated message, freeing it.
unsafe fn take_message(llvm: &Llvm, m: *mut c_char) -> String {
    if m.is_null() {
        return "no message".into();
    }
    let s = CStr::from_ptr(m).to_string_lossy().into_owned();
    (llvm.message_dispose)(m);
    s
}

impl Llvm {
    fn load(library: &str) -> Result<Self> {
        // SAFETY: loading libLLVM runs its static constructors, which is what `llc` does.
        let lib = unsafe { libloading::Library::new(library) }.with_context(|| {
            format!("loading {library} (the libLLVM the toolchain's llc links)")
        })?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the types are those of LLVM's C API (llvm-c/*.h) for this symbol.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .with_context(|| format!("{library} has no {}", $name))?
            };
        }
        let init: [unsafe extern "C" fn(); 4] = [
            sym!("LLVMInitializeBPFTargetInfo"),
            sym!("LLVMInitializeBPFTarget"),
            sym!("LLVMInitializeBPFTargetMC"),
            sym!("LLVMInitializeBPFAsmPrinter"),
        ];
        for f in init {
            // SAFETY: registration functions without arguments, called once per process.
            unsafe { f() };
        }
        let target_from_name: unsafe extern "C" fn(*const c_char) -> Ref =
            sym!("LLVMGetTargetFromName");
        // SAFETY: a NUL-terminated name; the target registry was initialized above.
        let bpf = unsafe { target_from_name(c"bpf".as_ptr()) };
        if bpf.is_null() {
            bail!("{library} has no BPF target");
        }
        Ok(Llvm {
            context_create: sym!("LLVMContextCreate"),
            context_dispose: sym!("LLVMContextDispose"),
            context_set_handler: sym!("LLVMContextSetDiagnosticHandler"),
            diagnostic_text: sym!("LLVMGetDiagInfoDescription"),
            diagnostic_severity: sym!("LLVMGetDiagInfoSeverity"),
            buffer_from_file: sym!("LLVMCreateMemoryBufferWithContentsOfFile"),
            buffer_start: sym!("LLVMGetBufferStart"),
            buffer_size: sym!("LLVMGetBufferSize"),
            buffer_dispose: sym!("LLVMDisposeMemoryBuffer"),
            parse_bitcode: sym!("LLVMParseBitcodeInContext2"),
            module_triple: sym!("LLVMGetTarget"),
            module_dispose: sym!("LLVMDisposeModule"),
            machine_create: sym!("LLVMCreateTargetMachine"),
            machine_emit: sym!("LLVMTargetMachineEmitToMemoryBuffer"),
            machine_dispose: sym!("LLVMDisposeTargetMachine"),
            message_dispose: sym!("LLVMDisposeMessage"),
            bpf,
            _library: lib,
        })
    }

    /// One module, in its own context (as one `llc` run has), to an object's bytes.
    fn lower(&self, bitcode: &Path, cpu: &str) -> Result<Vec<u8>, String> {
        let path =
            CString::new(bitcode.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        let cpu = CString::new(cpu).map_err(|e| e.to_string())?;
        let mut diagnostics = Diagnostics {
            llvm: self,
            errors: Vec::new(),
        };
        // SAFETY: every reference comes from the API and is disposed exactly once below;
        // `diagnostics` outlives the context its handler is registered with.
        unsafe {
            let mut buffer: Ref = std::ptr::null_mut();
            let mut message: *mut c_char = std::ptr::null_mut();
            if (self.buffer_from_file)(path.as_ptr(), &mut buffer, &mut message) != 0 {
                return Err(format!("reading it: {}", take_message(self, message)));
            }
            let context = (self.context_create)();
            (self.context_set_handler)(
                context,
                Some(on_diagnostic),
                &mut diagnostics as *mut Diagnostics as *mut c_void,
            );
            let mut module: Ref = std::ptr::null_mut();
            let result = if (self.parse_bitcode)(context, buffer, &mut module) == 0 {
                let r = self.emit(module, &cpu);
                (self.module_dispose)(module);
                r
            } else {
                Err("it is not valid bitcode".into())
            };
            (self.context_dispose)(context);
            (self.buffer_dispose)(buffer);
            match (result, diagnostics.errors.is_empty()) {
                (Ok(bytes), true) => Ok(bytes),
                (Ok(_), false) => Err(diagnostics.errors.join("; ")),
                (Err(e), _) => Err(std::iter::once(e)
                    .chain(diagnostics.errors)
                    .collect::<Vec<_>>()
                    .join("; ")),
            }
        }
    }

    /// Lowers a parsed module for BPF `cpu`, as `llc -march=bpf` does.
    unsafe fn emit(&self, module: Ref, cpu: &CStr) -> Result<Vec<u8>, String> {
        // SAFETY (whole body): `module` is a live module; the machine and the output buffer
        // are created and disposed here.
        unsafe {
            let triple = CStr::from_ptr((self.module_triple)(module)).to_string_lossy();
            let triple = CString::new(bpf_triple(&triple)).map_err(|e| e.to_string())?;
            let machine = (self.machine_create)(
                self.bpf,
                triple.as_ptr(),
                cpu.as_ptr(),
                c"".as_ptr(),
                OPT_DEFAULT,
                RELOC_DEFAULT,
                CODE_MODEL_DEFAULT,
            );
            let mut message: *mut c_char = std::ptr::null_mut();
            let mut out: Ref = std::ptr::null_mut();
            let emitted = (self.machine_emit)(machine, module, OBJECT_FILE, &mut message, &mut out);
            let r = if emitted != 0 {
                Err(format!("lowering it: {}", take_message(self, message)))
            } else {
                let bytes = std::slice::from_raw_parts(
                    (self.buffer_start)(out) as *const u8,
                    (self.buffer_size)(out),
                )
                .to_vec();
                (self.buffer_dispose)(out);
                Ok(bytes)
            };
            (self.machine_dispose)(machine);
            r
        }
    }
}

/// The triple `llc -march=bpf` lowers a module of `module_triple` for: its architecture
/// replaced by little-endian BPF, the rest kept.
fn bpf_triple(module_triple: &str) -> String {
    match module_triple.split_once('-') {
        Some((_, rest)) => format!("bpfel-{rest}"),
        None => "bpfel".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_triple_keeps_vendor_and_system() {
        assert_eq!(bpf_triple("x86_64-pc-linux-gnu"), "bpfel-pc-linux-gnu");
        assert_eq!(
            bpf_triple("aarch64-unknown-linux-gnu"),
            "bpfel-unknown-linux-gnu"
        );
        assert_eq!(bpf_triple(""), "bpfel");
    }

    /// A program with a map, a helper call and a loop, compiled as the legacy build does
    /// (bitcode for the host, with debug info): lowered by the helper and by `llc`, in a
    /// directory where the source is found (its lines go into BTF.ext).
    const PROGRAM: &str = r#"
struct map { unsigned type, key_size, value_size, max_entries; };
struct map counts __attribute__((section("maps"), used)) = { 2, 4, 8, 4 };
static void *(*lookup)(void *, const void *) = (void *)1;
__attribute__((section("kprobe/do_sys_open"), used))
int count_open(void *ctx) {
    unsigned key = 0;
    unsigned long *v = lookup(&counts, &key);
    for (int i = 0; v && i < 4; i++)
        __sync_fetch_and_add(v, i);
    return 0;
}
char _license[] __attribute__((section("license"), used)) = "GPL";
"#;

    fn toolchain_or_skip(test: &str) -> Option<crate::compile::toolchain::Toolchain> {
        crate::compile::toolchain::Toolchain::detect_or_skip(test)
    }

    #[test]
    fn the_helper_lowers_to_llcs_bytes_needs_toolchain() {
        let Some(tc) = toolchain_or_skip("the_helper_lowers_to_llcs_bytes_needs_toolchain") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("prog.c"), PROGRAM).unwrap();
        let sh = process::shell_in(d);
        let clang = &tc.clang;
        let map = format!("-ffile-prefix-map={}=.", d.display());
        process::output(cmd!(
            sh,
            "{clang} -g -O2 {map} -c -emit-llvm prog.c -o prog.bc"
        ))
        .unwrap();
        let llc = &tc.llc;
        process::output(cmd!(
            sh,
            "{llc} -march=bpf -mcpu={LEGACY_CPU} -filetype=obj prog.bc -o by-llc.o"
        ))
        .unwrap();
        let pairs = [(d.join("prog.bc"), d.join("by-helper.o"))];
        lower_batch(&tc.libllvm, d, &pairs).unwrap();
        let by_llc = std::fs::read(d.join("by-llc.o")).unwrap();
        assert_eq!(std::fs::read(d.join("by-helper.o")).unwrap(), by_llc);
        // The source's lines are in BTF.ext: the helper read it from its directory.
        let needle = b"__sync_fetch_and_add(v, i);";
        assert!(by_llc.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn a_module_that_does_not_lower_fails_and_writes_nothing_needs_toolchain() {
        let Some(tc) = toolchain_or_skip(
            "a_module_that_does_not_lower_fails_and_writes_nothing_needs_toolchain",
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("junk.bc"), b"BC\xc0\xde but not bitcode").unwrap();
        let pairs = [(d.join("junk.bc"), d.join("junk.o"))];
        let e = lower_batch(&tc.libllvm, d, &pairs).unwrap_err();
        assert!(e.contains("bpf-codegen"), "{e}");
        let told = failure_of(&e, &d.join("junk.bc")).unwrap();
        assert!(
            told.starts_with("lowering to BPF failed: it is not valid bitcode; "),
            "{told}"
        );
        assert!(!d.join("junk.o").exists());
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_batch_failure_is_told_per_module() {
        let out = "xtask failed (exit status: 1): `xtask bpf-codegen ...`\n\
                   /w/a/out.bc: too many args | ; ./kernel/x.c:8:30\n\
                   error: 1 of 2 modules did not lower";
        assert_eq!(
            failure_of(out, Path::new("/w/a/out.bc")).as_deref(),
            Some("lowering to BPF failed: too many args | ; ./kernel/x.c:8:30")
        );
        assert_eq!(failure_of(out, Path::new("/w/b/out.bc")), None);
    }

    #[test]
    fn a_binary_without_libllvm_names_none() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(needed_libllvm(&me).unwrap(), None);
        assert!(needed_libllvm(b"not an ELF file").is_err());
    }
}
