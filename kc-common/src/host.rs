//! Facts about the machine we run on that the pipeline and the installer both need, read
//! from files rather than from the output of other programs.

use std::path::Path;

use crate::names::{Arch, Libc};

/// The program interpreter (`PT_INTERP`) an ELF executable asks for, or `None` for a static
/// executable. Errors when the bytes are not an ELF file.
pub fn interpreter(bytes: &[u8]) -> Result<Option<String>, String> {
    use object::read::elf::{ElfFile32, ElfFile64, FileHeader, ProgramHeader};
    use object::Endianness;
    fn of<H: FileHeader<Endian = Endianness>>(
        elf: &object::read::elf::ElfFile<H>,
        bytes: &[u8],
    ) -> Option<String> {
        let endian = elf.endian();
        elf.elf_program_headers()
            .iter()
            .find(|ph| ph.p_type(endian) == object::elf::PT_INTERP)
            .map(|ph| {
                let data = ph.data(endian, bytes).unwrap_or_default();
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                String::from_utf8_lossy(&data[..end]).into_owned()
            })
    }
    if let Ok(elf) = ElfFile64::<Endianness>::parse(bytes) {
        return Ok(of(&elf, bytes));
    }
    match ElfFile32::<Endianness>::parse(bytes) {
        Ok(elf) => Ok(of(&elf, bytes)),
        Err(e) => Err(format!("not an ELF executable: {e}")),
    }
}

/// Whether an ELF executable needs no dynamic loader: no `PT_INTERP` and no `PT_DYNAMIC`.
pub fn is_static_executable(bytes: &[u8]) -> Result<bool, String> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let elf = ElfFile64::<object::Endianness>::parse(bytes)
        .map_err(|e| format!("not an ELF64 file: {e}"))?;
    let endian = elf.endian();
    Ok(!elf.elf_program_headers().iter().any(|ph| {
        matches!(
            ph.p_type(endian),
            object::elf::PT_INTERP | object::elf::PT_DYNAMIC
        )
    }))
}

/// The architecture an ELF executable is built for (its `e_machine`).
pub fn executable_arch(bytes: &[u8]) -> Result<Arch, String> {
    use object::read::elf::{ElfFile64, FileHeader};
    let elf = ElfFile64::<object::Endianness>::parse(bytes)
        .map_err(|e| format!("not an ELF64 file: {e}"))?;
    match elf.elf_header().e_machine(elf.endian()) {
        object::elf::EM_X86_64 => Ok(Arch::Amd64),
        object::elf::EM_AARCH64 => Ok(Arch::Arm64),
        other => Err(format!("ELF machine {other} is neither x86-64 nor AArch64")),
    }
}

/// Where a kernel exposes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether `path` holds BTF (its magic, 0xeb9f, in either byte order): `Err` says why not.
/// CO-RE objects need the running kernel's BTF to relocate against.
pub fn btf_status(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("no BTF at {}: {e}", path.display()))?;
    match magic {
        [0x9f, 0xeb] | [0xeb, 0x9f] => Ok(()),
        _ => Err(format!("{} is not BTF (no 0xeb9f magic)", path.display())),
    }
}

/// The libc whose dynamic loader an interpreter path names.
pub fn libc_of_interpreter(interp: &str) -> Libc {
    let file = interp.rsplit('/').next().unwrap_or(interp);
    if file.starts_with("ld-musl-") {
        Libc::Musl
    } else {
        Libc::Glibc
    }
}

/// The host's libc: the one whose loader the system's own programs run with (`/bin/sh`,
/// else `/usr/bin/env`). A musl loader that is merely installed (Debian's `musl` package puts
/// one in /lib) does not make a glibc host musl. A host whose shell is static says nothing:
/// glibc is assumed.
pub fn host_libc() -> Libc {
    host_libc_from(&[Path::new("/bin/sh"), Path::new("/usr/bin/env")])
}

/// The architecture this program runs on (it is built for its host).
pub fn host_arch() -> Result<Arch, crate::names::NameError> {
    Arch::of_machine(std::env::consts::ARCH)
}

fn host_libc_from(programs: &[&Path]) -> Libc {
    programs
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find_map(|bytes| interpreter(&bytes).ok().flatten())
        .map_or(Libc::Glibc, |i| libc_of_interpreter(&i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_name_their_libc() {
        assert_eq!(libc_of_interpreter("/lib/ld-musl-x86_64.so.1"), Libc::Musl);
        assert_eq!(libc_of_interpreter("/lib/ld-musl-aarch64.so.1"), Libc::Musl);
        assert_eq!(
            libc_of_interpreter("/lib64/ld-linux-x86-64.so.2"),
            Libc::Glibc
        );
        assert_eq!(
            libc_of_interpreter("/lib/ld-linux-aarch64.so.1"),
            Libc::Glibc
        );
    }

    #[test]
    fn this_hosts_shell_is_dynamic_and_not_an_elf_is_an_error() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let interp = interpreter(&sh)
            .unwrap()
            .expect("/bin/sh is dynamically linked");
        assert!(interp.contains("ld-"), "{interp}");
        assert!(!is_static_executable(&sh).unwrap());
        assert!(interpreter(b"#!/bin/sh\n").is_err());
        assert!(is_static_executable(b"\x7fELF").is_err());
        assert_eq!(executable_arch(&sh).ok(), host_arch().ok());
        assert!(executable_arch(b"\x7fELF").is_err());
        // The test binary runs on the host's libc.
        assert_eq!(host_libc(), libc_of_interpreter(&interp));
        // This host exposes its BTF; a missing or foreign file says so.
        btf_status(Path::new(KERNEL_BTF)).unwrap();
        let e = btf_status(Path::new("/nonexistent")).unwrap_err();
        assert!(e.starts_with("no BTF at /nonexistent"), "{e}");
        assert!(btf_status(Path::new("/bin/sh"))
            .unwrap_err()
            .contains("is not BTF"));
        // Programs that cannot be read say nothing.
        assert_eq!(host_libc_from(&[Path::new("/nonexistent")]), Libc::Glibc);
    }
}
