//! `cargo xtask publish`: creates (or finds) the GitHub release of a tag and uploads every file
//! of artifacts/release/ through the REST API. Idempotent: a re-run after a failure uploads only
//! what is missing (an asset of the wrong size, a cut upload, is replaced). The token comes from
//! GITHUB_TOKEN and is never printed.

use kc_common::retry::{Attempt, Backoff, Failure};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::paths;

pub mod fake_github;

#[derive(Debug, Args)]
pub struct PublishOptions {
    /// The tag to publish, e.g. v1.2.3
    #[arg(long)]
    pub tag: String,
    /// Create the release as a draft
    #[arg(long)]
    pub draft: bool,
    /// owner/name; default: GITHUB_REPOSITORY
    #[arg(long)]
    pub repo: Option<String>,
    /// The REST API's base URL; default: GITHUB_API_URL, else GitHub's
    #[arg(long)]
    pub api_url: Option<String>,
    /// The release files
    #[arg(long, default_value = crate::paths::RELEASE)]
    pub dir: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Release {
    id: u64,
    tag_name: String,
    upload_url: String,
    #[serde(default)]
    assets: Vec<Asset>,
}

#[derive(Debug, Deserialize)]
struct Asset {
    id: u64,
    name: String,
    size: u64,
    #[serde(default)]
    state: String,
    /// `sha256:<hex>`, as GitHub reports it for uploaded assets.
    #[serde(default)]
    digest: Option<String>,
}

impl Asset {
    /// Whether the asset is already exactly `bytes`: complete, and the same digest (a size
    /// alone would keep a signature made by another key).
    fn holds(&self, bytes: &[u8]) -> bool {
        let complete = self.state.is_empty() || self.state == "uploaded";
        let same = match &self.digest {
            Some(d) => d.strip_prefix("sha256:") == Some(&kc_common::release::sha256_hex(bytes)),
            None => self.size == bytes.len() as u64,
        };
        complete && same
    }
}

/// The files `package` wrote for `tag` in `dir`: `sha256sums.txt`, what it lists, and their
/// signatures; the list must be this tag's (older packages' files in `dir` are not).
pub fn release_files(dir: &Path, tag: &str) -> Result<Vec<PathBuf>> {
    use kc_common::release::{parse_sums, SIG_SUFFIX, SUMS_FILE};
    let sums_path = dir.join(SUMS_FILE);
    let text = std::fs::read_to_string(&sums_path).with_context(|| {
        format!(
            "reading {} (run `cargo xtask package --tag {tag}` first)",
            sums_path.display()
        )
    })?;
    let listed = parse_sums(&text)?;
    let mut names = vec![SUMS_FILE.to_string()];
    for (name, _) in listed {
        if !kc_common::release::is_file_of(&name, tag) {
            bail!(
                "{} lists {name}, which is not a file of {tag}: package {tag} again",
                sums_path.display()
            );
        }
        names.push(name);
    }
    let mut files = Vec::new();
    for n in names {
        for f in [n.clone(), format!("{n}{SIG_SUFFIX}")] {
            let p = dir.join(&f);
            if p.is_file() {
                files.push(p);
            } else if f == n {
                bail!("{} is missing: package {tag} again", p.display());
            }
        }
    }
    files.sort();
    Ok(files)
}

pub struct Publisher {
    client: Client,
    api: String,
    repo: String,
    token: String,
    backoff: Backoff,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub created: bool,
    pub uploaded: Vec<String>,
    pub kept: Vec<String>,
}

impl Publisher {
    pub fn new(api: &str, repo: &str, token: String) -> Result<Self> {
        if !repo.contains('/') || repo.split('/').any(str::is_empty) {
            bail!("repository {repo:?} is not owner/name");
        }
        if token.trim().is_empty() {
            bail!("GITHUB_TOKEN is empty: publishing needs a token with contents: write");
        }
        Ok(Self {
            client: Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .timeout(Duration::from_secs(600))
                .user_agent("kernel-collector-xtask")
                .build()?,
            api: api.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
            token,
            backoff: Backoff::new(4, Duration::from_millis(500)),
        })
    }

    #[cfg(test)]
    fn without_backoff(mut self) -> Self {
        self.backoff.first_wait = Duration::from_millis(1);
        self
    }

    fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        rb.bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    /// Sends with retries on network errors and 5xx; other statuses are returned as they are.
    fn send(&self, what: &str, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let sent = self.backoff.run(|_| -> Result<Response, Attempt<String>> {
            match self.authed(make()).send() {
                Ok(r) if r.status().is_server_error() => {
                    Err(Attempt::Retry(format!("the API answered {}", r.status())))
                }
                Ok(r) => Ok(r),
                Err(e) => Err(Attempt::Retry(e.without_url().to_string())),
            }
        });
        match sent {
            Ok(r) => Ok(r),
            Err(Failure::GaveUp { attempts, last }) => {
                bail!("{what}: gave up after {attempts} attempts: {last}")
            }
            Err(Failure::Fatal(e)) => bail!("{what}: {e}"),
        }
    }

    fn expect_ok(what: &str, r: Response) -> Result<Response> {
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let body: String = r.text().unwrap_or_default().chars().take(300).collect();
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (the token is invalid or expired)",
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                " (does the token have contents: write on this repository?)"
            }
            _ => "",
        };
        bail!("{what}: the API answered {status}{hint}: {body}")
    }

    fn find_release(&self, tag: &str) -> Result<Option<Release>> {
        // Drafts are not served by /releases/tags/{tag}: look through the list.
        for page in 1..=10 {
            let url = format!(
                "{}/repos/{}/releases?per_page=100&page={page}",
                self.api, self.repo
            );
            let r = Self::expect_ok(
                "listing releases",
                self.send("listing releases", || self.client.get(&url))?,
            )?;
            let releases: Vec<Release> = r.json().context("the release list is not JSON")?;
            if releases.is_empty() {
                break;
            }
            if let Some(rel) = releases.into_iter().find(|r| r.tag_name == tag) {
                return Ok(Some(rel));
            }
        }
        Ok(None)
    }

    pub fn publish(&self, tag: &str, draft: bool, dir: &Path) -> Result<Published> {
        let files = release_files(dir, tag)?;
        let mut out = Published::default();
        let release = match self.find_release(tag)? {
            Some(r) => r,
            None => {
                let url = format!("{}/repos/{}/releases", self.api, self.repo);
                let body = serde_json::json!({ "tag_name": tag, "name": format!("kernel-collector {tag}"), "draft": draft });
                let r = Self::expect_ok(
                    "creating the release",
                    self.send("creating the release", || {
                        self.client.post(&url).json(&body)
                    })?,
                )?;
                out.created = true;
                r.json().context("the created release is not JSON")?
            }
        };
        let upload_base = release
            .upload_url
            .split('{')
            .next()
            .unwrap_or(&release.upload_url)
            .to_string();
        for path in files {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path)?;
            if let Some(a) = release.assets.iter().find(|a| a.name == name) {
                if a.holds(&bytes) {
                    out.kept.push(name);
                    continue;
                }
                // A cut upload, or other bytes (a re-signed file): replace it.
                let url = format!("{}/repos/{}/releases/assets/{}", self.api, self.repo, a.id);
                Self::expect_ok(
                    &format!("deleting the incomplete asset {name}"),
                    self.send("deleting an asset", || self.client.delete(&url))?,
                )?;
            }
            let url = format!("{upload_base}?name={name}");
            let what = format!("uploading {name} to release {}", release.id);
            Self::expect_ok(
                &what,
                self.send(&what, || {
                    self.client
                        .post(&url)
                        .header("Content-Type", "application/octet-stream")
                        .body(bytes.clone())
                })?,
            )?;
            out.uploaded.push(name);
        }
        Ok(out)
    }
}

pub fn run(o: PublishOptions) -> Result<()> {
    crate::package::check_tag(&o.tag)?;
    let token = std::env::var("GITHUB_TOKEN")
        .context("GITHUB_TOKEN is not set: publishing needs a token with contents: write")?;
    let repo = match o.repo {
        Some(r) => r,
        None => std::env::var("GITHUB_REPOSITORY")
            .context("pass --repo owner/name (or set GITHUB_REPOSITORY)")?,
    };
    let api = o
        .api_url
        .or_else(|| std::env::var("GITHUB_API_URL").ok())
        .unwrap_or_else(|| "https://api.github.com".into());
    let dir = if o.dir.is_absolute() {
        o.dir.clone()
    } else {
        paths::project_root().join(&o.dir)
    };
    let p = Publisher::new(&api, &repo, token)?.publish(&o.tag, o.draft, &dir)?;
    eprintln!(
        "publish: release {} {} ({}): {} uploaded, {} already there",
        o.tag,
        if p.created { "created" } else { "found" },
        if o.draft { "draft" } else { "published" },
        p.uploaded.len(),
        p.kept.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fake_github::FakeGithub;
    use super::*;

    const TAR: &str = "kernel-collector-glibc-v1.0.0.tar.xz";

    /// What `package` writes for v1.0.0 (contents stand in), beside an older tag's leftovers.
    fn release_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let sums = kc_common::release::format_sums(&[(
            TAR.to_string(),
            kc_common::release::sha256_hex(b"AAAAAAAA"),
        )]);
        for (n, b) in [
            (TAR, &b"AAAAAAAA"[..]),
            ("kernel-collector-glibc-v1.0.0.tar.xz.minisig", b"sig"),
            ("sha256sums.txt", sums.as_bytes()),
            ("sha256sums.txt.minisig", b"sig2"),
            ("kernel-collector-glibc-v0.9.0.tar.xz", b"old"),
        ] {
            std::fs::write(d.path().join(n), b).unwrap();
        }
        d
    }

    fn sig(n: &str) -> String {
        format!("{n}.minisig")
    }

    #[test]
    fn creates_uploads_and_a_rerun_uploads_nothing() {
        let fake = FakeGithub::start("s3cret").unwrap();
        let api = fake.url();
        let dir = release_dir();
        let p = Publisher::new(api, "o/r", "s3cret".into())
            .unwrap()
            .without_backoff();
        let first = p.publish("v1.0.0", true, dir.path()).unwrap();
        assert!(first.created);
        assert_eq!(
            first.uploaded,
            [
                TAR.to_string(),
                sig(TAR),
                "sha256sums.txt".into(),
                sig("sha256sums.txt")
            ],
            "exactly v1.0.0's files, not the older tag's"
        );
        let again = p.publish("v1.0.0", true, dir.path()).unwrap();
        assert!(
            !again.created && again.uploaded.is_empty() && again.kept.len() == 4,
            "{again:?}"
        );
        // A signature re-made with another key has the same size: it is replaced all the same.
        std::fs::write(dir.path().join(sig(TAR)), b"SIG").unwrap();
        let resigned = p.publish("v1.0.0", true, dir.path()).unwrap();
        assert_eq!(resigned.uploaded, [sig(TAR)]);
        // Another tag's list is refused.
        let e = format!("{:#}", p.publish("v2.0.0", true, dir.path()).unwrap_err());
        assert!(e.contains("not a file of v2.0.0"), "{e}");
        let releases = fake.releases();
        assert_eq!(releases.len(), 1);
        assert!(releases[0].draft && releases[0].repo == "o/r");
    }

    #[test]
    fn a_failure_midway_is_finished_by_a_rerun() {
        let fake = FakeGithub::start("s3cret").unwrap();
        fake.fail_upload_of(&sig(TAR));
        let dir = release_dir();
        let p = Publisher::new(fake.url(), "o/r", "s3cret".into())
            .unwrap()
            .without_backoff();
        let e = format!("{:#}", p.publish("v1.0.0", false, dir.path()).unwrap_err());
        assert!(
            e.contains(&format!("uploading {}", sig(TAR))) && e.contains("400"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "the token never appears in errors");
        let rerun = p.publish("v1.0.0", false, dir.path()).unwrap();
        assert_eq!(rerun.kept, [TAR]);
        assert_eq!(
            rerun.uploaded,
            [sig(TAR), "sha256sums.txt".into(), sig("sha256sums.txt")],
            "the half upload is replaced"
        );
        let releases = fake.releases();
        let assets: Vec<(&str, usize)> = releases[0]
            .assets
            .iter()
            .map(|(_, n, b)| (n.as_str(), b.len()))
            .collect();
        assert_eq!(assets[0], (TAR, 8));
        assert_eq!(
            assets[1],
            (sig(TAR).as_str(), 3),
            "the whole signature, not half"
        );
        assert_eq!(assets.len(), 4);
    }

    #[test]
    fn a_bad_token_says_so() {
        let fake = FakeGithub::start("s3cret").unwrap();
        fake.refuse_token();
        let api = fake.url();
        let dir = release_dir();
        let e = format!(
            "{:#}",
            Publisher::new(api, "o/r", "s3cret".into())
                .unwrap()
                .without_backoff()
                .publish("v1.0.0", false, dir.path())
                .unwrap_err()
        );
        assert!(
            e.contains("401") && e.contains("invalid or expired") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(Publisher::new(api, "no-slash", "t".into()).is_err());
        assert!(Publisher::new(api, "o/r", " ".into()).is_err());
    }
}
