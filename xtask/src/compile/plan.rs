//! What a build compiles: the project's places, the jobs with their cache keys, and the
//! dependencies between them (a bucket's objects wait for its precompiled headers).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kc_common::{names, Arch, Bucket, CellKind};
use sha2::{Digest, Sha256};

use super::flags::{self, Inputs};
use super::toolchain::{LoaderToolchain, Toolchain};
use crate::collectors::Collector;
use crate::kernels::fetch::HeaderTree;
use crate::paths;

/// Bump when the job layout changes, so old cache entries are not reused.
const JOB_FORMAT: &str = "kc-build-v2";

/// Where a build reads its sources and writes its outputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// The checkout: `collectors.toml`, `kernel/`, `co-re/`, `includes/`.
    pub root: PathBuf,
    /// Cells are written here.
    pub artifacts: PathBuf,
    /// The compile cache and scratch space.
    pub work: PathBuf,
    /// The kernel download cache (header trees).
    pub kernel_cache: PathBuf,
}

impl Project {
    /// This checkout, building into its own `artifacts/` with the compile cache of
    /// [`paths::build_work_dir`] (a docker cell's container is told its paths by its
    /// [`super::request::CellRequest`] instead).
    pub fn checkout() -> Self {
        let root = paths::project_root();
        Self {
            artifacts: root.join("artifacts"),
            work: paths::build_work_dir(),
            kernel_cache: paths::cache_dir(),
            root,
        }
    }

    /// The compiler's view of the inputs. libbpf's headers are copied to a directory that
    /// holds only `bpf/`, so that the rest of /usr/include stays out of BPF compiles.
    pub fn inputs(&self, tc: &Toolchain) -> Result<Inputs> {
        let libbpf_parent = self.work.join("libbpf-include");
        fs::create_dir_all(libbpf_parent.join("bpf"))?;
        for e in fs::read_dir(&tc.libbpf_include)? {
            let p = e?.path();
            fs::copy(
                &p,
                libbpf_parent
                    .join("bpf")
                    .join(p.file_name().unwrap_or_default()),
            )?;
        }
        Ok(Inputs {
            project: self.root.clone(),
            libbpf_parent,
            resource_include: tc.resource_include.clone(),
        })
    }

    /// Where a job's outputs are cached.
    pub fn cache_path(&self, key: &str) -> PathBuf {
        self.work.join("objects").join(key)
    }
}

/// Hashes every file under `dir`: relative names and contents, in sorted order.
pub(crate) fn hash_tree(h: &mut Sha256, dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .as_os_str()
                .as_encoded_bytes(),
        );
        h.update([0]);
        h.update(fs::read(&f)?);
    }
    Ok(())
}

/// A job's cache key: every part, length-prefixed, under the job format.
pub fn key_of(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(JOB_FORMAT);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

pub enum JobKind {
    /// The bucket's precompiled kernel headers (`includes/<header>.h`), shared by its
    /// collectors' compiles.
    Pch {
        tree: HeaderTree,
        header: &'static str,
    },
    Legacy {
        tree: HeaderTree,
        return_mode: bool,
        /// None: the compile parses the kernel headers itself (upstream's way, for `bench`).
        pch: Option<PathBuf>,
    },
    Core {
        arch: Arch,
    },
    Loader {
        skeletons: Vec<(String, PathBuf)>,
        link: LoaderToolchain,
    },
}

pub struct Job {
    pub cell: CellKind,
    /// Collector name, or `kc-loader`.
    pub what: String,
    pub kind: JobKind,
    /// Names of the files the job produces.
    pub outputs: Vec<String>,
    pub key: String,
    /// Keys of the jobs whose outputs this one reads (it starts once they succeeded).
    pub deps: Vec<String>,
}

/// What every job's key shares: the `includes/` tree and the debug switch.
pub struct Common<'a> {
    pub project: &'a Project,
    pub inputs: &'a Inputs,
    pub tc: &'a Toolchain,
    pub includes_hash: String,
    pub debug: bool,
}

impl Common<'_> {
    /// A compile's arguments as a key part, the checkout's path left out: the prefix maps
    /// (`flags::prefix_maps`) keep it out of the outputs, so clean clones at other paths
    /// share a compile cache.
    fn args_key(&self, args: &[String]) -> String {
        args.join(" ")
            .replace(&self.project.root.display().to_string(), "<checkout>")
    }

    fn debug_part(&self) -> &'static [u8] {
        if self.debug {
            b"debug"
        } else {
            b"release"
        }
    }
}

/// The hash of `includes/`, which every compile reads.
pub fn includes_hash(root: &Path) -> Result<String> {
    let mut h = Sha256::new();
    hash_tree(&mut h, &root.join("includes"))?;
    Ok(hex::encode(h.finalize()))
}

/// The layers of precompiled kernel headers, each `includes/<name>.h` to `<name>.pch`: every
/// collector gets the base; one whose source includes a higher layer's header (the socket
/// collector: `net/sock.h` alone costs as much as the rest) gets that layer, so the others
/// load a smaller PCH. The net layer is precompiled on its own, not chained on the base, so
/// that both precompile at once on a cold build instead of one after the other.
pub const PCH_BASE: &str = "kc_legacy_kernel";
pub const PCH_NET: &str = "kc_legacy_net";

/// Whether a bucket's compiles load precompiled kernel headers: ours always do; `bench
/// build` also compiles each object parsing the headers itself, as upstream's Makefile does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precompiled {
    Layers,
    None,
}

/// The PCH layer a legacy source asks for through its includes.
pub fn pch_layer(src: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(src);
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("#include") && l.contains("\"kc_legacy_net.h\""))
    {
        PCH_NET
    } else {
        PCH_BASE
    }
}

/// The jobs of one bucket: its precompiled kernel headers (the base layer, and the net layer
/// when a collector needs it), then the `p` and `r` objects of every collector that builds for
/// it, each depending on its layer.
pub fn legacy_jobs(
    c: &Common,
    tree: &HeaderTree,
    bucket: Bucket,
    collectors: &[Collector],
    precompiled: Precompiled,
) -> Result<(Vec<Job>, Vec<Job>)> {
    let tree_id = tree.flavour_dir.display().to_string(); // holds the tree's content key
    let mut sources = Vec::new();
    for col in collectors.iter().filter(|col| col.builds_for(bucket)) {
        let src = fs::read(
            c.inputs
                .project
                .join("kernel")
                .join(format!("{}_kern.c", col.name)),
        )?;
        sources.push((col, pch_layer(&src), src));
    }
    let mut pchs: Vec<Job> = Vec::new();
    for layer in [PCH_BASE, PCH_NET] {
        if precompiled == Precompiled::None
            || layer != PCH_BASE && !sources.iter().any(|(_, l, _)| *l == layer)
        {
            continue;
        }
        let args = c.args_key(&flags::legacy_clang_args(
            c.inputs,
            tree,
            flags::LegacyOutput::Pch,
            Path::new("h"),
            Path::new("pch"),
        ));
        let key = key_of(&[
            b"pch",
            layer.as_bytes(),
            args.as_bytes(),
            c.includes_hash.as_bytes(),
            tree_id.as_bytes(),
            c.tc.fingerprint.as_bytes(),
        ]);
        pchs.push(Job {
            cell: CellKind::Bucket(bucket),
            what: format!("kernel headers {layer}.h"),
            kind: JobKind::Pch {
                tree: tree.clone(),
                header: layer,
            },
            outputs: vec![format!("{layer}.pch")],
            key,
            deps: vec![],
        });
    }
    let mut jobs = Vec::new();
    for (col, layer, src) in &sources {
        let pch = pchs.iter().find(|p| p.outputs[0] == format!("{layer}.pch"));
        let pch_key = pch.map_or("none".to_string(), |p| p.key.clone());
        let pch_path = pch.map(|p| c.project.cache_path(&p.key).join(&p.outputs[0]));
        for return_mode in [false, true] {
            let out = names::legacy_object(&col.name, bucket, return_mode);
            let what = flags::LegacyOutput::Ir {
                return_mode,
                pch: None,
            };
            let args = c.args_key(&flags::legacy_clang_args(
                c.inputs,
                tree,
                what,
                Path::new("src.c"),
                Path::new("out.bc"),
            ));
            let key = key_of(&[
                b"legacy",
                out.as_bytes(),
                args.as_bytes(),
                src,
                c.includes_hash.as_bytes(),
                pch_key.as_bytes(),
                c.tc.fingerprint.as_bytes(),
                c.debug_part(),
            ]);
            jobs.push(Job {
                cell: CellKind::Bucket(bucket),
                what: col.name.clone(),
                kind: JobKind::Legacy {
                    tree: tree.clone(),
                    return_mode,
                    pch: pch_path.clone(),
                },
                outputs: vec![out],
                key,
                deps: pch.map(|p| p.key.clone()).into_iter().collect(),
            });
        }
    }
    Ok((pchs, jobs))
}

/// One CO-RE compile (object and skeleton) per collector.
pub fn core_jobs(c: &Common, collectors: &[Collector], arch: Arch) -> Result<Vec<Job>> {
    let root = &c.project.root;
    let header = flags::vmlinux_header(arch);
    let vmlinux = fs::read(root.join(&header)).with_context(|| {
        format!(
            "{} is missing; run `cargo xtask vmlinux --arch {arch}`",
            header.display()
        )
    })?;
    let vmlinux_hash = hex::encode(Sha256::digest(&vmlinux));
    let args = c.args_key(&flags::core_clang_args(
        c.inputs,
        arch,
        Path::new("src.c"),
        Path::new("out.o"),
    ));
    let mut jobs = Vec::new();
    for col in collectors {
        let src = fs::read(root.join("co-re").join(format!("{}.bpf.c", col.name)))?;
        let key = key_of(&[
            b"core",
            col.name.as_bytes(),
            args.as_bytes(),
            &src,
            c.includes_hash.as_bytes(),
            vmlinux_hash.as_bytes(),
            c.tc.fingerprint.as_bytes(),
            c.debug_part(),
        ]);
        jobs.push(Job {
            cell: CellKind::CoRe,
            what: col.name.clone(),
            kind: JobKind::Core { arch },
            outputs: vec![names::core_object(&col.name), names::skeleton(&col.name)],
            key,
            deps: vec![],
        });
    }
    Ok(jobs)
}

/// The loader, which embeds every CO-RE object through its skeleton: built once the CO-RE
/// jobs succeeded, keyed by their skeletons.
pub fn loader_job(c: &Common, core: &[&Job], link: &LoaderToolchain) -> Result<Job> {
    let root = &c.project.root;
    let mut loader_sources = Sha256::new();
    hash_tree(&mut loader_sources, &root.join("co-re/loader"))?;
    let mut parts: Vec<Vec<u8>> = vec![
        b"loader".to_vec(),
        loader_sources.finalize().to_vec(),
        c.includes_hash.as_bytes().to_vec(),
        c.tc.fingerprint.as_bytes().to_vec(),
        link.libc.as_str().as_bytes().to_vec(),
        link.fingerprint.as_bytes().to_vec(),
        c.debug_part().to_vec(),
    ];
    let mut skeletons = Vec::new();
    for j in core {
        let skel = c.project.cache_path(&j.key).join(names::skeleton(&j.what));
        parts.push(fs::read(&skel)?);
        skeletons.push((j.what.clone(), skel));
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    Ok(Job {
        cell: CellKind::CoRe,
        what: "kc-loader".into(),
        kind: JobKind::Loader {
            skeletons,
            link: link.clone(),
        },
        outputs: vec!["kc-loader".into()],
        key: key_of(&refs),
        deps: vec![],
    })
}
