//! `cargo xtask image`: the build images, through the Docker Engine API (bollard).
//!
//! No registry is reachable, so the Debian base is bootstrapped locally (debootstrap of the
//! suite from the host's mirror) and imported through the API. Each image's tag is derived from
//! the hash of its Dockerfile and its base, so an unchanged image is reused at once.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::image::{BuildImageOptions, CreateImageOptions};
use bollard::Docker;
use clap::Args;
use futures_util::StreamExt;
use kc_common::Libc;
use sha2::{Digest, Sha256};
use xshell::cmd;

use crate::debian::mirror::Mirror;
use crate::{host, paths, process};

/// The Debian suite the build images are made of (the host's, so compilers match).
pub const SUITE: &str = "bookworm";
/// Bump to re-bootstrap the base.
const BASE_FORMAT: &str = "kc-base-v1";

#[derive(Debug, Args)]
pub struct ImageOptions {
    /// Which image
    #[arg(long, value_enum, default_value = "all")]
    pub libc: crate::cli::LibcChoice,
}

/// The single-threaded runtime every bollard call of ours runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Whether a Docker daemon answers a ping: what chooses the docker backend, or skips a test.
pub fn daemon_answers() -> bool {
    runtime().is_ok_and(|rt| rt.block_on(docker()).is_ok())
}

/// A client that has answered a ping (DOCKER_HOST, else the local socket).
pub async fn docker() -> Result<Docker> {
    answered(Docker::connect_with_local_defaults()).await
}

fn no_daemon(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("no Docker daemon answers ({e}): start it (`systemctl start docker`), or build with `--backend host`")
}

async fn answered(d: Result<Docker, bollard::errors::Error>) -> Result<Docker> {
    let d = d.map_err(no_daemon)?;
    d.ping().await.map_err(no_daemon)?;
    Ok(d)
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())[..12].to_string()
}

pub fn base_tag() -> String {
    format!(
        "kc-base:{SUITE}-{}",
        short_hash(&[BASE_FORMAT.as_bytes(), SUITE.as_bytes()])
    )
}

async fn exists(d: &Docker, tag: &str) -> bool {
    d.inspect_image(tag).await.is_ok()
}

/// debootstrap of the suite, imported as an image (what a registry pull would have given).
async fn bootstrap_base(d: &Docker, tag: &str) -> Result<()> {
    let mirror = Mirror::discover()?;
    if !host::is_root() {
        bail!("bootstrapping the base image runs debootstrap, which needs root");
    }
    let sh = process::shell();
    let root = tempfile::Builder::new().prefix("kc-base-").tempdir()?;
    let dir = root.path();
    let main = mirror.main.clone();
    eprintln!("image: no base image can be pulled here; bootstrapping {SUITE} with debootstrap");
    process::output(cmd!(
        sh,
        "debootstrap --variant=minbase {SUITE} {dir} {main}"
    ))
    .context(
        "debootstrap failed (is the mirror reachable? run `cargo xtask setup` for debootstrap)",
    )?;
    // Point apt inside the image at the same mirror.
    std::fs::write(
        dir.join("etc/apt/sources.list"),
        format!("deb {main} {SUITE} main\n"),
    )?;
    let rootfs = process::output(cmd!(sh, "tar -C {dir} --numeric-owner -cf - ."))?.stdout;
    let (repo, version) = tag.split_once(':').expect("tags have a version");
    let opts = CreateImageOptions {
        from_src: "-",
        repo,
        tag: version,
        ..Default::default()
    };
    let mut stream = d.create_image(Some(opts), Some(rootfs.into()), None);
    while let Some(item) = stream.next().await {
        item.context("importing the bootstrapped base image")?;
    }
    eprintln!("image: imported {tag}");
    Ok(())
}

/// The tag of the image `name` (a libc's), derived from its Dockerfile and its base.
pub fn image_tag(name: &str, dockerfile: &[u8]) -> String {
    format!(
        "kc-build-{name}:{}",
        short_hash(&[dockerfile, base_tag().as_bytes()])
    )
}

/// Makes sure the base and the libc's image exist; returns the image tag.
pub async fn ensure_image(d: &Docker, libc: Libc) -> Result<String> {
    let path = paths::project_root()
        .join("docker")
        .join(format!("{libc}.Dockerfile"));
    let dockerfile = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (no image is defined for {libc} yet)",
            path.display()
        )
    })?;
    ensure_image_from(d, libc.as_str(), &dockerfile).await
}

/// Held while an image is looked for and made: a second maker (another test, another xtask)
/// waits, then finds the first one's image, instead of building its own and moving the tag
/// to it under the first one's feet (a build keyed by the image's id would then see it
/// change between two runs).
fn images_lock() -> Result<std::fs::File> {
    let path = paths::cache_dir().join("images.lock");
    std::fs::create_dir_all(paths::cache_dir())?;
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

async fn ensure_image_from(d: &Docker, name: &str, dockerfile: &[u8]) -> Result<String> {
    let tag = image_tag(name, dockerfile);
    if exists(d, &tag).await {
        return Ok(tag);
    }
    let _lock = images_lock()?;
    if exists(d, &tag).await {
        return Ok(tag);
    }
    let base = base_under_lock(d).await?;
    build_image(
        d,
        name,
        &tag,
        &base,
        build_context(dockerfile, |_| Ok(()))?,
        false,
    )
    .await?;
    Ok(tag)
}

/// The locally bootstrapped Debian base every image starts from; made when missing.
pub async fn ensure_base(d: &Docker) -> Result<String> {
    let base = base_tag();
    if exists(d, &base).await {
        return Ok(base);
    }
    let _lock = images_lock()?;
    base_under_lock(d).await
}

/// [`ensure_base`] for a caller that holds [`images_lock`].
async fn base_under_lock(d: &Docker) -> Result<String> {
    let base = base_tag();
    if exists(d, &base).await {
        return Ok(base);
    }
    // Where a registry answers (GitHub's runners), the suite's official image is pulled;
    // debootstrap is the offline fallback.
    match pull_base(d, &format!("debian:{SUITE}"), &base).await {
        Ok(()) => eprintln!("image: pulled debian:{SUITE} as {base}"),
        Err(e) => {
            eprintln!("image: no registry gave debian:{SUITE} ({e:#})");
            bootstrap_base(d, &base).await?;
        }
    }
    Ok(base)
}

/// How long a pull may take before the offline fallback is used.
const PULL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Pulls `image` and tags it `tag`, within [`PULL_DEADLINE`].
async fn pull_base(d: &Docker, image: &str, tag: &str) -> Result<()> {
    let pull = async {
        let opts = CreateImageOptions {
            from_image: image,
            ..Default::default()
        };
        let mut stream = d.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            item.with_context(|| format!("pulling {image}"))?;
        }
        let (repo, version) = tag.split_once(':').expect("tags have a version");
        d.tag_image(
            image,
            Some(bollard::image::TagImageOptions { repo, tag: version }),
        )
        .await
        .with_context(|| format!("tagging {image} as {tag}"))?;
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(PULL_DEADLINE, pull)
        .await
        .map_err(|_| anyhow::anyhow!("pulling {image} took over {} s", PULL_DEADLINE.as_secs()))?
}

/// Builds `context` (a tar holding `Dockerfile`) as `tag` on `base`, streaming the log with
/// `label` as prefix; a failure shows the last lines. `nocache` rebuilds every step.
pub async fn build_image(
    d: &Docker,
    label: &str,
    tag: &str,
    base: &str,
    context: Vec<u8>,
    nocache: bool,
) -> Result<()> {
    let opts = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        nocache,
        buildargs: HashMap::from([("BASE".to_string(), base.to_string())]),
        ..Default::default()
    };
    let mut stream = d.build_image(opts, None, Some(context.into()));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                for line in info
                    .stream
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                {
                    eprintln!("[image {label}] {line}");
                    tail.push(line.to_string());
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
                if let Some(e) = info.error {
                    bail!(
                        "building the {label} image failed: {e}\nlast lines:\n{}",
                        tail.join("\n")
                    );
                }
            }
            Err(e) => bail!(
                "building the {label} image failed: {e}\nlast lines:\n{}",
                tail.join("\n")
            ),
        }
    }
    if !exists(d, tag).await {
        bail!("the {label} image build ended without an image tagged {tag}");
    }
    Ok(())
}

/// A build context: the Dockerfile and whatever `extra` appends. Our own images copy nothing
/// (sources, kernels and outputs are mounted at build time).
pub fn build_context(
    dockerfile: &[u8],
    extra: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "Dockerfile", dockerfile)?;
    extra(&mut b)?;
    Ok(b.into_inner()?)
}

pub fn run(o: ImageOptions) -> Result<()> {
    runtime()?.block_on(async {
        let d = docker().await?;
        for libc in o.libc.libcs() {
            let t = std::time::Instant::now();
            let tag = ensure_image(&d, libc).await?;
            eprintln!(
                "image: {libc} {tag} ready in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        runtime().unwrap()
    }

    #[test]
    fn a_missing_daemon_is_a_clear_error() {
        // No socket at all, and a socket nobody listens on.
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        for path in [dir.path().join("none.sock"), dead] {
            let d = Docker::connect_with_unix(
                &path.display().to_string(),
                5,
                bollard::API_DEFAULT_VERSION,
            );
            let e = format!("{:#}", rt().block_on(answered(d)).unwrap_err());
            assert!(
                e.contains("no Docker daemon answers") && e.contains("--backend host"),
                "{e}"
            );
        }
    }

    #[test]
    fn tags_follow_the_dockerfile() {
        assert_ne!(image_tag("glibc", b"FROM a"), image_tag("glibc", b"FROM b"));
        assert_eq!(image_tag("glibc", b"FROM a"), image_tag("glibc", b"FROM a"));
        assert!(image_tag("musl", b"x").starts_with("kc-build-musl:"));
    }

    /// Drives the real engine: bootstrap (first time), build, then reuse without a rebuild.
    #[test]
    fn images_build_then_are_reused_needs_docker() {
        let rt = rt();
        let Ok(d) = rt.block_on(docker()) else {
            kc_common::skip::skip(
                "images_build_then_are_reused_needs_docker",
                "no Docker daemon answers on this machine",
            );
            return;
        };
        for libc in Libc::ALL {
            let tag = rt.block_on(ensure_image(&d, libc)).unwrap();
            let id = rt.block_on(d.inspect_image(&tag)).unwrap().id;
            assert_eq!(rt.block_on(ensure_image(&d, libc)).unwrap(), tag);
            assert_eq!(
                rt.block_on(d.inspect_image(&tag)).unwrap().id,
                id,
                "an unchanged image is reused, not rebuilt"
            );
        }
    }

    /// Offline (no registry answers here) a pull fails at once with a reason, so that
    /// `ensure_base` falls back to debootstrap; nothing is tagged.
    #[test]
    fn a_pull_without_a_registry_fails_with_a_reason_needs_docker() {
        let rt = rt();
        let Ok(d) = rt.block_on(docker()) else {
            kc_common::skip::skip(
                "a_pull_without_a_registry_fails_with_a_reason_needs_docker",
                "no Docker daemon answers on this machine",
            );
            return;
        };
        let t = std::time::Instant::now();
        let r = rt.block_on(pull_base(&d, "kc-no-such-repo/none:1", "kc-pull-test:x"));
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("pulling kc-no-such-repo/none:1"), "{e}");
        assert!(t.elapsed() < PULL_DEADLINE);
        assert!(!rt.block_on(exists(&d, "kc-pull-test:x")));
    }

    /// A step that fails: the error names the image and shows the step's last output lines.
    #[test]
    fn a_failing_image_build_shows_its_last_lines_needs_docker() {
        let rt = rt();
        let Ok(d) = rt.block_on(docker()) else {
            kc_common::skip::skip(
                "a_failing_image_build_shows_its_last_lines_needs_docker",
                "no Docker daemon answers on this machine",
            );
            return;
        };
        let dockerfile = b"ARG BASE\nFROM ${BASE}\nRUN echo kc-step-about-to-fail && exit 3\n";
        let e = format!(
            "{:#}",
            rt.block_on(ensure_image_from(&d, "broken-test", dockerfile))
                .unwrap_err()
        );
        assert!(
            e.contains("building the broken-test image failed")
                && e.contains("kc-step-about-to-fail"),
            "{e}"
        );
        assert!(!rt.block_on(exists(&d, &image_tag("broken-test", dockerfile))));
    }
}
