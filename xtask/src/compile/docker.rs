//! `cargo xtask build --backend docker`: each cell in a container of its libc's image.
//!
//! The container runs this very xtask (`build-cell`, a typed request for one cell) with the checkout
//! and the kernel cache mounted read-only at the paths they have on the host, so that
//! `-ffile-prefix-map` gives the bytes the host backend gives; outputs go to a per-cell mount,
//! the container has no network and runs as the invoking uid:gid, and it is removed whether the
//! build succeeded or not. A cell's outputs replace its previous artifacts only on success.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bollard::container::{CreateContainerOptions, LogOutput, LogsOptions, WaitContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use kc_common::{CellId, Libc};

use super::container::{isolated_config, remove, remove_orphans};
use super::request::{self, CellRequest};
use super::{cell, BuildOptions, Project};
use crate::{atomic, image, kernels, tarball};

/// Containers that are running, so that Ctrl-C can remove them.
static RUNNING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// One cell to build in a container, and whether its objects keep DWARF.
#[derive(Debug, Clone)]
pub struct DockerCell {
    pub id: CellId,
    pub debug: bool,
}

/// A copy of this xtask binary for containers to run: a `cargo build` that replaces the
/// binary while cells run must not pull it from under them. Kept (by size and mtime) for the
/// next run; older copies are removed.
pub(crate) fn staged_xtask(project: &Project) -> Result<PathBuf> {
    let exe = crate::paths::xtask_exe()?;
    let name = format!("xtask.{}", &xtask_fingerprint()?[..16]);
    let dir = project.work.join("docker");
    let staged = dir.join(&name);
    if staged.is_file() {
        return Ok(staged);
    }
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir(&dir)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("xtask.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    atomic::copy(&exe, &staged)?;
    Ok(staged)
}

/// Runs one cell; returns its last log lines on failure.
pub(crate) async fn run_cell(
    d: &Docker,
    tag: &str,
    project: &Project,
    cell: &DockerCell,
    exe: &Path,
    epoch: u64,
) -> Result<()> {
    let name = cell.id.to_string();
    let out = project.work.join("docker").join(&name);
    std::fs::create_dir_all(&out)?;
    let root = project.root.display().to_string();
    let cache = project.kernel_cache.display().to_string();
    let binds = vec![
        format!("{root}:{root}:ro"),
        format!("{cache}:{cache}:ro"),
        format!("{}:/out", out.display()),
        format!("{}:/usr/local/bin/xtask:ro", exe.display()),
    ];
    // What the container builds and where, mounted with its outputs.
    let request = CellRequest {
        cell: cell.id,
        debug: cell.debug,
        project: Project {
            root: project.root.clone(),
            kernel_cache: project.kernel_cache.clone(),
            artifacts: "/out/artifacts".into(),
            work: "/out/work".into(),
        },
    };
    atomic::write(
        &out.join(request::FILE),
        &serde_json::to_vec_pretty(&request)?,
    )?;
    let cmd = vec![
        "/usr/local/bin/xtask".to_string(),
        "build-cell".into(),
        format!("/out/{}", request::FILE),
    ];
    let env = vec![format!("SOURCE_DATE_EPOCH={epoch}"), "HOME=/tmp".into()];
    let config = isolated_config(tag, cmd, env, binds, &root, &name);
    let created = d
        .create_container(
            Some(CreateContainerOptions {
                name: format!("kc-{name}-{}", std::process::id()),
                platform: None,
            }),
            config,
        )
        .await
        .with_context(|| format!("{name}: creating its container"))?;
    RUNNING
        .lock()
        .expect("running list")
        .push(created.id.clone());
    let result = async {
        d.start_container::<String>(&created.id, None)
            .await
            .with_context(|| format!("{name}: starting its container"))?;
        let mut logs = d.logs(
            &created.id,
            Some(LogsOptions::<String> {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut tail: Vec<String> = Vec::new();
        while let Some(chunk) = logs.next().await {
            let text = match chunk {
                Ok(
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message },
                ) => String::from_utf8_lossy(&message).into_owned(),
                Ok(_) => continue,
                Err(_) => break,
            };
            for line in text.lines() {
                eprintln!("[{name}] {line}");
                tail.push(line.to_string());
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        }
        let mut wait = d.wait_container(&created.id, None::<WaitContainerOptions<String>>);
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(
                    anyhow::Error::new(e).context(format!("{name}: waiting for its container"))
                )
            }
            None => -1,
        };
        if code != 0 {
            bail!(
                "cell {name} failed (exit {code}); its last log lines:\n{}",
                tail.join("\n")
            );
        }
        Ok(())
    }
    .await;
    // Removed whatever happened above.
    remove(d, &created.id).await;
    result?;
    publish_cell(&out.join("artifacts"), &project.artifacts, cell.id)
}

/// Moves a cell's outputs into artifacts/, replacing the previous ones only now that they exist.
fn publish_cell(from: &Path, artifacts: &Path, id: CellId) -> Result<()> {
    let dir = cell::dir_in(from, id);
    let tar = from.join(id.tarball());
    if !dir.is_dir() || !tar.is_file() {
        bail!(
            "cell {id}: the container finished but left no outputs in {}",
            from.display()
        );
    }
    let entries: Vec<tarball::Entry> = cell::read_dir(&dir)?
        .into_iter()
        .map(|(name, bytes)| cell::entry(name, bytes))
        .collect();
    cell::write_dir(&cell::dir_in(artifacts, id), &entries)?;
    atomic::copy(&tar, &artifacts.join(id.tarball()))
}

/// The cells the options ask for.
pub fn cells(o: &BuildOptions, libc: Libc) -> Result<Vec<DockerCell>> {
    let mut ids: Vec<CellId> = o
        .bucket_list()?
        .into_iter()
        .map(|b| CellId::bucket(b, libc).on(o.arch))
        .collect();
    if o.wants_core() {
        ids.push(CellId::core(libc).on(o.arch));
    }
    Ok(ids
        .into_iter()
        .map(|id| DockerCell { id, debug: o.debug })
        .collect())
}

/// What a cell's container would read, besides its request: the sources, the kernel pins,
/// the image and this very xtask. Equal keys mean the container would rebuild nothing.
fn inputs_key(project: &Project) -> Result<Vec<u8>> {
    let mut h = Sha256::new();
    for f in ["collectors.toml", "kernels.toml", "kernels.lock"] {
        h.update(f);
        h.update(std::fs::read(project.root.join(f)).unwrap_or_default());
    }
    for d in ["includes", "kernel", "co-re", "kernel-patches"] {
        h.update(d);
        if project.root.join(d).is_dir() {
            super::plan::hash_tree(&mut h, &project.root.join(d))?;
        }
    }
    h.update(xtask_fingerprint()?);
    Ok(h.finalize().to_vec())
}

/// This xtask binary's size and mtime, hashed: which build of it the containers run.
fn xtask_fingerprint() -> Result<String> {
    let exe = crate::paths::xtask_exe()?;
    let meta = std::fs::metadata(&exe).with_context(|| format!("reading {}", exe.display()))?;
    let mut h = Sha256::new();
    h.update(meta.len().to_le_bytes());
    h.update(format!("{:?}", meta.modified()?));
    Ok(hex::encode(h.finalize()))
}

/// The stamp a successful cell leaves: its inputs' key and its tarball's hash.
fn stamp_path(project: &Project, cell: &DockerCell) -> PathBuf {
    project
        .work
        .join("docker")
        .join(format!("{}.stamp", cell.id))
}

fn stamp_text(key: &str, tar: &Path) -> Option<String> {
    let bytes = std::fs::read(tar).ok()?;
    Some(format!("{key} {}\n", hex::encode(Sha256::digest(bytes))))
}

/// What a docker build did: cells built in containers, and cells skipped as unchanged.
#[derive(Debug, Default, serde::Serialize)]
pub struct DockerReport {
    pub built: Vec<String>,
    pub up_to_date: Vec<String>,
    pub tarballs: Vec<PathBuf>,
}

/// Builds every requested cell in containers, `--jobs` at a time; all failures are reported.
/// A cell whose inputs are unchanged and whose tarball is still the one it built is skipped
/// without starting a container.
pub fn run(o: &BuildOptions, libcs: &[Libc]) -> Result<DockerReport> {
    run_project(&Project::checkout(), o, libcs, None)
}

/// `images` overrides the image of a libc (the benchmark's freshly built ones); by default
/// each libc's image is made or reused by `image::ensure_image`.
pub(crate) fn run_project(
    project: &Project,
    o: &BuildOptions,
    libcs: &[Libc],
    images: Option<&std::collections::BTreeMap<Libc, String>>,
) -> Result<DockerReport> {
    let epoch = tarball::source_date_epoch()?;
    let planned: Vec<(Libc, Vec<DockerCell>)> = libcs
        .iter()
        .map(|libc| Ok((*libc, cells(o, *libc)?)))
        .collect::<Result<_>>()?;
    // Containers have no network: the header trees are fetched here first.
    let mut buckets: Vec<_> = planned
        .iter()
        .flat_map(|(_, cells)| cells.iter().filter_map(|c| c.id.bucket_of()))
        .collect();
    buckets.sort();
    buckets.dedup();
    if !buckets.is_empty() {
        let (_, lock) = kernels::load_checked_lock()?;
        let mut fetcher = kernels::fetch::Fetcher::new(project.kernel_cache.clone());
        for k in kernels::select_arch(&lock, o.arch, &buckets, false)? {
            fetcher.headers(k)?;
        }
    }
    let sources = inputs_key(project)?;
    image::runtime()?.block_on(async {
        let d = image::docker().await?;
        let orphans = remove_orphans(&d).await?;
        if orphans > 0 {
            eprintln!("build: removed {orphans} containers left by a killed build");
        }
        let mut todo = Vec::new();
        let mut report = DockerReport::default();
        for (libc, cells) in planned {
            let tag = match images.and_then(|m| m.get(&libc)) {
                Some(tag) => tag.clone(),
                None => image::ensure_image(&d, libc).await?,
            };
            let image_id = d.inspect_image(&tag).await?.id.unwrap_or_default();
            for cell in cells {
                let mut h = Sha256::new();
                h.update(&sources);
                h.update(&image_id);
                h.update(cell.id.to_string());
                h.update([u8::from(cell.debug)]);
                h.update(epoch.to_le_bytes());
                let key = hex::encode(h.finalize());
                let tar = project.artifacts.join(cell.id.tarball());
                let stamp = stamp_path(project, &cell);
                let unchanged = std::fs::read_to_string(&stamp).ok().is_some_and(|s| {
                    Some(s) == stamp_text(&key, &tar)
                        && cell::dir_in(&project.artifacts, cell.id).is_dir()
                });
                if unchanged {
                    eprintln!("[{}] up to date", cell.id);
                    report.up_to_date.push(cell.id.to_string());
                    report.tarballs.push(tar);
                } else {
                    todo.push((cell, tag.clone(), key));
                }
            }
        }
        let jobs = o.jobs.unwrap_or(2).max(1);
        let exe = if todo.is_empty() {
            Ok(PathBuf::new())
        } else {
            staged_xtask(project)
        };
        let exe = &exe;
        let all = futures_util::stream::iter(todo.iter())
            .map(|(c, tag, key)| {
                let d = &d;
                async move {
                    let r = match &exe {
                        Ok(exe) => run_cell(d, tag, project, c, exe, epoch).await,
                        Err(e) => Err(anyhow::anyhow!("staging the xtask binary: {e:#}")),
                    };
                    let r = r.and_then(|()| {
                        let tar = project.artifacts.join(c.id.tarball());
                        let text = stamp_text(key, &tar).context("the cell's tarball vanished")?;
                        atomic::write(&stamp_path(project, c), text.as_bytes())?;
                        Ok(())
                    });
                    (c.id, r)
                }
            })
            .buffer_unordered(jobs)
            .collect::<Vec<(CellId, Result<()>)>>();
        let results = tokio::select! {
            r = all => r,
            _ = tokio::signal::ctrl_c() => {
                // Interrupted: no container outlives us; finished cells are already published.
                let ids: Vec<String> = RUNNING.lock().expect("running list").clone();
                for id in ids {
                    remove(&d, &id).await;
                }
                bail!("interrupted: the running cells' containers were removed; previous artifacts are intact");
            }
        };
        let mut failures = Vec::new();
        for (id, r) in results {
            match r {
                Ok(()) => {
                    report.tarballs.push(project.artifacts.join(id.tarball()));
                    report.built.push(id.to_string());
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        if !failures.is_empty() {
            bail!("{} cells failed (the others' outputs and the previous artifacts are intact):\n\n{}", failures.len(), failures.join("\n\n"));
        }
        report.tarballs.sort();
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::LibcChoice;
    use crate::compile::tests as build_tests;
    use crate::compile::Backend;
    use crate::process;

    fn core_glibc() -> BuildOptions {
        BuildOptions {
            backend: Some(Backend::Docker),
            libc: Some(LibcChoice::Glibc),
            ..build_tests::core_only()
        }
    }

    /// A collector that fails to compile inside the container: the error names the cell and
    /// carries clang's message from the container's log; the previous artifacts stay.
    #[test]
    fn a_failing_cell_names_itself_and_keeps_previous_artifacts_needs_docker() {
        if !image::daemon_answers() {
            kc_common::skip::skip(
                "a_failing_cell_names_itself_and_keeps_previous_artifacts_needs_docker",
                "no Docker daemon answers on this machine",
            );
            return;
        }
        // The containers run the xtask binary, not this test harness: make it current.
        let sh = process::shell();
        let cargo = env!("CARGO");
        process::output(xshell::cmd!(sh, "{cargo} build --quiet --package xtask")).unwrap();
        let (_d, p) = build_tests::scratch_project(&["process", "mount"]);
        let first = run_project(&p, &core_glibc(), &[Libc::Glibc], None).unwrap();
        assert_eq!(first.built, ["kc-ebpf-co-re-glibc"]);
        let tar = p.artifacts.join("kc-ebpf-co-re-glibc.tar");
        let before = std::fs::read(&tar).unwrap();
        // Unchanged: no container at all.
        let again = run_project(&p, &core_glibc(), &[Libc::Glibc], None).unwrap();
        assert!(again.built.is_empty() && again.up_to_date == ["kc-ebpf-co-re-glibc"]);

        build_tests::break_mount_collector(&p.root);
        let e = format!(
            "{:#}",
            run_project(&p, &core_glibc(), &[Libc::Glibc], None).unwrap_err()
        );
        assert!(
            e.contains("cell kc-ebpf-co-re-glibc failed") && e.contains("undeclared_thing"),
            "{e}"
        );
        build_tests::assert_core_cell_kept(&p, &before);
    }
}
