//! The workload's TCP round trip (`sockets` in co-re/tests/kc-vmtest-init.c) as a flow table
//! must report it: one flow its connect made and one its listener's child, each other's mirror,
//! both closed, with the workload as owner wherever an event the object observed ran in its
//! context, and the kernel's own counts where the object reads them (CO-RE only). Closed, each
//! is in the close stream with its row (where the stream's event was observed), else in the
//! table as a closed row.

use kc_common::flow::{Flow, FlowDirection, TcpState};
use kc_common::report::ObjectReport;

/// What the round trip moves: the client writes 4096 bytes, the server answers 16. A peer's
/// FIN counts one byte received (tcp_sock.bytes_received follows rcv_nxt, which the FIN
/// advances), and every flow the workload closes has received its peer's: it reaches CLOSE
/// through TIME_WAIT or LAST_ACK, each after that FIN.
const CLIENT_SENDS: u64 = 4096;
const SERVER_SENDS: u64 = 16;

/// Whether the object observed `event` (any family).
fn observes(object: &ObjectReport, event: &str) -> bool {
    object
        .events
        .iter()
        .any(|e| e.event == event && e.family.is_some())
}

/// Every fault of the connections collector's flows in `object`, whose file is a CO-RE object
/// or not (`core`).
pub fn judge(object: &ObjectReport, workload: Option<u32>, core: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    if !observes(object, "kc_connections_state") {
        return wrong;
    }
    let streamed = observes(object, "kc_connections_stream");
    let closes: Vec<&Flow> = object.closes().map(|c| &c.flow).collect();
    let table: Vec<&Flow> = object.flows.iter().flatten().collect();
    let (held, elsewhere, place) = if streamed {
        (&closes, &table, "the close stream")
    } else {
        (&table, &closes, "the table")
    };
    if object.closes().any(|c| !c.had_row) {
        wrong.push("a close record without its row: the table never held that flow".into());
    }
    let find = |d: FlowDirection| -> Vec<&Flow> {
        held.iter().copied().filter(|f| f.direction == d).collect()
    };
    let (connects, accepts) = (find(FlowDirection::Connect), find(FlowDirection::Accept));
    let [client] = connects[..] else {
        wrong.push(format!(
            "{} connect flows in {place}, expected 1: {:?}",
            connects.len(),
            connects.iter().map(|f| f.tuple()).collect::<Vec<_>>()
        ));
        return wrong;
    };
    let [server] = accepts[..] else {
        wrong.push(format!(
            "{} accepted flows in {place}, expected 1",
            accepts.len()
        ));
        return wrong;
    };
    if elsewhere
        .iter()
        .any(|f| f.tuple() == client.tuple() || f.tuple() == server.tuple())
    {
        wrong.push(format!("a flow of the round trip is outside {place} too"));
    }
    if (client.sport, client.dport, client.saddr, client.daddr)
        != (server.dport, server.sport, server.daddr, server.saddr)
    {
        wrong.push(format!(
            "the connect flow {} is not the accepted flow {} seen from the other end",
            client.tuple(),
            server.tuple()
        ));
    }
    // The accepted flow's owner is known where the accept, or a send or receive, was seen.
    let server_owned =
        observes(object, "kc_connections_accept") || observes(object, "kc_connections_io");
    for (name, f, owned, sent, received) in [
        ("connect", client, true, CLIENT_SENDS, SERVER_SENDS),
        ("accepted", server, server_owned, SERVER_SENDS, CLIENT_SENDS),
    ] {
        if f.state != TcpState::Close {
            wrong.push(format!(
                "the {name} flow is {}, the workload closed it",
                f.state
            ));
        }
        if f.first_ns > f.last_ns {
            wrong.push(format!(
                "the {name} flow was last seen before it was first seen"
            ));
        }
        match (&f.owner, owned) {
            (Some(o), true) if Some(o.tgid) == workload => {}
            (None, false) => {}
            (o, _) => wrong.push(format!(
                "the {name} flow's owner is {:?}, expected {}",
                o.as_ref().map(|o| o.tgid),
                if owned {
                    "the workload"
                } else {
                    "none (no event in its context observed)"
                }
            )),
        }
        match (&f.counts, core) {
            (Some(c), true) => {
                if (c.bytes_sent, c.bytes_received, c.retransmits) != (sent, received + 1, 0) {
                    wrong.push(format!(
                        "the {name} flow sent {} and received {} bytes with {} retransmits, expected {sent}, {} (the FIN's byte) and 0",
                        c.bytes_sent, c.bytes_received, c.retransmits, received + 1
                    ));
                }
                if c.segs_out < 2 || c.segs_in < 2 {
                    wrong.push(format!(
                        "the {name} flow's segments ({} out, {} in) are fewer than its handshake and data",
                        c.segs_out, c.segs_in
                    ));
                }
            }
            (None, false) => {}
            (c, _) => wrong.push(format!(
                "the {name} flow's counts are {}, expected {} (only CO-RE objects read them)",
                if c.is_some() { "there" } else { "absent" },
                if core { "there" } else { "absent" }
            )),
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::{json, Value};

    fn flow(
        direction: &str,
        sport: u16,
        dport: u16,
        owner: Option<u32>,
        counts: Option<(u64, u64)>,
    ) -> Value {
        json!({"family": "ipv4", "saddr": "127.0.0.1", "sport": sport, "daddr": "127.0.0.1",
               "dport": dport, "state": "CLOSE", "direction": direction, "first_ns": 1, "last_ns": 2,
               "owner": owner.map(|t| json!({"tgid": t, "cgroup": 1, "comm": "init"})),
               "counts": counts.map(|(s, r)| json!({"bytes_sent": s, "bytes_received": r,
                   "segs_out": 4, "segs_in": 4, "retransmits": 0}))})
    }

    fn object(events: &[&str], closes: Vec<Value>, table: Vec<Value>) -> ObjectReport {
        let closes: Vec<Value> = closes
            .into_iter()
            .map(|f| json!({"had_row": true, "flow": f}))
            .collect();
        let events: Vec<Value> = events
            .iter()
            .map(|e| json!({"event": e, "family": "tracepoint"}))
            .collect();
        report(json!({"workload_pid": 7, "objects": [{
            "object": "connections.bpf.o", "status": "ok", "events": events, "flows": table,
            "streams": {"connections_closed": {"record": "kc_flow_close", "received": closes.len(),
                "bytes": 0, "malformed": 0, "rows": closes.len(), "not_listed": 0, "closes": closes}}}]}))
        .objects
        .remove(0)
    }

    const ALL: &[&str] = &[
        "kc_connections_state",
        "kc_connections_stream",
        "kc_connections_accept",
    ];

    #[test]
    fn the_round_trip_passes_in_the_stream_and_in_the_table() {
        let pair = || {
            vec![
                flow("connect", 5, 6, Some(7), Some((4096, 17))),
                flow("accept", 6, 5, Some(7), Some((16, 4097))),
            ]
        };
        assert_eq!(
            judge(&object(ALL, pair(), vec![]), Some(7), true),
            Vec::<String>::new()
        );
        let no_stream = &["kc_connections_state", "kc_connections_accept"];
        assert_eq!(
            judge(&object(no_stream, vec![], pair()), Some(7), true),
            Vec::<String>::new()
        );
        // A legacy object without accept: no counts, and the child has no owner.
        let legacy = object(
            &["kc_connections_state", "kc_connections_stream"],
            vec![
                flow("connect", 5, 6, Some(7), None),
                flow("accept", 6, 5, None, None),
            ],
            vec![],
        );
        assert_eq!(judge(&legacy, Some(7), false), Vec::<String>::new());
        // Nothing observed the state changes: nothing to judge.
        assert_eq!(
            judge(&object(&[], vec![], vec![]), Some(7), true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_fault_is_named() {
        let o = object(
            ALL,
            vec![
                flow("connect", 5, 6, Some(8), Some((4096, 16))),
                flow("accept", 6, 9, None, None),
            ],
            vec![],
        );
        assert_eq!(
            judge(&o, Some(7), true),
            [
                "the connect flow 127.0.0.1:5 -> 127.0.0.1:6 is not the accepted flow 127.0.0.1:6 -> 127.0.0.1:9 seen from the other end",
                "the connect flow's owner is Some(8), expected the workload",
                "the connect flow sent 4096 and received 16 bytes with 0 retransmits, expected 4096, 17 (the FIN's byte) and 0",
                "the accepted flow's owner is None, expected the workload",
                "the accepted flow's counts are absent, expected there (only CO-RE objects read them)",
            ]
        );
        let missing = object(ALL, vec![flow("accept", 6, 5, Some(7), None)], vec![]);
        assert_eq!(
            judge(&missing, Some(7), false),
            ["0 connect flows in the close stream, expected 1: []"]
        );
    }
}
