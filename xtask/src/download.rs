//! HTTP downloads with retries, resume, progress and content checks.
//!
//! A file is written to `<dest>.partial` and renamed to `<dest>` only once its size and
//! SHA256 match, so a cut connection or a bad mirror never leaves a file under its final name.

use kc_common::rate::RateFloor;
use kc_common::retry::{self, Backoff, Failure};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("{url}: 404 Not Found")]
    NotFound { url: String },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    Network {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "{file}: SHA256 mismatch: expected {expected}, got {actual}; the download was discarded"
    )]
    Sha256Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: size mismatch: expected {expected} bytes, got {actual}; the download was discarded")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: more than {cap} bytes, more than it can be; refused")]
    TooLarge { url: String, cap: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a download must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub size: u64,
    pub sha256: String,
}

pub struct Downloader {
    client: Client,
    backoff: Backoff,
    /// A mirror slower than this over a window is given up on (and retried).
    floor: (u64, Duration),
}

/// How long a request may take: this, plus the time its body needs at the rate floor.
const DEADLINE_BASE: Duration = Duration::from_secs(120);
/// An index (`Packages.xz`, `Release`) is a few MiB; nothing the lock reads is larger.
const INDEX_CAP: u64 = 256 << 20;

impl Downloader {
    pub fn new() -> Self {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .user_agent(concat!(
                "kernel-collector-xtask/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("building the HTTP client");
        Self {
            client,
            backoff: Backoff::new(5, Duration::from_millis(500)),
            floor: (16 << 10, Duration::from_secs(30)),
        }
    }

    /// For tests: a rate floor over a short window.
    #[cfg(test)]
    pub fn with_floor(mut self, bytes_per_sec: u64, window: Duration) -> Self {
        self.floor = (bytes_per_sec, window);
        self
    }

    /// The deadline of a request whose body is `size` bytes.
    fn deadline(&self, size: u64) -> Duration {
        DEADLINE_BASE + Duration::from_secs(size / self.floor.0.max(1))
    }

    /// Reads the body into `sink` until it ends, at most `cap` bytes, under the rate floor;
    /// returns how many bytes it read.
    fn read_body(
        &self,
        url: &str,
        resp: &mut Response,
        cap: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), Attempt>,
    ) -> Result<u64, Attempt> {
        let mut floor = RateFloor::new(self.floor.0, self.floor.1);
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0u64;
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(read),
                Ok(n) => n,
                Err(e) => {
                    return Err(Attempt::Retry(format!(
                        "connection cut after {read} bytes: {}",
                        error_chain(&e)
                    )))
                }
            };
            read += n as u64;
            if read > cap {
                return Err(Attempt::Fatal(DownloadError::TooLarge {
                    url: url.into(),
                    cap,
                }));
            }
            sink(&buf[..n])?;
            if let Err(rate) = floor.record(n) {
                return Err(Attempt::Retry(format!(
                    "the mirror sent {rate:.0} bytes/s, under {} bytes/s, after {read} bytes",
                    floor.min_bytes_per_sec()
                )));
            }
        }
    }

    /// For tests: no waiting between attempts.
    #[cfg(test)]
    pub fn with_backoff(mut self, first_wait: Duration) -> Self {
        self.backoff.first_wait = first_wait;
        self
    }

    fn retrying<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, DownloadError> {
        self.backoff.run(|_| attempt()).map_err(|f| match f {
            Failure::Fatal(e) => e,
            Failure::GaveUp { attempts, last } => DownloadError::Network {
                url: url.to_string(),
                attempts,
                last,
            },
        })
    }

    fn get(&self, url: &str, from: u64, size: u64) -> Result<Response, Attempt> {
        let mut req = self.client.get(url).timeout(self.deadline(size));
        if from > 0 {
            req = req.header(RANGE, format!("bytes={from}-"));
        }
        let resp = req.send().map_err(|e| Attempt::Retry(error_chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(Attempt::Fatal(DownloadError::NotFound { url: url.into() }));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Retry(format!("server answered {status}")));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(DownloadError::Status {
                url: url.into(),
                status,
            }));
        }
        Ok(resp)
    }

    /// The whole body of a small file (an index), with retries.
    pub fn fetch_bytes(&self, url: &str) -> Result<Vec<u8>, DownloadError> {
        self.retrying(url, || {
            let mut resp = self.get(url, 0, INDEX_CAP)?;
            let expected = resp.content_length();
            let mut body = Vec::new();
            self.read_body(url, &mut resp, INDEX_CAP, |b| {
                body.extend_from_slice(b);
                Ok(())
            })?;
            match expected {
                Some(n) if n != body.len() as u64 => Err(Attempt::Retry(format!(
                    "connection cut after {} of {n} bytes",
                    body.len()
                ))),
                _ => Ok(body),
            }
        })
    }

    /// Downloads `url` to `dest`, resuming a previous `.partial` when the server honours ranges,
    /// then checks size and SHA256. On a mismatch nothing is left behind.
    pub fn fetch_file(
        &self,
        url: &str,
        dest: &Path,
        expected: &Expected,
        label: &str,
    ) -> Result<(), DownloadError> {
        let partial = partial_path(dest);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DownloadError::Io { path, source }
        };
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        // Two processes may fetch the same file into a shared cache (CI jobs on one machine):
        // their `.partial` is one file. One downloads; the other waits here, then finds it.
        let lock = lock_path(dest);
        let _held = DestLock::acquire(&lock).map_err(io_err(&lock))?;
        if is_fetched(dest, expected.size) {
            return Ok(());
        }
        let bar = ProgressBar::new(expected.size).with_message(label.to_string());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:40!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}",
            )
            .expect("progress template"),
        );
        let result = self.retrying(url, || {
            let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            let have = if have > expected.size { 0 } else { have };
            if have == expected.size && have > 0 {
                return Ok(());
            }
            let mut resp = self.get(url, have, expected.size - have)?;
            let resumed = have > 0
                && resp.status() == StatusCode::PARTIAL_CONTENT
                && content_range_starts_at(&resp, have);
            let mut file = if resumed {
                OpenOptions::new().append(true).open(&partial)
            } else {
                File::create(&partial)
            }
            .map_err(|e| Attempt::Fatal(io_err(&partial)(e)))?;
            let start = if resumed { have } else { 0 };
            bar.set_position(start);
            let mut written = start;
            // More than the locked size is an error below: never fill the disk with it.
            self.read_body(url, &mut resp, expected.size - start + 1, |b| {
                file.write_all(b)
                    .map_err(|e| Attempt::Fatal(io_err(&partial)(e)))?;
                written += b.len() as u64;
                bar.set_position(written);
                Ok(())
            })
            .or_else(|e| match e {
                // Kept to be reported as a size mismatch, as before.
                Attempt::Fatal(DownloadError::TooLarge { .. }) => Ok(0),
                other => Err(other),
            })?;
            file.flush()
                .map_err(|e| Attempt::Fatal(io_err(&partial)(e)))?;
            if written < expected.size {
                return Err(Attempt::Retry(format!(
                    "connection cut after {written} of {} bytes",
                    expected.size
                )));
            }
            Ok(())
        });
        bar.finish_and_clear();
        result?;
        let actual_size = fs::metadata(&partial).map_err(io_err(&partial))?.len();
        let file_name = dest
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if actual_size != expected.size {
            let _ = fs::remove_file(&partial);
            return Err(DownloadError::SizeMismatch {
                file: file_name,
                expected: expected.size,
                actual: actual_size,
            });
        }
        let actual = sha256_file(&partial).map_err(io_err(&partial))?;
        if !actual.eq_ignore_ascii_case(&expected.sha256) {
            let _ = fs::remove_file(&partial);
            return Err(DownloadError::Sha256Mismatch {
                file: file_name,
                expected: expected.sha256.clone(),
                actual,
            });
        }
        fs::rename(&partial, dest).map_err(io_err(dest))
    }
}

/// An attempt fails with a reason to retry, or with the error itself.
type Attempt = retry::Attempt<String, DownloadError>;

fn content_range_starts_at(resp: &Response, at: u64) -> bool {
    resp.headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
        == Some(at)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `dest` with `suffix` added to its file name: its partial download, its lock.
fn beside(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dest.with_file_name(name)
}

fn lock_path(dest: &Path) -> PathBuf {
    beside(dest, ".lock")
}

/// An exclusive lock on `<dest>.lock`, removed when released. A waiter that was given the
/// lock of a file its holder removed opens the path again: a lock on a removed file guards
/// nothing.
struct DestLock {
    path: PathBuf,
    _file: File,
}

impl DestLock {
    fn acquire(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            file.lock()?;
            let held = file.metadata()?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(DestLock {
                        path: path.to_path_buf(),
                        _file: file,
                    })
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for DestLock {
    fn drop(&mut self) {
        // Removed while still held; the lock goes with the descriptor right after.
        let _ = fs::remove_file(&self.path);
    }
}

/// Is `dest` a finished download of `size` bytes? Only a verified download is ever renamed
/// to its final name, so its size is enough.
pub fn is_fetched(dest: &Path, size: u64) -> bool {
    fs::metadata(dest).is_ok_and(|m| m.len() == size)
}

pub fn partial_path(dest: &Path) -> PathBuf {
    beside(dest, ".partial")
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_testsrv::{Route, TestServer};

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn dl() -> Downloader {
        Downloader::new().with_backoff(Duration::from_millis(1))
    }

    fn expected(data: &[u8]) -> Expected {
        Expected {
            size: data.len() as u64,
            sha256: sha256_bytes(data),
        }
    }

    /// Serves `data` through `route` and downloads it; returns the server (for its request
    /// log) after checking the file arrived whole and no `.partial` is left.
    fn fetch_whole(data: &[u8], route: Route) -> TestServer {
        let srv = TestServer::start(vec![("/f.deb", route)]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.deb");
        dl().fetch_file(&srv.url("/f.deb"), &dest, &expected(data), "f")
            .unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert!(!partial_path(&dest).exists());
        srv
    }

    #[test]
    fn good_file() {
        let data = body(300_000);
        fetch_whole(&data, Route::ok(data.clone()));
    }

    #[test]
    fn sha256_mismatch_leaves_nothing() {
        let data = body(1000);
        let srv = TestServer::start(vec![("/f.deb", Route::ok(data.clone()))]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.deb");
        let exp = Expected {
            size: 1000,
            sha256: "ab".repeat(32),
        };
        let err = dl()
            .fetch_file(&srv.url("/f.deb"), &dest, &exp, "f")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("f.deb")
                && msg.contains(&"ab".repeat(32))
                && msg.contains(&sha256_bytes(&data)),
            "{msg}"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing may be left in the cache"
        );
    }

    #[test]
    fn cut_connection_resumes_with_range() {
        let data = body(200_000);
        let srv = fetch_whole(&data, Route::ok(data.clone()).cut_first_after(70_000));
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert_eq!(reqs[1].range.as_deref(), Some("bytes=70000-"));
    }

    #[test]
    fn cut_connection_without_range_support_restarts_clean() {
        let data = body(200_000);
        let srv = fetch_whole(
            &data,
            Route::ok(data.clone()).cut_first_after(50_000).no_ranges(),
        );
        assert_eq!(srv.requests().len(), 2);
    }

    #[test]
    fn not_found_is_not_retried() {
        let srv = TestServer::start(vec![]);
        let dir = tempfile::tempdir().unwrap();
        let exp = Expected {
            size: 1,
            sha256: "00".repeat(32),
        };
        let err = dl()
            .fetch_file(&srv.url("/gone.deb"), &dir.path().join("g"), &exp, "g")
            .unwrap_err();
        assert!(matches!(err, DownloadError::NotFound { .. }), "{err}");
        assert_eq!(srv.requests().len(), 1);
        assert_eq!(srv.requests()[0].path, "/gone.deb");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn server_errors_are_retried_then_reported() {
        let srv = TestServer::start(vec![("/f", Route::status(503))]);
        let err = dl().fetch_bytes(&srv.url("/f")).unwrap_err();
        assert!(
            matches!(err, DownloadError::Network { attempts: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("503"));
        assert_eq!(srv.requests().len(), 5);
    }

    #[test]
    fn fetch_bytes_retries_a_cut_body() {
        let data = body(100_000);
        let srv = TestServer::start(vec![("/idx", Route::ok(data.clone()).cut_first_after(10))]);
        assert_eq!(dl().fetch_bytes(&srv.url("/idx")).unwrap(), data);
    }

    /// Processes that fetch the same file into one cache at once: one downloads, the others
    /// wait for it and take its file (before, their writes mixed in one `.partial`).
    #[test]
    fn concurrent_fetches_of_one_file_download_it_once() {
        // About two seconds at a byte a millisecond: the other fetches start meanwhile.
        let data = body(2_000);
        let srv = TestServer::start(vec![(
            "/f.deb",
            Route::ok(data.clone()).trickle(Duration::from_millis(1)),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.deb");
        std::thread::scope(|s| {
            let fetches: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| dl().fetch_file(&srv.url("/f.deb"), &dest, &expected(&data), "f"))
                })
                .collect();
            for f in fetches {
                f.join().unwrap().unwrap();
            }
        });
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert_eq!(srv.requests().len(), 1, "{:?}", srv.requests());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["f.deb"], "no .partial or .lock left");
    }

    /// A mirror that trickles is given up on after one window per attempt, not waited for:
    /// the error names the rate; nothing is left under the final name.
    #[test]
    fn a_trickling_mirror_is_given_up_on() {
        let data = body(5_000);
        let srv = TestServer::start(vec![(
            "/slow.deb",
            Route::ok(data.clone()).trickle(Duration::from_millis(20)),
        )]);
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("slow.deb");
        let t = std::time::Instant::now();
        let e = dl()
            .with_floor(1000, Duration::from_millis(300))
            .fetch_file(&srv.url("/slow.deb"), &dest, &expected(&data), "slow")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bytes/s") && e.contains("gave up after 5 attempts"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(!dest.exists());
    }
}
