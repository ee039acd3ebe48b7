//! `kc-exporter`: an installed release's collectors as a Prometheus exporter. The objects
//! kc-select chooses for this kernel are loaded and attached through kc-agent (families per
//! event, the ctrl map set) and stay attached; each scrape of `/metrics` reads their maps.
//! SIGTERM and SIGINT detach everything and end it; SIGHUP re-reads the flags file.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kc_agent::{Options, Release, TableSizes};
use kc_common::report::{LoaderReport, MapReads};
use kc_exporter::collect;
use kc_exporter::exposition::{self, Family, Value};
use kc_exporter::flags::Flags;
use kc_exporter::labels::Host;
use kc_exporter::metrics::{self, Scrape, State};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let flags = match Flags::parse(&args) {
        Ok(f) => f,
        Err(e) => match e.downcast_ref::<clap::Error>() {
            Some(c) => c.exit(),
            None => fail(&e),
        },
    };
    if let Err(e) = run(&args, flags) {
        fail(&e);
    }
}

fn fail(e: &anyhow::Error) -> ! {
    eprintln!("kc-exporter: error: {e:#}");
    std::process::exit(1);
}

/// Why serving one configuration ended.
enum End {
    Stop,
    Reload(Flags),
}

/// Signals noted by their handlers, acted on by the serving loop.
struct Signals {
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

fn run(args: &[OsString], mut flags: Flags) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("kc-exporter loads BPF programs: run it as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)");
    }
    let signals = Signals {
        stop: Arc::new(AtomicBool::new(false)),
        hangup: Arc::new(AtomicBool::new(false)),
    };
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&signals.stop))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&signals.hangup))?;
    // Bound first: a port in use is refused before anything is loaded.
    let server = tiny_http::Server::http(flags.listen).map_err(|e| {
        anyhow!(
            "listening on {}: {e}: is another exporter on that port? Pass --listen ADDR:PORT",
            flags.listen
        )
    })?;
    let mut state = State::default();
    loop {
        match serve(args, &flags, &server, &signals, &mut state)? {
            End::Stop => return Ok(()),
            End::Reload(new) => {
                eprintln!(
                    "kc-exporter: SIGHUP: loading the objects again with the flags file's changes"
                );
                flags = new;
                state.reattached();
            }
        }
    }
}

/// Serves one configuration: selects, loads and attaches, then answers scrapes until a signal.
fn serve(
    args: &[OsString],
    flags: &Flags,
    server: &tiny_http::Server,
    signals: &Signals,
    state: &mut State,
) -> Result<End> {
    let release = collect::release_dir(flags);
    let (kernel, selections) = collect::select(flags, &release)?;
    let dirs = collect::by_directory(&selections);
    let releases: Vec<(Release, &Vec<String>)> = dirs
        .iter()
        .map(|(dir, objects)| {
            let path = release.join(dir);
            Release::open(&path)
                .with_context(|| {
                    format!("reading the release's {dir} objects ({})", path.display())
                })
                .map(|r| (r, objects))
        })
        .collect::<Result<_>>()?;
    let table_size = collect::table_rows(flags);
    let mut loaded: Vec<_> = releases
        .iter()
        .map(|(r, objects)| {
            let sizes = TableSizes {
                apps: table_size,
                flows: None,
            };
            r.load(objects, sizes)
        })
        .collect();
    let options = Options {
        attach: flags.attach,
        group_by: flags.group_by,
        map_reads: MapReads::Batch,
        // Exits come with their final rows at each scrape, never walked in the tables.
        streams: kc_common::plan::Streams::On,
    };
    let mut sessions = Vec::new();
    for objects in &mut loaded {
        sessions.push(objects.attach(&options)?);
    }
    let mut host = Host::new();
    // The first read tells whether anything serves at all.
    let first: Vec<LoaderReport> = sessions
        .iter_mut()
        .map(|s| s.snapshot())
        .collect::<Result<_>>()?;
    let up: Vec<&str> = first
        .iter()
        .flat_map(|r| &r.objects)
        .filter(|o| metrics::serving(o))
        .map(|o| o.object.as_str())
        .collect();
    if up.is_empty() {
        let why: Vec<String> = first
            .iter()
            .flat_map(|r| &r.objects)
            .map(|o| format!("{}: {}", o.object, o.error))
            .collect();
        bail!(
            "no object loaded and attached on kernel {kernel}: {}",
            why.join(" | ")
        );
    }
    eprintln!(
        "kc-exporter: kernel {kernel}: {} objects attached ({}); serving http://{}/metrics",
        up.len(),
        up.join(" "),
        flags.listen
    );
    let mut current = flags.clone();
    loop {
        if signals.stop.load(Ordering::Relaxed) {
            return Ok(End::Stop);
        }
        if signals.hangup.swap(false, Ordering::Relaxed) {
            match Flags::parse(args) {
                Err(e) => eprintln!("kc-exporter: SIGHUP: the flags file is refused, the old flags stay: {e:#}"),
                Ok(new) if new.listen != flags.listen => eprintln!(
                    "kc-exporter: SIGHUP: --listen changed ({} -> {}): that needs a restart; nothing else changed",
                    flags.listen, new.listen
                ),
                Ok(new) if current.reload_needed(&new) => return Ok(End::Reload(new)),
                Ok(new) => {
                    eprintln!("kc-exporter: SIGHUP: flags read again (max series {})", new.max_series);
                    current = new;
                }
            }
        }
        let Some(request) = server.recv_timeout(Duration::from_millis(200))? else {
            continue;
        };
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => {
                let accept = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str().to_string());
                let format = exposition::Format::accepted(accept.as_deref());
                match scrape(
                    &mut sessions,
                    state,
                    &selections,
                    &current,
                    &mut host,
                    format,
                ) {
                    Ok(text) => text_response(200, format.content_type(), text),
                    Err(e) => {
                        eprintln!("kc-exporter: a scrape failed: {e:#}");
                        text_response(500, "text/plain; charset=utf-8", format!("{e:#}\n"))
                    }
                }
            }
            (tiny_http::Method::Get, "/") => text_response(
                200,
                "text/plain; charset=utf-8",
                "kc-exporter: the metrics are at /metrics\n".into(),
            ),
            (tiny_http::Method::Get, _) => text_response(
                404,
                "text/plain; charset=utf-8",
                "not found: try /metrics\n".into(),
            ),
            _ => text_response(405, "text/plain; charset=utf-8", "only GET\n".into()),
        };
        // A client that does not read its answer holds up its own thread, not the scrapes.
        std::thread::spawn(move || {
            let _ = request.respond(response);
        });
    }
}

/// One scrape: every object's maps read while attached, as text of `format`.
fn scrape(
    sessions: &mut [kc_agent::Session<'_, '_>],
    state: &mut State,
    selections: &[kc_common::select::Selection],
    flags: &Flags,
    host: &mut Host,
    format: exposition::Format,
) -> Result<String> {
    let started = Instant::now();
    let reports: Vec<LoaderReport> = sessions
        .iter_mut()
        .map(|s| s.snapshot())
        .collect::<Result<_>>()?;
    host.next_scrape();
    let mut families = metrics::families(
        state,
        &Scrape {
            reports: &reports,
            selections,
            group_by: flags.group_by,
            max_series: flags.max_series,
        },
        host,
    );
    families.push(
        Family::new(
            "kc_exporter_scrape_duration_seconds",
            "Time this scrape spent reading the maps and building the metrics.",
        )
        .with(&[], Value::Gauge(started.elapsed().as_secs_f64())),
    );
    Ok(exposition::encode(families, format))
}

fn text_response(
    status: u16,
    content_type: &str,
    body: String,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header =
        tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}
