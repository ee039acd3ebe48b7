//! A tiny HTTP/1.1 server on 127.0.0.1 for tests: fixed routes, optional `Range` support, a
//! connection cut midway on the first request (retry and resume), and hostile servers: one
//! that trickles its body, one that never answers, one that redirects, one that answers with
//! an HTML page.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone)]
pub struct Route {
    status: u16,
    body: Vec<u8>,
    cut_first_after: Option<usize>,
    cut_always: bool,
    ranges: bool,
    cut_done: Arc<AtomicBool>,
    /// Sends the body one byte at a time, this long apart.
    trickle: Option<std::time::Duration>,
    /// Answers 302 to this location.
    redirect: Option<String>,
    content_type: Option<String>,
    /// Reads the request and never answers (the connection stays open this long).
    silent: Option<std::time::Duration>,
}

impl Route {
    pub fn ok(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            body,
            cut_first_after: None,
            cut_always: false,
            ranges: true,
            cut_done: Arc::new(AtomicBool::new(false)),
            trickle: None,
            redirect: None,
            content_type: None,
            silent: None,
        }
    }
    /// Accepts the request and says nothing for `hold`, then closes (a hung server).
    pub fn silent(hold: std::time::Duration) -> Self {
        Self {
            silent: Some(hold),
            ..Self::ok(Vec::new())
        }
    }
    /// The body goes out one byte per `gap` (a server that never quite stops).
    pub fn trickle(mut self, gap: std::time::Duration) -> Self {
        self.trickle = Some(gap);
        self
    }
    /// `302 Found` to `location`.
    pub fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            redirect: Some(location.to_string()),
            ..Self::ok(Vec::new())
        }
    }
    pub fn content_type(mut self, t: &str) -> Self {
        self.content_type = Some(t.to_string());
        self
    }
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::ok(Vec::new())
        }
    }
    /// The first response sends this many body bytes, then closes the connection.
    pub fn cut_first_after(mut self, n: usize) -> Self {
        self.cut_first_after = Some(n);
        self
    }
    /// Every response is cut after this many body bytes (a download that never completes).
    pub fn cut_always_after(mut self, n: usize) -> Self {
        self.cut_first_after = Some(n);
        self.cut_always = true;
        self
    }
    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct TestServer {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    pub fn start(routes: Vec<(&str, Route)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let routes: Arc<HashMap<String, Route>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                let log = log2.clone();
                thread::spawn(move || serve(stream, &routes, &log));
            }
        });
        Self { addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, routes: &HashMap<String, Route>, log: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        log.lock().unwrap().push(Request {
            path: path.clone(),
            range: range.clone(),
        });
        let Some(route) = routes.get(&path) else {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
            continue;
        };
        if let Some(hold) = route.silent {
            thread::sleep(hold);
            return;
        }
        if let Some(to) = &route.redirect {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n"
            );
            continue;
        }
        if route.status != 200 {
            let _ = write!(
                stream,
                "HTTP/1.1 {} Status\r\ncontent-length: 0\r\n\r\n",
                route.status
            );
            continue;
        }
        let start = range
            .as_deref()
            .filter(|_| route.ranges)
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
            .filter(|&s| s < route.body.len());
        let (head, body) = match start {
            Some(s) => (
                format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {}-{}/{}\r\n\r\n",
                    route.body.len() - s,
                    s,
                    route.body.len() - 1,
                    route.body.len()
                ),
                &route.body[s..],
            ),
            None => (format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", route.body.len()), &route.body[..]),
        };
        let head = match &route.content_type {
            Some(t) => head.replacen("\r\n", &format!("\r\ncontent-type: {t}\r\n"), 1),
            None => head,
        };
        let _ = stream.write_all(head.as_bytes());
        if let Some(gap) = route.trickle {
            for b in body {
                if stream
                    .write_all(&[*b])
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                thread::sleep(gap);
            }
            continue;
        }
        if let Some(n) = route.cut_first_after {
            if route.cut_always || !route.cut_done.swap(true, Ordering::SeqCst) {
                let _ = stream.write_all(&body[..n.min(body.len())]);
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        let _ = stream.write_all(body);
    }
}
