//! The host's compilers and tools, and their versions (part of every cache key).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kc_common::{Arch, Libc};
use sha2::{Digest, Sha256};
use xshell::cmd;

use crate::process;

#[derive(Debug, Clone)]
pub struct Toolchain {
    pub clang: PathBuf,
    /// Runs only as upstream's baseline in `bench build`; it names the libLLVM whose BPF
    /// backend lowers our legacy bitcode (`bpf-codegen`).
    pub llc: PathBuf,
    /// The libLLVM `llc` links (its `DT_NEEDED` name).
    pub libllvm: String,
    pub llvm_strip: PathBuf,
    pub bpftool: PathBuf,
    pub cc: PathBuf,
    /// clang's own headers (`stddef.h`, `stdarg.h`): the only system headers BPF code sees.
    pub resource_include: PathBuf,
    /// `.../bpf/*.h` of libbpf.
    pub libbpf_include: PathBuf,
    /// Versions of everything above and a hash of the libbpf headers.
    pub fingerprint: String,
    /// Tool name -> the first line of its version output (recorded in each cell).
    pub versions: std::collections::BTreeMap<String, String>,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The first non-empty line a tool prints for `--version`.
fn version_line(tool: &Path) -> Result<String> {
    let sh = process::shell();
    let out = process::output(cmd!(sh, "{tool} --version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A tool to ask, what to call its answer, and how to ask.
type Probe<'a> = (&'a str, &'a Path, &'a [&'a str]);

/// Asks every tool at once: each takes a tenth of a second to answer (loading LLVM).
fn run_probes(tools: &[Probe]) -> Result<Vec<Vec<u8>>> {
    std::thread::scope(|s| {
        let running: Vec<_> = tools
            .iter()
            .map(|(_, tool, args)| {
                s.spawn(move || {
                    let sh = process::shell();
                    let args = *args;
                    process::capture(cmd!(sh, "{tool} {args...}")).map(|o| o.stdout)
                })
            })
            .collect();
        running
            .into_iter()
            .zip(tools)
            .map(
                |(r, (name, tool, _))| match r.join().expect("version thread") {
                    Ok(stdout) => Ok(stdout),
                    // Informative only: a host without dpkg still builds.
                    Err(_) if *name == "libbpf-dev" => Ok(Vec::new()),
                    Err(e) => Err(anyhow::Error::new(e)
                        .context(format!("asking {} for its version", tool.display()))),
                },
            )
            .collect()
    })
}

/// What the tools' answers depend on, read without running them: each binary (symlinks
/// resolved) by path, size, mtime and inode, and dpkg's database (libbpf-dev's version). An
/// upgraded or replaced tool changes it; None when something cannot be read (then ask).
fn probe_key(binaries: &[&Path]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for b in binaries {
        let real = std::fs::canonicalize(b).ok()?;
        let m = std::fs::metadata(&real).ok()?;
        h.update(real.as_os_str().as_encoded_bytes());
        h.update(format!(
            "\0{} {} {} {}\0",
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ));
    }
    let dpkg = std::fs::metadata("/var/lib/dpkg/status").ok();
    h.update(format!(
        "{:?}",
        dpkg.map(|m| (m.mtime(), m.mtime_nsec(), m.len()))
    ));
    Some(hex::encode(h.finalize()))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedProbes {
    key: String,
    outputs: Vec<String>,
}

fn read_probes(file: &Path, key: &str, count: usize) -> Option<Vec<Vec<u8>>> {
    let c: CachedProbes = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    (c.key == key && c.outputs.len() == count)
        .then(|| c.outputs.into_iter().map(String::into_bytes).collect())
}

/// Best effort: a cache that cannot be written only means asking again next time.
fn write_probes(file: &Path, key: &str, outputs: &[Vec<u8>]) {
    let Ok(outputs) = outputs
        .iter()
        .map(|o| String::from_utf8(o.clone()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let c = CachedProbes {
        key: key.to_string(),
        outputs,
    };
    if let Ok(json) = serde_json::to_vec(&c) {
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")));
        let _ = crate::atomic::write(file, &json);
    }
}

impl Toolchain {
    /// For a test that needs the tools: them, or `None` with the test's skip recorded (why,
    /// through `KC_SKIP_LOG`), so that the run counts it as skipped and never as passed.
    #[cfg(test)]
    pub fn detect_or_skip(test: &str) -> Option<Self> {
        match Self::detect() {
            Ok(tc) => Some(tc),
            Err(e) => {
                kc_common::skip::skip(test, &format!("{e:#}"));
                None
            }
        }
    }

    pub fn detect() -> Result<Self> {
        Self::detect_with(None)
    }

    /// [`Toolchain::detect`], remembering the tools' answers in `probe_cache` for as long as
    /// the binaries stay the same: a no-op rebuild then runs no tool at all.
    pub fn detect_cached(probe_cache: &Path) -> Result<Self> {
        Self::detect_with(Some(probe_cache))
    }

    fn detect_with(probe_cache: Option<&Path>) -> Result<Self> {
        let need = |name: &str, pkg: &str| {
            find(name).with_context(|| {
                format!("{name} is not installed (Debian package {pkg}); run `cargo xtask setup`")
            })
        };
        let clang = need("clang", "clang")?;
        let llc = need("llc", "llvm")?;
        let llvm_strip = need("llvm-strip", "llvm")?;
        let bpftool = need("bpftool", "bpftool")?;
        let cc = need("cc", "gcc")?;
        let tools: [Probe; 6] = [
            ("clang", &clang, &["--version"]),
            ("llc", &llc, &["--version"]),
            ("bpftool", &bpftool, &["version"]),
            ("cc", &cc, &["--version"]),
            ("resource-dir", &clang, &["-print-file-name=include"]),
            (
                "libbpf-dev",
                Path::new("dpkg-query"),
                &["-W", "-f=${Version}", "libbpf-dev"],
            ),
        ];
        let probe_key = probe_cache.and_then(|_| probe_key(&[&clang, &llc, &bpftool, &cc]));
        let cached = probe_cache
            .zip(probe_key.as_deref())
            .and_then(|(file, key)| read_probes(file, key, tools.len()));
        let outputs = match cached {
            Some(outputs) => outputs,
            None => {
                let outputs = run_probes(&tools)?;
                if let Some((file, key)) = probe_cache.zip(probe_key.as_deref()) {
                    write_probes(file, key, &outputs);
                }
                outputs
            }
        };
        let out = |name: &str| -> &[u8] {
            let i = tools
                .iter()
                .position(|t| t.0 == name)
                .expect("a known tool");
            &outputs[i]
        };
        let resource_include = PathBuf::from(String::from_utf8_lossy(out("resource-dir")).trim());
        if !resource_include.join("stddef.h").is_file() {
            bail!(
                "clang's resource include directory {} has no stddef.h",
                resource_include.display()
            );
        }
        let libbpf_include = PathBuf::from("/usr/include/bpf");
        if !libbpf_include.join("bpf_helpers.h").is_file() {
            bail!(
                "libbpf's headers are missing (Debian package libbpf-dev); run `cargo xtask setup`"
            );
        }
        let mut h = Sha256::new();
        let mut versions = std::collections::BTreeMap::new();
        for name in ["clang", "llc", "bpftool", "cc"] {
            let stdout = out(name);
            h.update(stdout);
            let text = String::from_utf8_lossy(stdout);
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("LLVM (http"))
                .unwrap_or("");
            versions.insert(name.to_string(), line.to_string());
        }
        let libbpf = String::from_utf8_lossy(out("libbpf-dev")).into_owned();
        versions.insert("libbpf-dev".to_string(), libbpf);
        let mut headers: Vec<PathBuf> = std::fs::read_dir(&libbpf_include)?
            .flatten()
            .map(|e| e.path())
            .collect();
        headers.sort();
        for p in headers {
            h.update(p.file_name().unwrap_or_default().as_encoded_bytes());
            h.update(std::fs::read(&p)?);
        }
        let libllvm = crate::bpf_codegen::libllvm_of(&llc)?;
        Ok(Self {
            clang,
            llc,
            libllvm,
            llvm_strip,
            bpftool,
            cc,
            resource_include,
            libbpf_include,
            fingerprint: hex::encode(h.finalize()),
            versions,
        })
    }
}

/// Where the musl image installs zlib, libelf and libbpf built with `musl-gcc` (amd64's).
pub const MUSL_PREFIX: &str = "/opt/kc-musl";

/// Where the musl image installs `arch`'s static zlib, libelf and libbpf (`KC_MUSL_PREFIX`
/// overrides amd64's).
pub fn musl_prefix(arch: Arch) -> PathBuf {
    match arch {
        Arch::Amd64 => std::env::var_os("KC_MUSL_PREFIX")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(MUSL_PREFIX), PathBuf::from),
        other => PathBuf::from(format!("{MUSL_PREFIX}-{other}")),
    }
}

/// The GNU triple of Debian's compilers for `arch` (`<triple>-gcc`, `/usr/lib/<triple>`).
pub const fn gnu_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    }
}

/// musl's triple for `arch`: Debian's `musl-dev:<arch>` puts its `musl-gcc.specs` under
/// `/usr/lib/<triple>/`.
const fn musl_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-musl",
        Arch::Arm64 => "aarch64-linux-musl",
    }
}

/// The C compiler that makes `arch`'s executables: the host's own for its architecture,
/// else Debian's cross compiler (`gcc-<triple>`).
pub fn c_compiler(arch: Arch, tc: &Toolchain) -> Result<PathBuf> {
    if kc_common::host::host_arch().ok() == Some(arch) {
        return Ok(tc.cc.clone());
    }
    let name = format!("{}-gcc", gnu_triple(arch));
    find(&name).with_context(|| {
        format!(
            "{name} is not installed: {arch} binaries are cross-compiled with Debian's gcc-{} \
             and libc6-dev-{arch}-cross (`cargo xtask setup`), or built in the images (`--backend docker`)",
            gnu_triple(arch)
        )
    })
}

/// How `kc-loader` is compiled and linked for one libc and architecture: glibc links the
/// system's libbpf dynamically; musl links libbpf, libelf and zlib built with musl's
/// compiler, fully static. Another architecture's loader is cross-compiled against that
/// architecture's multiarch libraries.
#[derive(Debug, Clone)]
pub struct LoaderToolchain {
    pub libc: Libc,
    pub arch: Arch,
    pub cc: PathBuf,
    /// Include paths, before the source.
    pub cflags: Vec<String>,
    /// Libraries, after the source.
    pub ldflags: Vec<String>,
    /// The compiler's version and the libraries' bytes: part of the loader's cache key
    /// (empty for the host's own glibc toolchain, which the BPF toolchain's key covers).
    pub fingerprint: String,
    /// Recorded in each cell's build-info next to the BPF toolchain's.
    pub versions: std::collections::BTreeMap<String, String>,
}

impl LoaderToolchain {
    pub fn detect(libc: Libc, arch: Arch, tc: &Toolchain) -> Result<Self> {
        match libc {
            Libc::Glibc => Self::glibc(arch, tc, false),
            Libc::Musl => Self::musl(arch, tc, &musl_prefix(arch), Self::libs()),
        }
    }

    /// A glibc toolchain linking statically: vmtest's loader, which runs in an initramfs
    /// without a libc.
    pub fn static_glibc(arch: Arch, tc: &Toolchain) -> Result<Self> {
        Self::glibc(arch, tc, true)
    }

    fn glibc(arch: Arch, tc: &Toolchain, link_static: bool) -> Result<Self> {
        let cc = c_compiler(arch, tc)?;
        let mut ldflags = Vec::new();
        if link_static {
            ldflags.push("-static".to_string());
        }
        ldflags.extend(Self::libs());
        let (fingerprint, versions) = if cc == tc.cc {
            (String::new(), Default::default())
        } else {
            // The cross compiler and its architecture's libbpf are not in the BPF toolchain's.
            let cc_version = version_line(&cc)?;
            let mut h = Sha256::new();
            h.update(arch.as_str());
            h.update(&cc_version);
            for lib in ["libbpf.so", "libbpf.a"] {
                let p = Path::new("/usr/lib").join(gnu_triple(arch)).join(lib);
                let bytes = std::fs::read(&p).with_context(|| {
                    format!(
                        "{} is missing: the {arch} loader links {arch}'s libbpf (libbpf-dev:{arch}, \
                         with libelf-dev:{arch} and zlib1g-dev:{arch}: `cargo xtask setup`), or build in the images (`--backend docker`)",
                        p.display()
                    )
                })?;
                h.update(bytes);
            }
            let versions = [(format!("{arch}-gcc"), cc_version)].into_iter().collect();
            (hex::encode(h.finalize()), versions)
        };
        Ok(Self {
            libc: Libc::Glibc,
            arch,
            cc,
            cflags: vec![],
            ldflags,
            fingerprint,
            versions,
        })
    }

    fn libs() -> Vec<String> {
        ["-lbpf", "-lelf", "-lz"].map(String::from).to_vec()
    }

    /// Whether it links a static executable (checked after each link).
    pub fn is_static(&self) -> bool {
        self.ldflags.iter().any(|f| f == "-static")
    }

    fn musl(arch: Arch, tc: &Toolchain, prefix: &Path, libs: Vec<String>) -> Result<Self> {
        let hint = "the musl build image has them: build with `--backend docker --libc musl`";
        // amd64's musl-gcc is a wrapper around the host's gcc with musl's specs; another
        // architecture's is that architecture's cross gcc with its musl specs.
        let (cc, mut cflags) = if arch == Arch::Amd64 {
            let cc = find("musl-gcc").with_context(|| {
                format!("musl-gcc is not installed (Debian package musl-tools); {hint}")
            })?;
            (cc, vec![])
        } else {
            let cc = c_compiler(arch, tc)?;
            let specs = Path::new("/usr/lib")
                .join(musl_triple(arch))
                .join("musl-gcc.specs");
            if !specs.is_file() {
                bail!(
                    "{} is missing (Debian package musl-dev:{arch}); {hint}",
                    specs.display()
                );
            }
            (cc, vec![format!("-specs={}", specs.display())])
        };
        let mut h = Sha256::new();
        let cc_version = version_line(&cc)?;
        h.update(&cc_version);
        if arch != Arch::Amd64 {
            h.update(arch.as_str());
        }
        for lib in ["libbpf.a", "libelf.a", "libz.a"] {
            let p = prefix.join("lib").join(lib);
            let bytes = std::fs::read(&p).with_context(|| {
                format!(
                    "{} is missing: the static musl loader needs libbpf, libelf and zlib built with musl's compiler under {}; {hint}",
                    p.display(),
                    prefix.display()
                )
            })?;
            h.update(lib);
            h.update(Sha256::digest(&bytes));
        }
        // `<source package> <version>` lines written by docker/musl.Dockerfile.
        let mut versions = std::collections::BTreeMap::new();
        for line in std::fs::read_to_string(prefix.join("versions"))
            .unwrap_or_default()
            .lines()
        {
            if let Some((name, version)) = line.split_once(' ') {
                versions.insert(format!("musl-{name}"), version.to_string());
            }
        }
        versions.insert("musl-gcc".into(), cc_version);
        let mut ldflags = vec![
            "-static".to_string(),
            format!("-L{}", prefix.join("lib").display()),
        ];
        ldflags.extend(libs);
        cflags.push(format!("-I{}", prefix.join("include").display()));
        Ok(Self {
            libc: Libc::Musl,
            arch,
            cc,
            cflags,
            ldflags,
            fingerprint: hex::encode(h.finalize()),
            versions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tools' remembered answers hold only for the binaries that gave them.
    #[test]
    fn remembered_probes_follow_the_binaries() {
        let d = tempfile::tempdir().unwrap();
        let tool = d.path().join("clang");
        std::fs::write(&tool, b"one").unwrap();
        let link = d.path().join("cc");
        std::os::unix::fs::symlink(&tool, &link).unwrap();
        let key = probe_key(&[&link]).unwrap();
        assert_eq!(probe_key(&[&tool]), Some(key.clone()), "symlinks resolved");
        let file = d.path().join("probes.json");
        let outputs = vec![b"clang version 14\n".to_vec(), Vec::new()];
        write_probes(&file, &key, &outputs);
        assert_eq!(read_probes(&file, &key, 2), Some(outputs));
        assert_eq!(read_probes(&file, &key, 3), None, "another set of probes");
        std::fs::write(&tool, b"upgraded").unwrap();
        let upgraded = probe_key(&[&link]).unwrap();
        assert_ne!(upgraded, key);
        assert_eq!(read_probes(&file, &upgraded, 2), None);
        assert_eq!(probe_key(&[&d.path().join("gone")]), None);
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(
            read_probes(&file, &key, 2),
            None,
            "a corrupt cache is asked past"
        );
    }
}
