//! Our containers: isolated (no network, the invoking user, given mounts), labelled with
//! the process that owns them, removed when done, and removed by the next run when their
//! owner was killed.

use anyhow::{Context, Result};
use bollard::container::{Config, LogsOptions, RemoveContainerOptions, WaitContainerOptions};
use bollard::models::HostConfig;
use bollard::Docker;
use futures_util::StreamExt;

use crate::host;

fn uid_gid() -> String {
    let (uid, gid) = host::uid_gid();
    format!("{uid}:{gid}")
}

/// Force-removes a container; a container that is already gone is fine.
pub(super) async fn remove(d: &Docker, id: &str) {
    let _ = d
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
}

/// The label naming the process that owns a container (`<boot id>/<pid>`), so that the next
/// run removes the containers of an owner that was killed.
const OWNER_LABEL: &str = "org.kernel-collector.owner";
/// The label naming a container's cell.
const CELL_LABEL: &str = "org.kernel-collector.cell";

/// This process, as the owner label names it.
fn owner() -> String {
    format!("{}/{}", crate::host::boot_id(), std::process::id())
}

/// Whether the process an owner label names still runs (a label of another boot: no).
fn owner_alive(label: &str) -> bool {
    let Some((boot, pid)) = label.rsplit_once('/') else {
        return false;
    };
    boot == crate::host::boot_id() && std::path::Path::new("/proc").join(pid).exists()
}

/// Removes the containers whose owner is gone (a build killed with SIGKILL); returns how many.
pub async fn remove_orphans(d: &Docker) -> Result<usize> {
    let filters = std::collections::HashMap::from([("label", vec![OWNER_LABEL])]);
    let list = d
        .list_containers(Some(bollard::container::ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await
        .context("listing containers")?;
    let mut removed = 0;
    for c in list {
        let owner = c.labels.as_ref().and_then(|l| l.get(OWNER_LABEL));
        if let (Some(id), Some(owner)) = (&c.id, owner) {
            if !owner_alive(owner) {
                remove(d, id).await;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Every container of ours: no network at all, the invoking user, given mounts, labelled
/// with its owner and cell.
pub(super) fn isolated_config(
    tag: &str,
    cmd: Vec<String>,
    env: Vec<String>,
    binds: Vec<String>,
    workdir: &str,
    cell: &str,
) -> Config<String> {
    Config {
        labels: Some(std::collections::HashMap::from([
            (OWNER_LABEL.to_string(), owner()),
            (CELL_LABEL.to_string(), cell.to_string()),
        ])),
        image: Some(tag.to_string()),
        cmd: Some(cmd),
        env: Some(env),
        user: Some(uid_gid()),
        working_dir: Some(workdir.to_string()),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs `cmd` in a container configured like a cell's (for checks); returns its output.
pub async fn run_isolated(d: &Docker, tag: &str, cmd: &[&str]) -> Result<String> {
    let config = isolated_config(
        tag,
        cmd.iter().map(|s| s.to_string()).collect(),
        vec![],
        vec![],
        "/",
        "check",
    );
    let created = d.create_container::<String, String>(None, config).await?;
    let result = async {
        d.start_container::<String>(&created.id, None).await?;
        let mut wait = d.wait_container(&created.id, None::<WaitContainerOptions<String>>);
        while wait.next().await.is_some() {}
        let mut out = String::new();
        let mut logs = d.logs(
            &created.id,
            Some(LogsOptions::<String> {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(Ok(chunk)) = logs.next().await {
            out.push_str(&chunk.to_string());
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    remove(d, &created.id).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image;
    use kc_common::Libc;

    /// A container whose owner was killed is removed by the next build; one whose owner
    /// lives (this test) is left alone.
    #[test]
    fn a_killed_builds_containers_are_removed_next_time_needs_docker() {
        if !image::daemon_answers() {
            kc_common::skip::skip(
                "a_killed_builds_containers_are_removed_next_time_needs_docker",
                "no Docker daemon answers on this machine",
            );
            return;
        }
        let rt = image::runtime().unwrap();
        rt.block_on(async {
            let d = image::docker().await.unwrap();
            let tag = image::ensure_image(&d, Libc::Glibc).await.unwrap();
            let make = |owner: String| {
                let mut c = isolated_config(&tag, vec!["true".into()], vec![], vec![], "/", "test");
                c.labels
                    .as_mut()
                    .unwrap()
                    .insert(OWNER_LABEL.to_string(), owner);
                c
            };
            let dead = format!("{}/{}", crate::host::boot_id(), u32::MAX - 1);
            let orphan = d
                .create_container::<String, String>(None, make(dead))
                .await
                .unwrap();
            let ours = d
                .create_container::<String, String>(None, make(owner()))
                .await
                .unwrap();
            assert!(remove_orphans(&d).await.unwrap() >= 1);
            assert!(
                d.inspect_container(&orphan.id, None).await.is_err(),
                "the orphan is gone"
            );
            assert!(
                d.inspect_container(&ours.id, None).await.is_ok(),
                "a live owner's stays"
            );
            remove(&d, &ours.id).await;
        });
    }
}
