//! `cargo xtask bench docker`: the full matrix (every bucket x both libcs) through our two
//! images (kernels mounted) vs upstream's model, one image per (kernel, libc) with the kernel
//! baked in, each built from scratch. Both sides start from the same bootstrapped base, as a
//! registry pull would give them, and compile with the same in-container build.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use bollard::image::RemoveImageOptions;
use bollard::Docker;
use clap::Args;
use kc_common::Bucket;
use serde::Serialize;

use crate::cli::LibcChoice;
use crate::compile::{docker, Backend, BuildOptions, Project};
use crate::{image, kernels, paths, tarball};
use kc_common::Libc;

#[derive(Debug, Args)]
pub struct DockerBench {
    /// Buckets of the matrix (repeatable; default: every bucket)
    #[arg(long = "bucket", value_name = "SERIES")]
    pub buckets: Vec<Bucket>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Side {
    cold_s: f64,
    warm_s: f64,
    images_built: usize,
    /// Layers above the shared base, plus (ours) the unpacked header trees kept on the host.
    disk_bytes: u64,
    /// Containers the warm run started.
    warm_containers: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    buckets: Vec<String>,
    cells: usize,
    ours: Side,
    upstream: Side,
    speedup_cold: f64,
    speedup_warm: f64,
}

fn dockerfile(libc: Libc) -> Result<Vec<u8>> {
    let p = paths::project_root().join(format!("docker/{libc}.Dockerfile"));
    std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
}

/// Bytes of an image above the base (what building it added to the disk).
async fn own_size(d: &Docker, tag: &str, base_size: i64) -> Result<u64> {
    let size = d.inspect_image(tag).await?.size.unwrap_or(0);
    Ok((size - base_size).max(0) as u64)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

async fn remove_images(d: &Docker, tags: &[String]) {
    for t in tags {
        let _ = d
            .remove_image(
                t,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await;
    }
}

pub fn run(o: DockerBench) -> Result<()> {
    let (_, lock) = kernels::load_checked_lock()?;
    let buckets = if o.buckets.is_empty() {
        lock.buckets()
    } else {
        o.buckets.clone()
    };
    let rt = image::runtime()?;
    let d = rt.block_on(image::docker())?;
    let base = rt.block_on(image::ensure_base(&d))?;
    let base_size = rt.block_on(d.inspect_image(&base))?.size.unwrap_or(0);
    let scratch = tempfile::Builder::new()
        .prefix("kc-bench-docker-")
        .tempdir_in(paths::project_root().join("target"))?;
    let root = paths::project_root();
    let project = |side: &str, cache: &Path| Project {
        root: root.clone(),
        artifacts: scratch.path().join(side).join("artifacts"),
        work: scratch.path().join(side).join("work"),
        kernel_cache: cache.to_path_buf(),
    };
    let opts = BuildOptions {
        buckets: buckets.clone(),
        jobs: Some(2),
        ..BuildOptions::everything(Backend::Docker, Some(LibcChoice::All))
    };
    let mut tags = Vec::new();

    // Ours: two images from scratch, a fresh kernel cache (download + unpack on the host),
    // every cell; then the same again with nothing changed.
    let ours_cache = scratch.path().join("ours/cache");
    let ours_project = project("ours", &ours_cache);
    let mut ours = Side::default();
    let t = Instant::now();
    let mut images = BTreeMap::new();
    for libc in Libc::ALL {
        let tag = format!("kc-bench-ours-{libc}:latest");
        let context = image::build_context(&dockerfile(libc)?, |_| Ok(()))?;
        rt.block_on(image::build_image(
            &d,
            libc.as_str(),
            &tag,
            &base,
            context,
            true,
        ))?;
        images.insert(libc, tag.clone());
        tags.push(tag);
        ours.images_built += 1;
    }
    let with_core = BuildOptions {
        core: true,
        ..opts.clone()
    };
    let first = docker::run_project(&ours_project, &with_core, &Libc::ALL, Some(&images))?;
    ours.cold_s = t.elapsed().as_secs_f64();
    let cells = first.built.len();
    let t = Instant::now();
    let warm = docker::run_project(&ours_project, &with_core, &Libc::ALL, Some(&images))?;
    ours.warm_s = t.elapsed().as_secs_f64();
    ours.warm_containers = warm.built.len();
    for tag in images.values() {
        ours.disk_bytes += rt.block_on(own_size(&d, tag, base_size))?;
    }
    ours.disk_bytes += dir_size(&ours_cache);

    // Upstream's model: per (bucket, libc) an image that bakes the kernel in, and per libc a
    // generic one for CO-RE; each built from scratch, then its cells run in it. Warm: every
    // image build again (all steps cached) and every cell's container again.
    let up_project = project("upstream", &ours_cache);
    let epoch = tarball::source_date_epoch()?;
    let mut upstream = Side::default();
    let mut plan: Vec<(String, Vec<u8>, docker::DockerCell)> = Vec::new();
    let mut fetcher = kernels::fetch::Fetcher::new(ours_cache.clone());
    for libc in Libc::ALL {
        let core_cell = docker::cells(
            &BuildOptions {
                core: true,
                buckets: vec![],
                ..opts.clone()
            },
            libc,
        )?;
        let generic = format!("kc-bench-upstream-{libc}:co-re");
        let context = image::build_context(&dockerfile(libc)?, |_| Ok(()))?;
        plan.push((generic, context, core_cell[0].clone()));
        for k in kernels::select(&lock, &buckets, false)? {
            let tree = fetcher.headers(k)?;
            let tree_root = tree
                .flavour_dir
                .ancestors()
                .nth(3)
                .context("a header tree sits in <root>/usr/src/<dir>")?
                .to_path_buf();
            let mut df = dockerfile(libc)?;
            df.extend_from_slice(b"COPY kernel/ /kernel/\n");
            let context = image::build_context(&df, |b| {
                b.append_dir_all("kernel", &tree_root)?;
                Ok(())
            })?;
            let cell = docker::cells(
                &BuildOptions {
                    buckets: vec![k.series],
                    ..opts.clone()
                },
                libc,
            )?;
            plan.push((
                format!("kc-bench-upstream-{libc}:{}", k.series),
                context,
                cell[0].clone(),
            ));
        }
    }
    for pass in ["cold", "warm"] {
        let t = Instant::now();
        for (tag, context, cell) in &plan {
            rt.block_on(image::build_image(
                &d,
                &cell.id.to_string(),
                tag,
                &base,
                context.clone(),
                pass == "cold",
            ))?;
            let exe = docker::staged_xtask(&up_project)?;
            rt.block_on(docker::run_cell(&d, tag, &up_project, cell, &exe, epoch))?;
            if pass == "cold" {
                upstream.images_built += 1;
                tags.push(tag.clone());
                upstream.disk_bytes += rt.block_on(own_size(&d, tag, base_size))?;
            } else {
                upstream.warm_containers += 1;
            }
        }
        let s = t.elapsed().as_secs_f64();
        if pass == "cold" {
            upstream.cold_s = s;
        } else {
            upstream.warm_s = s;
        }
    }
    rt.block_on(remove_images(&d, &tags));

    let report = Report {
        buckets: buckets.iter().map(|b| b.to_string()).collect(),
        cells,
        speedup_cold: upstream.cold_s / ours.cold_s,
        speedup_warm: upstream.warm_s / ours.warm_s,
        ours,
        upstream,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "bench docker: {} cells (buckets {} x glibc, musl, plus CO-RE per libc)",
        report.cells,
        report.buckets.join(" ")
    );
    let row = |label: &str, ours: String, upstream: String| {
        println!("  {label:<28}{ours:>12} {upstream:>12}")
    };
    row("", "ours".into(), "upstream".into());
    let (us, up) = (&report.ours, &report.upstream);
    row(
        "cold wall time (s)",
        format!("{:.1}", us.cold_s),
        format!("{:.1}", up.cold_s),
    );
    row(
        "warm wall time (s)",
        format!("{:.2}", us.warm_s),
        format!("{:.2}", up.warm_s),
    );
    row(
        "images built",
        us.images_built.to_string(),
        up.images_built.to_string(),
    );
    row(
        "containers in the warm run",
        us.warm_containers.to_string(),
        up.warm_containers.to_string(),
    );
    row(
        "disk used (MiB)",
        format!("{:.0}", mib(us.disk_bytes)),
        format!("{:.0}", mib(up.disk_bytes)),
    );
    println!(
        "  ours is {:.1}x faster cold, {:.0}x faster warm",
        report.speedup_cold, report.speedup_warm
    );
    Ok(())
}
