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
    #[arg(long, default_value = "artifacts/release")]
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
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| {
                format!(
                    "reading {} (run `cargo xtask package` first)",
                    dir.display()
                )
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{} holds no release file", dir.display());
        }
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
                if a.size == bytes.len() as u64 && (a.state.is_empty() || a.state == "uploaded") {
                    out.kept.push(name);
                    continue;
                }
                // A cut or stale upload: replace it.
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
    use super::*;
    use std::io::{BufRead, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// What the fake API holds, and the failure it is told to inject.
    #[derive(Default)]
    struct State {
        releases: Vec<(u64, String, bool, Vec<(u64, String, Vec<u8>)>)>,
        fail_upload_of: Option<String>,
        requests: Vec<String>,
        bad_token: bool,
    }

    /// A loopback server speaking the few endpoints publish uses.
    fn fake_github(state: Arc<Mutex<State>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    let mut w = stream;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, target) = (
                            parts.next().unwrap_or("").to_string(),
                            parts.next().unwrap_or("").to_string(),
                        );
                        let (mut len, mut auth) = (0usize, String::new());
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).unwrap();
                            if h.trim().is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => len = v.trim().parse().unwrap(),
                                "authorization" => auth = v.trim().to_string(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).unwrap();
                        let (status, reply) =
                            handle(&state, &method, &target, &auth, body, addr.port());
                        let _ = write!(w, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}", reply.len());
                    }
                });
            }
        });
        format!("http://127.0.0.1:{}", addr.port())
    }

    fn handle(
        state: &Mutex<State>,
        method: &str,
        target: &str,
        auth: &str,
        body: Vec<u8>,
        port: u16,
    ) -> (u16, String) {
        let mut s = state.lock().unwrap();
        s.requests.push(format!("{method} {target}"));
        if auth != "Bearer s3cret" || s.bad_token {
            return (401, r#"{"message":"Bad credentials"}"#.into());
        }
        let release_json = |id: u64, tag: &str, assets: &[(u64, String, Vec<u8>)]| {
            serde_json::json!({
                "id": id, "tag_name": tag,
                "upload_url": format!("http://127.0.0.1:{port}/uploads/{id}/assets{{?name,label}}"),
                "assets": assets.iter().map(|(aid, n, b)| serde_json::json!({"id": aid, "name": n, "size": b.len(), "state": "uploaded"})).collect::<Vec<_>>(),
            })
        };
        if method == "GET" && target.starts_with("/repos/o/r/releases?") {
            if !target.ends_with("page=1") {
                return (200, "[]".into());
            }
            let list: Vec<_> = s
                .releases
                .iter()
                .map(|(id, t, _, a)| release_json(*id, t, a))
                .collect();
            return (200, serde_json::to_string(&list).unwrap());
        }
        if method == "POST" && target == "/repos/o/r/releases" {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = s.releases.len() as u64 + 1;
            s.releases.push((
                id,
                v["tag_name"].as_str().unwrap().into(),
                v["draft"].as_bool().unwrap(),
                vec![],
            ));
            return (
                201,
                release_json(id, v["tag_name"].as_str().unwrap(), &[]).to_string(),
            );
        }
        if method == "POST" && target.starts_with("/uploads/") {
            let id: u64 = target.split('/').nth(2).unwrap().parse().unwrap();
            let name = target.split("name=").nth(1).unwrap().to_string();
            if s.fail_upload_of.as_deref() == Some(name.as_str()) {
                // Fails midway: half the asset is stored, then the API errors.
                s.fail_upload_of = None;
                let half = body[..body.len() / 2].to_vec();
                let aid = 100 + id * 10 + s.releases[id as usize - 1].3.len() as u64;
                s.releases[id as usize - 1].3.push((aid, name, half));
                return (400, r#"{"message":"upload interrupted"}"#.into());
            }
            let aid = 100 + id * 10 + s.releases[id as usize - 1].3.len() as u64;
            s.releases[id as usize - 1].3.push((aid, name, body));
            return (201, "{}".into());
        }
        if method == "DELETE" && target.starts_with("/repos/o/r/releases/assets/") {
            let aid: u64 = target.rsplit('/').next().unwrap().parse().unwrap();
            for r in s.releases.iter_mut() {
                r.3.retain(|(a, _, _)| *a != aid);
            }
            return (204, String::new());
        }
        (404, r#"{"message":"Not Found"}"#.into())
    }

    fn release_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, b) in [
            ("a.tar.xz", &b"AAAAAAAA"[..]),
            ("a.tar.xz.minisig", b"sig"),
            ("sha256sums.txt", b"sums"),
        ] {
            std::fs::write(d.path().join(n), b).unwrap();
        }
        d
    }

    #[test]
    fn creates_uploads_and_a_rerun_uploads_nothing() {
        let state = Arc::new(Mutex::new(State::default()));
        let api = fake_github(state.clone());
        let dir = release_dir();
        let p = Publisher::new(&api, "o/r", "s3cret".into())
            .unwrap()
            .without_backoff();
        let first = p.publish("v1.0.0", true, dir.path()).unwrap();
        assert!(first.created);
        assert_eq!(
            first.uploaded,
            ["a.tar.xz", "a.tar.xz.minisig", "sha256sums.txt"]
        );
        let again = p.publish("v1.0.0", true, dir.path()).unwrap();
        assert!(
            !again.created && again.uploaded.is_empty() && again.kept.len() == 3,
            "{again:?}"
        );
        let s = state.lock().unwrap();
        assert_eq!(s.releases.len(), 1);
        assert!(s.releases[0].2, "draft");
    }

    #[test]
    fn a_failure_midway_is_finished_by_a_rerun() {
        let state = Arc::new(Mutex::new(State {
            fail_upload_of: Some("a.tar.xz.minisig".into()),
            ..Default::default()
        }));
        let api = fake_github(state.clone());
        let dir = release_dir();
        let p = Publisher::new(&api, "o/r", "s3cret".into())
            .unwrap()
            .without_backoff();
        let e = format!("{:#}", p.publish("v1.0.0", false, dir.path()).unwrap_err());
        assert!(
            e.contains("uploading a.tar.xz.minisig") && e.contains("400"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "the token never appears in errors");
        let rerun = p.publish("v1.0.0", false, dir.path()).unwrap();
        assert_eq!(rerun.kept, ["a.tar.xz"]);
        assert_eq!(
            rerun.uploaded,
            ["a.tar.xz.minisig", "sha256sums.txt"],
            "the half upload is replaced"
        );
        let s = state.lock().unwrap();
        let assets: Vec<(&str, usize)> = s.releases[0]
            .3
            .iter()
            .map(|(_, n, b)| (n.as_str(), b.len()))
            .collect();
        assert_eq!(
            assets,
            [
                ("a.tar.xz", 8),
                ("a.tar.xz.minisig", 3),
                ("sha256sums.txt", 4)
            ]
        );
    }

    #[test]
    fn a_bad_token_says_so() {
        let state = Arc::new(Mutex::new(State {
            bad_token: true,
            ..Default::default()
        }));
        let api = fake_github(state);
        let dir = release_dir();
        let e = format!(
            "{:#}",
            Publisher::new(&api, "o/r", "s3cret".into())
                .unwrap()
                .without_backoff()
                .publish("v1.0.0", false, dir.path())
                .unwrap_err()
        );
        assert!(
            e.contains("401") && e.contains("invalid or expired") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(Publisher::new(&api, "no-slash", "t".into()).is_err());
        assert!(Publisher::new(&api, "o/r", " ".into()).is_err());
    }
}
