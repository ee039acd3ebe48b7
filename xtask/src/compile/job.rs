//! One job: compile into a staged directory beside the job's cache entry, then publish it
//! under its key. A cache entry is complete or absent.

use std::fs;
use std::path::{Path, PathBuf};

use xshell::cmd;

use super::flags;
use super::flags::Inputs;
use super::loader;
use super::plan::Project;
use super::plan::{Job, JobKind};
use super::toolchain::Toolchain;
use crate::atomic::StagedDir;
use crate::process;

/// Everything a job needs besides itself.
pub struct Env<'a> {
    pub project: &'a Project,
    pub tc: &'a Toolchain,
    pub inputs: &'a Inputs,
    pub debug: bool,
}

/// What a job did.
pub enum Outcome {
    Cached,
    Built,
    /// A legacy collector compiled to bitcode: the pool lowers these to BPF objects together
    /// (`bpf-codegen`), strips them unless `--debug`, and publishes them.
    Bitcode(Bitcode),
}

/// A legacy job's staged bitcode and the object it is to be lowered to, beside it.
pub struct Bitcode {
    staged: StagedDir,
    bitcode: PathBuf,
    object: PathBuf,
}

impl Bitcode {
    /// The (bitcode, object) pair `bpf-codegen` takes.
    pub fn pair(&self) -> (PathBuf, PathBuf) {
        (self.bitcode.clone(), self.object.clone())
    }

    pub fn bitcode(&self) -> &Path {
        &self.bitcode
    }

    pub fn object(&self) -> &Path {
        &self.object
    }

    /// Publishes the object (without the bitcode) under the job's key.
    pub fn publish(self) -> anyhow::Result<()> {
        let _ = fs::remove_file(&self.bitcode);
        self.staged.publish().map(|_| ())
    }
}

/// Runs a tool in the checkout: the working directory ends up in the debug info (and decides
/// whether llc finds the source lines it copies into BTF), whoever calls from where.
fn run_tool(env: &Env, program: &Path, args: &[String]) -> Result<Vec<u8>, String> {
    let sh = process::shell_in(&env.inputs.project);
    process::output(cmd!(sh, "{program} {args...}"))
        .map(|o| o.stdout)
        .map_err(|e| e.to_string())
}

/// Adds to clang's "file not found" for a header under a directory the header trees leave
/// out where to change that.
pub fn with_skipped_dir_hint(clang_error: &str) -> String {
    let skipped = clang_error.lines().find_map(|l| {
        let (_, rest) = l.split_once("fatal error: '")?;
        let (header, tail) = rest.split_once('\'')?;
        let dir = header.split('/').next()?;
        (tail.contains("file not found")
            && crate::kernels::fetch::SKIPPED_INCLUDE_DIRS.contains(&dir))
        .then(|| dir.to_string())
    });
    match skipped {
        Some(dir) => format!(
            "{clang_error}\n(header trees leave out include/{dir}/: take it out of SKIPPED_INCLUDE_DIRS in xtask/src/kernels/fetch.rs)"
        ),
        None => clang_error.to_string(),
    }
}

pub fn run_job(env: &Env, job: &Job) -> Result<Outcome, String> {
    let done = env.project.cache_path(&job.key);
    if job.outputs.iter().all(|o| done.join(o).is_file()) {
        return Ok(Outcome::Cached);
    }
    let staged = StagedDir::beside(&done).map_err(|e| format!("{e:#}"))?;
    let t = staged.path();
    let root = &env.inputs.project;
    let tc = env.tc;
    match &job.kind {
        JobKind::Pch { tree, header } => {
            let h = root.join("includes").join(format!("{header}.h"));
            let args = flags::legacy_clang_args(
                env.inputs,
                tree,
                flags::LegacyOutput::Pch,
                &h,
                &t.join(&job.outputs[0]),
            );
            run_tool(env, &tc.clang, &args)?;
        }
        JobKind::Legacy {
            tree,
            return_mode,
            pch,
        } => {
            let src = root.join("kernel").join(format!("{}_kern.c", job.what));
            let bitcode = t.join("out.bc");
            let what = flags::LegacyOutput::Ir {
                return_mode: *return_mode,
                pch: pch.as_deref(),
            };
            let args = flags::legacy_clang_args(env.inputs, tree, what, &src, &bitcode);
            run_tool(env, &tc.clang, &args).map_err(|e| with_skipped_dir_hint(&e))?;
            let object = t.join(&job.outputs[0]);
            if pch.is_none() {
                // Upstream's way (the baseline of `bench build`): llc per object, as its
                // Makefile runs it. Ours is lowered with the other jobs' bitcode.
                run_tool(env, &tc.llc, &flags::llc_args(&bitcode, &object))?;
            }
            return Ok(Outcome::Bitcode(Bitcode {
                staged,
                bitcode,
                object,
            }));
        }
        JobKind::Core { arch } => {
            let src = root.join("co-re").join(format!("{}.bpf.c", job.what));
            let full = t.join("full.o");
            run_tool(
                env,
                &tc.clang,
                &flags::core_clang_args(env.inputs, *arch, &src, &full),
            )?;
            let obj = t.join(&job.outputs[0]);
            if env.debug {
                fs::copy(&full, &obj).map_err(|e| e.to_string())?;
            } else {
                let args = [
                    "-g".into(),
                    full.display().to_string(),
                    "-o".into(),
                    obj.display().to_string(),
                ];
                run_tool(env, &tc.llvm_strip, &args)?;
            }
            let _ = fs::remove_file(&full);
            let skel_args = [
                "gen".into(),
                "skeleton".into(),
                obj.display().to_string(),
                "name".into(),
                format!("{}_bpf", job.what),
            ];
            let skeleton = run_tool(env, &tc.bpftool, &skel_args)?;
            fs::write(t.join(&job.outputs[1]), skeleton).map_err(|e| e.to_string())?;
        }
        JobKind::Loader { skeletons, link } => {
            let out = t.join("kc-loader");
            loader::compile(root, link, skeletons, t, &out, !env.debug)
                .map_err(|e| format!("{e:#}"))?;
        }
    }
    staged.publish().map_err(|e| format!("{e:#}"))?;
    Ok(Outcome::Built)
}
