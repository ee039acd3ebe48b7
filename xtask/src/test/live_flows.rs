//! The connections collector's live flows on this host against the kernel's own view of the
//! same sockets (`ss -tin`): a TCP connection this check opens while kc-loader runs, still open
//! when kc-loader has read its table, must be there ESTABLISHED at both ends, owned by this
//! process, with the bytes and segments each way and the retransmits `ss` shows.
//!
//! A row's counts are the socket's own fields as of its last send or receive (connections.bpf.h:
//! `kc_flow_counts`); so, once the exchange's last ACKs have passed, each end reads once more
//! (nothing there: EAGAIN, still a receive) and no packet moves after.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kc_common::flow::{Flow, FlowDirection, FlowProtocol, TcpState};
use kc_common::report::LoaderReport;
use kc_common::CellId;
use xshell::cmd;

use super::host::needs_root;
use super::Verdict;
use crate::compile::cell;
use crate::paths::cell_dir;
use crate::{host, process};

const CLIENT_SENDS: usize = 4096;
const SERVER_SENDS: usize = 16;
/// Longer than every wait here: the loader's start, the exchange, its exit.
const BOUND: Duration = Duration::from_secs(60);

/// One socket as `ss -tinHO` prints it: its two ends and the counts its tcp_info gives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SsSocket {
    state: String,
    local: SocketAddr,
    peer: SocketAddr,
    bytes_sent: u64,
    bytes_received: u64,
    segs_out: u64,
    segs_in: u64,
    retransmits: u64,
}

/// A line of `ss -tinHO` (state, queues, local, peer, then `name:value` fields; ss leaves out
/// a byte count that is 0, and `retrans:` (now/total) unless one happened).
fn parse_ss_line(line: &str) -> Result<SsSocket> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [state, _recv_q, _send_q, local, peer, fields @ ..] = &words[..] else {
        bail!("`ss` printed a line without its two ends: {line:?}");
    };
    let end = |s: &str| -> Result<SocketAddr> {
        s.replace(['[', ']'], "")
            .rsplit_once(':')
            .and_then(|(a, p)| Some(SocketAddr::new(a.parse().ok()?, p.parse().ok()?)))
            .with_context(|| format!("`ss` printed {s:?} for a socket's end in {line:?}"))
    };
    let field = |name: &str| -> Result<u64> {
        let Some(v) = fields.iter().find_map(|f| f.strip_prefix(name)) else {
            return Ok(0);
        };
        let v = if name == "retrans:" {
            v.rsplit('/').next().unwrap_or(v)
        } else {
            v
        };
        v.parse()
            .with_context(|| format!("`ss` printed {name}{v} in {line:?}"))
    };
    Ok(SsSocket {
        state: state.to_string(),
        local: end(local)?,
        peer: end(peer)?,
        bytes_sent: field("bytes_sent:")?,
        bytes_received: field("bytes_received:")?,
        segs_out: field("segs_out:")?,
        segs_in: field("segs_in:")?,
        retransmits: field("retrans:")?,
    })
}

/// Each fault of `flow` (the table's row of the socket `ss` shows as `ss`), owned by `owner`.
fn judge_flow(name: &str, flow: Option<&Flow>, ss: &SsSocket, owner: u32) -> Vec<String> {
    let Some(f) = flow else {
        return vec![format!(
            "the {name} end ({} -> {}) has no row in the flow table",
            ss.local, ss.peer
        )];
    };
    let mut wrong = Vec::new();
    if f.state != TcpState::Established {
        wrong.push(format!(
            "the {name} flow is {}, ss shows it ESTABLISHED",
            f.state
        ));
    }
    if f.owner.as_ref().map(|o| o.tgid) != Some(owner) {
        wrong.push(format!(
            "the {name} flow's owner is {:?}, expected this process ({owner})",
            f.owner.as_ref().map(|o| o.tgid)
        ));
    }
    let Some(c) = &f.counts else {
        wrong.push(format!(
            "the {name} flow has no counts (a CO-RE object reads them)"
        ));
        return wrong;
    };
    let ours = (
        c.bytes_sent,
        c.bytes_received,
        c.segs_out,
        c.segs_in,
        c.retransmits,
    );
    let kernel = (
        ss.bytes_sent,
        ss.bytes_received,
        ss.segs_out,
        ss.segs_in,
        ss.retransmits,
    );
    if ours != kernel {
        wrong.push(format!(
            "the {name} flow's bytes sent, received, segments out, in and retransmits are {ours:?}, ss shows {kernel:?}"
        ));
    }
    wrong
}

/// The row of the socket from `local` to `peer` in the report's (one object's) table.
fn row_of(report: &LoaderReport, local: SocketAddr, peer: SocketAddr) -> Option<&Flow> {
    report.objects.first()?.flows.iter().flatten().find(|f| {
        f.protocol == FlowProtocol::Tcp
            && (f.saddr, f.sport, f.daddr, f.dport)
                == (local.ip(), local.port(), peer.ip(), peer.port())
    })
}

/// Both ends of a loopback connection to a listener on `listen`, with what the check moves over it: the client sends
/// CLIENT_SENDS bytes, the server answers SERVER_SENDS. Then, the last ACKs passed, each end
/// receives once more (EAGAIN): its row's counts are read last after every packet.
fn exchange(listen: &str) -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(BOUND))?;
    }
    (&client).write_all(&[7; CLIENT_SENDS])?;
    (&server).read_exact(&mut [0; CLIENT_SENDS])?;
    (&server).write_all(&[7; SERVER_SENDS])?;
    (&client).read_exact(&mut [0; SERVER_SENDS])?;
    // A delayed ACK leaves within 40 ms to 200 ms (loopback acks at once in quick-ack mode).
    std::thread::sleep(Duration::from_millis(500));
    for mut s in [&client, &server] {
        s.set_nonblocking(true)?;
        match s.read(&mut [0; 1]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => bail!("a receive on the quiet connection returned {other:?}, not EAGAIN"),
        }
    }
    Ok((client, server))
}

/// Waits until `path` holds a line, or `loader` has ended, or BOUND has passed (the loader
/// then killed; its output is in `log`).
fn wait_for_line(path: &Path, loader: &mut Child, log: &Path) -> Result<()> {
    let started = Instant::now();
    while !std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n')) {
        if started.elapsed() > BOUND || loader.try_wait()?.is_some() {
            let _ = loader.kill();
            let _ = loader.wait();
            bail!(
                "kc-loader never started its workload:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The loader's exit, within BOUND (else it is killed).
fn wait_bounded(loader: &mut Child) -> Result<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = loader.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > BOUND {
            let _ = loader.kill();
            let _ = loader.wait();
            bail!(
                "kc-loader still ran {} s after its workload's end",
                BOUND.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The faults of the flow table's rows of one connection (`client`, `server`: its ends, still
/// open) against `ss`, and what the two agreed on.
fn judge_connection(
    report: &LoaderReport,
    client: &TcpStream,
    server: &TcpStream,
) -> Result<(Vec<String>, String)> {
    let (client_end, server_end) = (client.local_addr()?, server.local_addr()?);
    let sh = process::shell();
    let port = server_end.port().to_string();
    let listed = process::read(cmd!(sh, "ss -tinHO ( sport = :{port} or dport = :{port} )"))?;
    let sockets = listed
        .lines()
        .map(parse_ss_line)
        .collect::<Result<Vec<_>>>()?;
    let ss_of = |local: SocketAddr| {
        sockets
            .iter()
            .find(|s| s.local == local)
            .with_context(|| format!("`ss` does not show the socket at {local}:\n{listed}"))
    };
    let (client_ss, server_ss) = (ss_of(client_end)?, ss_of(server_end)?);
    ensure!(
        client_ss.state == "ESTAB" && server_ss.state == "ESTAB",
        "`ss` shows the connection's ends {} and {}, not ESTAB",
        client_ss.state,
        server_ss.state
    );
    // ss reads what this check moved, or it is not reading these sockets.
    ensure!(
        (client_ss.bytes_sent, server_ss.bytes_sent) == (CLIENT_SENDS as u64, SERVER_SENDS as u64),
        "`ss` shows {} and {} bytes sent, the check sent {CLIENT_SENDS} and {SERVER_SENDS}",
        client_ss.bytes_sent,
        server_ss.bytes_sent
    );
    let me = std::process::id();
    let direction = |s: &SsSocket| row_of(report, s.local, s.peer).map(|f| f.direction);
    let mut wrong = judge_flow(
        "client",
        row_of(report, client_end, server_end),
        client_ss,
        me,
    );
    wrong.extend(judge_flow(
        "server",
        row_of(report, server_end, client_end),
        server_ss,
        me,
    ));
    if direction(client_ss) != Some(FlowDirection::Connect)
        || direction(server_ss) != Some(FlowDirection::Accept)
    {
        wrong.push(format!(
            "the flows' directions are {:?} and {:?}, expected connect and accept",
            direction(client_ss),
            direction(server_ss)
        ));
    }
    let agreed = format!(
        "live flows agree with ss ({client_end} -> {server_end}): client {} bytes out, {} in, {} segments out, {} in; server {} bytes out, {} in, {} segments out, {} in",
        client_ss.bytes_sent,
        client_ss.bytes_received,
        client_ss.segs_out,
        client_ss.segs_in,
        server_ss.bytes_sent,
        server_ss.bytes_received,
        server_ss.segs_out,
        server_ss.segs_in
    );
    Ok((wrong, agreed))
}

pub fn live_flows() -> Result<Verdict> {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let cell = cell_dir(CellId::core(host::host_libc()));
    let scratch = tempfile::tempdir()?;
    let (started, done) = (scratch.path().join("started"), scratch.path().join("done"));
    // Files, not pipes: nothing need drain them while the check waits.
    let (report_file, log) = (
        scratch.path().join("report.json"),
        scratch.path().join("log"),
    );
    // The workload says it runs (the programs are attached), then waits for this check's
    // exchange (at most BOUND, in naps of 50 ms), so the connection is made while the loader
    // watches.
    let workload = format!(
        "echo $$ > {}; i=0; while [ ! -e {} ] && [ $i -lt {} ]; do sleep 0.05; i=$((i + 1)); done",
        started.display(),
        done.display(),
        BOUND.as_millis() / 50
    );
    let mut loader = std::process::Command::new(cell.join(cell::LOADER))
        .args(["--json", "--attach", "auto"])
        .arg(cell.join("connections.bpf.o"))
        .args(["--", "sh", "-c", &workload])
        .stdout(std::fs::File::create(&report_file)?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting kc-loader")?;
    wait_for_line(&started, &mut loader, &log)?;
    let exchanged: Result<Vec<_>> = ["127.0.0.1:0", "[::1]:0"]
        .into_iter()
        .map(exchange)
        .collect();
    std::fs::write(&done, "")?;
    let connections = match exchanged {
        Ok(connections) => connections,
        Err(e) => {
            let _ = loader.kill();
            let _ = loader.wait();
            return Err(e.context("the exchange on loopback"));
        }
    };
    let status = wait_bounded(&mut loader)?;
    let text = std::fs::read_to_string(&report_file)?;
    ensure!(
        status.success(),
        "kc-loader failed ({status}):\n{}",
        std::fs::read_to_string(&log)?
    );
    crate::schema::validate_reports(&text)?;
    let report: LoaderReport = serde_json::from_str(&text).context("kc-loader's report")?;
    let mut wrong = Vec::new();
    for (client, server) in &connections {
        let (faults, agreed) = judge_connection(&report, client, server)?;
        if faults.is_empty() {
            eprintln!("e2e: {agreed}");
        }
        wrong.extend(faults);
    }
    drop(connections);
    ensure!(
        wrong.is_empty(),
        "the flow table disagrees with the kernel's own view (ss):\n{}",
        wrong.join("\n")
    );
    Ok(Verdict::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ss_line_gives_its_ends_and_counts() {
        let line =
            "ESTAB 0 0 127.0.0.1:40000 127.0.0.1:5000 cubic wscale:7,7 rto:201 rtt:0.05/0.025 \
                    bytes_sent:4096 bytes_acked:4097 bytes_received:16 segs_out:5 segs_in:4 \
                    data_segs_out:1 retrans:0/2 rcv_space:65483";
        assert_eq!(
            parse_ss_line(line).unwrap(),
            SsSocket {
                state: "ESTAB".into(),
                local: "127.0.0.1:40000".parse().unwrap(),
                peer: "127.0.0.1:5000".parse().unwrap(),
                bytes_sent: 4096,
                bytes_received: 16,
                segs_out: 5,
                segs_in: 4,
                retransmits: 2,
            }
        );
        // IPv6 ends, and counts ss leaves out because they are 0.
        let s =
            parse_ss_line("ESTAB 0 0 [::1]:40000 [::1]:5000 cubic segs_out:2 segs_in:1").unwrap();
        assert_eq!((s.local.port(), s.bytes_sent, s.retransmits), (40000, 0, 0));
        assert!(parse_ss_line("ESTAB 0 0").is_err());
        assert!(parse_ss_line("ESTAB 0 0 a:b c:d").is_err());
        assert!(parse_ss_line("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 bytes_sent:x").is_err());
    }

    #[test]
    fn a_row_that_lags_the_kernel_is_named() {
        let ss =
            parse_ss_line("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 bytes_sent:4096 segs_out:5 segs_in:4")
                .unwrap();
        let flow: Flow = serde_json::from_value(serde_json::json!({
            "family": "ipv4", "saddr": "127.0.0.1", "sport": 1, "daddr": "127.0.0.1", "dport": 2,
            "state": "ESTABLISHED", "direction": "connect", "first_ns": 1, "last_ns": 2,
            "owner": {"tgid": 9, "cgroup": 1, "comm": "xtask"},
            "counts": {"bytes_sent": 4096, "bytes_received": 0, "segs_out": 4, "segs_in": 4, "retransmits": 0}}))
        .unwrap();
        assert_eq!(
            judge_flow("client", Some(&flow), &ss, 9),
            ["the client flow's bytes sent, received, segments out, in and retransmits are (4096, 0, 4, 4, 0), ss shows (4096, 0, 5, 4, 0)"]
        );
        assert_eq!(judge_flow("client", Some(&flow), &ss, 8).len(), 2);
        assert_eq!(
            judge_flow("server", None, &ss, 9),
            ["the server end (127.0.0.1:1 -> 127.0.0.1:2) has no row in the flow table"]
        );
    }
}
