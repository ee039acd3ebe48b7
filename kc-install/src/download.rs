//! Fetching a release file from a server we do not control: bounded in size, in time and in
//! patience with a slow sender, with errors that say what the server did.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kc_common::rate::RateFloor;
use kc_common::retry::{Attempt, Backoff, Failure};

/// What a download may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole file, from connecting to its last byte, retries included.
    pub deadline: Duration,
    /// Slower than `low_speed` bytes/s over `low_speed_window` is given up on.
    pub low_speed: u64,
    pub low_speed_window: Duration,
    pub connect: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(120),
            low_speed: 1024,
            low_speed_window: Duration::from_secs(20),
            connect: Duration::from_secs(15),
        }
    }
}

/// Signatures and `sha256sums.txt` are a few hundred bytes.
pub const SMALL_FILE_CAP: u64 = 64 << 10;
/// A release tarball is under 1 MiB today; this is the hard cap.
pub const TARBALL_CAP: u64 = 64 << 20;

/// Why one try failed: worth another try, or not.
type Try = Attempt<String, anyhow::Error>;

/// `name` from a directory or a base URL, at most `cap` bytes.
pub fn fetch(from: &str, name: &str, cap: u64, limits: &Limits) -> Result<Vec<u8>> {
    if !(from.starts_with("http://") || from.starts_with("https://")) {
        let path = Path::new(from).join(name);
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() || meta.len() > cap {
            bail!(
                "{} is not a regular file of at most {cap} bytes",
                path.display()
            );
        }
        return std::fs::read(&path).with_context(|| format!("reading {}", path.display()));
    }
    let url = format!("{}/{name}", from.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(limits.connect)
        .build()?;
    // One deadline for the file: a silent server costs it once, not once per retry.
    let deadline = std::time::Instant::now() + limits.deadline;
    let fetched = Backoff::new(3, Duration::from_millis(600)).run(|_| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Attempt::Fatal(anyhow::anyhow!(
                "{url}: no complete answer within {} s: giving up",
                limits.deadline.as_secs()
            )));
        }
        one_try(&client, &url, name, cap, limits, left)
    });
    match fetched {
        Ok(body) => Ok(body),
        Err(Failure::Fatal(e)) => Err(e.context("the previous install is untouched")),
        Err(Failure::GaveUp { attempts, last }) => bail!(
            "{url}: download failed after {attempts} attempts: {last}; the previous install is untouched"
        ),
    }
}

fn one_try(
    client: &reqwest::blocking::Client,
    url: &str,
    name: &str,
    cap: u64,
    limits: &Limits,
    time_left: Duration,
) -> Result<Vec<u8>, Try> {
    let fatal = |m: String| Attempt::Fatal(anyhow::anyhow!(m));
    let mut resp = client.get(url).timeout(time_left).send().map_err(|e| {
        if e.is_redirect() {
            fatal(format!(
                "{url}: a redirect loop (or over 10 redirects): check the release URL"
            ))
        } else if e.is_timeout() {
            fatal(format!(
                "{url}: no answer within {} s: the server is silent; giving up",
                limits.deadline.as_secs()
            ))
        } else {
            Attempt::Retry(e.to_string())
        }
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(fatal(format!(
            "{url}: 404: is the tag right, and does the release hold this file?"
        )));
    }
    if !status.is_success() {
        return Err(Attempt::Retry(format!("the server answered {status}")));
    }
    let html = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("text/html"));
    if html {
        return Err(fatal(html_page(url, name)));
    }
    let expected = resp.content_length();
    if let Some(n) = expected.filter(|&n| n > cap) {
        return Err(fatal(format!(
            "{url}: the server announces {n} bytes; {name} is at most {cap}: refusing it"
        )));
    }
    let mut body = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut floor = RateFloor::new(limits.low_speed, limits.low_speed_window);
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(Attempt::Retry(format!(
                    "the connection was cut after {} bytes: {e}",
                    body.len()
                )))
            }
        };
        if body.len() as u64 + n as u64 > cap {
            return Err(fatal(format!(
                "{url}: more than {cap} bytes; {name} is never that large: refusing it"
            )));
        }
        body.extend_from_slice(&buf[..n]);
        if let Err(rate) = floor.record(n) {
            return Err(fatal(format!(
                "{url}: the server sends {rate:.0} bytes/s, under the {} bytes/s this download needs: giving up after {} bytes",
                limits.low_speed,
                body.len()
            )));
        }
    }
    if expected.is_some_and(|n| n != body.len() as u64) {
        return Err(Attempt::Retry(format!(
            "the connection was cut after {} bytes",
            body.len()
        )));
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(256)]).to_ascii_lowercase();
    if head.trim_start().starts_with("<!doctype html") || head.trim_start().starts_with("<html") {
        return Err(fatal(html_page(url, name)));
    }
    Ok(body)
}

fn html_page(url: &str, name: &str) -> String {
    format!("{url}: the server sent an HTML page instead of {name} (a proxy's login or error page?): check the release URL")
}
