//! A stand-in for GitHub's releases API on 127.0.0.1, for tests and `cargo xtask rehearse`
//! only (GitHub itself cannot be reached from here). It speaks the few endpoints `publish`
//! uses, for any `owner/name`, checks the bearer token, and can be told to fail an upload
//! midway or to refuse the token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRelease {
    pub id: u64,
    pub repo: String,
    pub tag: String,
    pub draft: bool,
    /// (asset id, name, bytes)
    pub assets: Vec<(u64, String, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    token: String,
    releases: Vec<FakeRelease>,
    fail_upload_of: Option<String>,
    bad_token: bool,
}

pub struct FakeGithub {
    state: Arc<Mutex<State>>,
    url: String,
}

impl FakeGithub {
    /// Starts the server; requests must carry `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            ..Default::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state, port));
            }
        });
        Ok(Self {
            state,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The API's base URL (what `GITHUB_API_URL` holds on GitHub).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next upload of `name` stores half of it, then fails.
    #[cfg(test)]
    pub fn fail_upload_of(&self, name: &str) {
        self.state.lock().expect("fake state").fail_upload_of = Some(name.to_string());
    }

    /// Every request from now on is refused with 401.
    #[cfg(test)]
    pub fn refuse_token(&self) {
        self.state.lock().expect("fake state").bad_token = true;
    }

    pub fn releases(&self) -> Vec<FakeRelease> {
        self.state.lock().expect("fake state").releases.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, port: u16) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
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
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "authorization" => auth = v.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = handle(state, &method, &target, &auth, body, port);
        let _ = write!(
            w,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
    }
}

fn release_json(r: &FakeRelease, port: u16) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "tag_name": r.tag,
        "upload_url": format!("http://127.0.0.1:{port}/uploads/{}/assets{{?name,label}}", r.id),
        "assets": r.assets.iter().map(|(aid, n, b)| serde_json::json!({
            "id": aid, "name": n, "size": b.len(), "state": "uploaded",
            "digest": format!("sha256:{}", kc_common::release::sha256_hex(b)),
        })).collect::<Vec<_>>(),
    })
}

/// `/repos/<owner>/<name>/<rest>` split into the repository and the rest.
fn repo_path(target: &str) -> Option<(String, &str)> {
    let rest = target.strip_prefix("/repos/")?;
    let mut it = rest.splitn(3, '/');
    let (owner, name, tail) = (it.next()?, it.next()?, it.next()?);
    Some((format!("{owner}/{name}"), tail))
}

fn handle(
    state: &Mutex<State>,
    method: &str,
    target: &str,
    auth: &str,
    body: Vec<u8>,
    port: u16,
) -> (u16, String) {
    let mut s = state.lock().expect("fake state");
    if auth != format!("Bearer {}", s.token) || s.bad_token {
        return (401, r#"{"message":"Bad credentials"}"#.into());
    }
    let not_found = (404, r#"{"message":"Not Found"}"#.to_string());
    if method == "POST" && target.starts_with("/uploads/") {
        let mut it = target.split('/');
        let id: u64 = match it.nth(2).and_then(|i| i.parse().ok()) {
            Some(id) => id,
            None => return not_found,
        };
        let name = target.split("name=").nth(1).unwrap_or("").to_string();
        let fail = s.fail_upload_of.as_deref() == Some(name.as_str());
        let Some(r) = s.releases.iter_mut().find(|r| r.id == id) else {
            return not_found;
        };
        let aid = 100 + id * 1000 + r.assets.len() as u64;
        if fail {
            // Fails midway: half the asset is stored, then the API errors.
            r.assets.push((aid, name, body[..body.len() / 2].to_vec()));
            s.fail_upload_of = None;
            return (400, r#"{"message":"upload interrupted"}"#.into());
        }
        r.assets.push((aid, name, body));
        return (201, "{}".into());
    }
    let Some((repo, tail)) = repo_path(target) else {
        return not_found;
    };
    if method == "GET" && tail.starts_with("releases?") {
        if !tail.ends_with("page=1") {
            return (200, "[]".into());
        }
        let list: Vec<_> = s
            .releases
            .iter()
            .filter(|r| r.repo == repo)
            .map(|r| release_json(r, port))
            .collect();
        return (200, serde_json::Value::from(list).to_string());
    }
    if method == "POST" && tail == "releases" {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (422, r#"{"message":"Problems parsing JSON"}"#.into());
        };
        let r = FakeRelease {
            id: s.releases.len() as u64 + 1,
            repo,
            tag: v["tag_name"].as_str().unwrap_or("").into(),
            draft: v["draft"].as_bool().unwrap_or(false),
            assets: vec![],
        };
        let reply = release_json(&r, port).to_string();
        s.releases.push(r);
        return (201, reply);
    }
    if method == "DELETE" && tail.starts_with("releases/assets/") {
        let aid: u64 = tail
            .rsplit('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        for r in s.releases.iter_mut().filter(|r| r.repo == repo) {
            r.assets.retain(|(a, _, _)| *a != aid);
        }
        return (204, String::new());
    }
    not_found
}
