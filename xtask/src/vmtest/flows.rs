//! The workload's UDP sockets (`sockets` and `dns`): seven flows of known datagrams, each
//! closed (judge_udp). Its TCP round trips (`tcp_round_trip` and `dns_tcp` in
//! co-re/tests/kc-vmtest-init.c: ROUND_TRIPS), as a flow table must report each: one flow its
//! connect made and one its listener's child, each other's mirror,
//! both closed, with the workload as owner wherever an event the object observed ran in its
//! context, and the kernel's own counts where the object reads them (CO-RE only). Closed, each
//! is in the close stream with its row (where the stream's event was observed), else in the
//! table as a closed row.

use kc_common::flow::{Flow, FlowDirection, FlowProtocol, IpFamily, TcpState};
use kc_common::report::ObjectReport;

/// A TCP round trip of the workload: its family, whether its listener is the resolver's on
/// port 53 (else an ephemeral port), and what each end writes. A peer's FIN counts one byte
/// received (tcp_sock.bytes_received follows rcv_nxt, which the FIN advances), and every flow
/// the workload closes has received its peer's: it reaches CLOSE through TIME_WAIT or
/// LAST_ACK, each after that FIN.
struct RoundTrip {
    name: &'static str,
    family: IpFamily,
    dns: bool,
    client_sends: u64,
    server_sends: u64,
}

const ROUND_TRIPS: [RoundTrip; 3] = [
    // tcp_round_trip: the client writes 4096 bytes, the server answers 16.
    RoundTrip {
        name: "Ipv4",
        family: IpFamily::Ipv4,
        dns: false,
        client_sends: 4096,
        server_sends: 16,
    },
    RoundTrip {
        name: "Ipv6",
        family: IpFamily::Ipv6,
        dns: false,
        client_sends: 4096,
        server_sends: 16,
    },
    // dns_tcp: three questions and their answers, each 2 + 28 bytes.
    RoundTrip {
        name: "DNS over TCP",
        family: IpFamily::Ipv4,
        dns: true,
        client_sends: 90,
        server_sends: 90,
    },
];

impl RoundTrip {
    /// Whether `flow` is one of this round trip's: its family, and its listener's port (the
    /// connect's peer's, the accepted flow's own) 53 or not.
    fn holds(&self, flow: &Flow) -> bool {
        let listener = match flow.direction {
            FlowDirection::Connect => flow.dport,
            FlowDirection::Accept => flow.sport,
            // Opened before the programs were attached: none of the workload's.
            FlowDirection::Unknown => return false,
        };
        flow.family == self.family && (listener == 53) == self.dns
    }
}

/// Whether the object observed `event` (any family).
fn observes(object: &ObjectReport, event: &str) -> bool {
    object
        .events
        .iter()
        .any(|e| e.event == event && e.family.is_some())
}

/// The workload's UDP sockets (`sockets` and `dns`), each a flow it owned and closed: family,
/// direction (which came first: a send or a receive), peer port (0: not connected), datagrams
/// sent and received, and their bytes. Every DNS message is 28 bytes; the round trip's 64.
const UDP_FLOWS: [(IpFamily, FlowDirection, u16, u64, u64, u64, u64); 7] = {
    use FlowDirection::{Accept, Connect};
    use IpFamily::{Ipv4, Ipv6};
    [
        (Ipv4, Connect, 0, 1, 0, 64, 0),   // sockets: the sender (sendto)
        (Ipv4, Connect, 0, 3, 1, 84, 28),  // dns: unconnected; one question unanswered, sent twice
        (Ipv4, Connect, 53, 3, 3, 84, 84), // dns: connected; send, then sendmmsg of 2
        (Ipv4, Accept, 0, 0, 1, 0, 64),    // sockets: the receiver
        (Ipv4, Accept, 0, 4, 6, 112, 168), // dns: the IPv4 resolver
        (Ipv6, Connect, 53, 2, 1, 56, 28), // dns: connected, AAAA; a second left at exit
        (Ipv6, Accept, 0, 1, 2, 28, 56),   // dns: the IPv6 resolver
    ]
};

/// The UDP flows of `object` against UDP_FLOWS, where its `udp` event was observed (CO-RE
/// objects, in a function family). Closed, they are in the close stream where its
/// `udp_stream` event ran, else closed in the table.
fn judge_udp(object: &ObjectReport, workload: Option<u32>, wrong: &mut Vec<String>) {
    if !observes(object, "kc_connections_udp") {
        return;
    }
    let streamed = observes(object, "kc_connections_udp_stream");
    let place = if streamed {
        "the close stream"
    } else {
        "the table"
    };
    let closes = object.closes().map(|c| &c.flow);
    let table = object.flows.iter().flatten();
    let (held, elsewhere): (Vec<&Flow>, Vec<&Flow>) = if streamed {
        (closes.collect(), table.collect())
    } else {
        (table.collect(), closes.collect())
    };
    let udp = |f: &&&Flow| f.protocol == FlowProtocol::Udp;
    if elsewhere.iter().any(|f| udp(&f)) {
        wrong.push(format!("a UDP flow is outside {place}"));
    }
    let mut got: Vec<_> = held
        .iter()
        .filter(udp)
        .filter(|f| f.owner.as_ref().map(|o| o.tgid) == workload)
        .map(|f| {
            let d = f.datagrams.clone().unwrap_or_default();
            (
                f.family,
                f.direction,
                f.dport,
                d.sent,
                d.received,
                d.bytes_sent,
                d.bytes_received,
            )
        })
        .collect();
    got.sort_by_key(|g| format!("{g:?}"));
    let mut want = UDP_FLOWS.to_vec();
    want.sort_by_key(|g| format!("{g:?}"));
    if got != want {
        wrong.push(format!(
            "the workload's UDP flows in {place} (family, direction, peer port, datagrams sent, received, bytes sent, received) are {got:?}, expected {want:?}"
        ));
    }
    for f in held.iter().filter(udp) {
        if f.state != TcpState::Close || f.datagrams.is_none() || f.counts.is_some() {
            wrong.push(format!(
                "the UDP flow {} is {} with datagrams {:?} and TCP counts {:?}: expected closed, with datagrams only",
                f.tuple(),
                f.state,
                f.datagrams,
                f.counts
            ));
        }
    }
}

/// Every fault of the connections collector's flows in `object`, whose file is a CO-RE object
/// or not (`core`).
pub fn judge(object: &ObjectReport, workload: Option<u32>, core: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    judge_udp(object, workload, &mut wrong);
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
    let (held, elsewhere): (Vec<&Flow>, Vec<&Flow>) = (
        held.iter()
            .copied()
            .filter(|f| f.protocol == FlowProtocol::Tcp)
            .collect(),
        elsewhere
            .iter()
            .copied()
            .filter(|f| f.protocol == FlowProtocol::Tcp)
            .collect(),
    );
    if object.closes().any(|c| !c.had_row) {
        wrong.push("a close record without its row: the table never held that flow".into());
    }
    for trip in &ROUND_TRIPS {
        let held: Vec<&Flow> = held.iter().copied().filter(|f| trip.holds(f)).collect();
        let faults = judge_round_trip(trip, &held, &elsewhere, place, object, workload, core);
        wrong.extend(faults.into_iter().map(|f| format!("{}: {f}", trip.name)));
    }
    wrong
}

/// The faults of one round trip's two flows (`held`: its TCP flows where they must be).
fn judge_round_trip(
    trip: &RoundTrip,
    held: &[&Flow],
    elsewhere: &[&Flow],
    place: &str,
    object: &ObjectReport,
    workload: Option<u32>,
    core: bool,
) -> Vec<String> {
    let mut wrong = Vec::new();
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
        (
            "connect",
            client,
            true,
            trip.client_sends,
            trip.server_sends,
        ),
        (
            "accepted",
            server,
            server_owned,
            trip.server_sends,
            trip.client_sends,
        ),
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

    /// The round trips' flows as ROUND_TRIPS says (counts where `counts`), the accepted ones
    /// owned by `server_owner`.
    fn trips(server_owner: Option<u32>, counts: bool) -> Vec<Value> {
        ROUND_TRIPS
            .iter()
            .flat_map(|t| {
                let port = if t.dns { 53 } else { 6 };
                let c = |sent, received: u64| counts.then_some((sent, received + 1));
                [
                    flow(
                        "connect",
                        5,
                        port,
                        Some(7),
                        c(t.client_sends, t.server_sends),
                    ),
                    flow(
                        "accept",
                        port,
                        5,
                        server_owner,
                        c(t.server_sends, t.client_sends),
                    ),
                ]
                .map(|mut f| {
                    if t.family == IpFamily::Ipv6 {
                        f["family"] = json!("ipv6");
                        f["saddr"] = json!("::1");
                        f["daddr"] = json!("::1");
                    }
                    f
                })
            })
            .collect()
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
        assert_eq!(
            judge(&object(ALL, trips(Some(7), true), vec![]), Some(7), true),
            Vec::<String>::new()
        );
        let no_stream = &["kc_connections_state", "kc_connections_accept"];
        assert_eq!(
            judge(
                &object(no_stream, vec![], trips(Some(7), true)),
                Some(7),
                true
            ),
            Vec::<String>::new()
        );
        // A legacy object without accept: no counts, and the child has no owner.
        let legacy = object(
            &["kc_connections_state", "kc_connections_stream"],
            trips(None, false),
            vec![],
        );
        assert_eq!(judge(&legacy, Some(7), false), Vec::<String>::new());
        // Nothing observed the state changes: nothing to judge.
        assert_eq!(
            judge(&object(&[], vec![], vec![]), Some(7), true),
            Vec::<String>::new()
        );
    }

    /// The workload's UDP flows as UDP_FLOWS says, closed and owned by 7; `skew` adds a
    /// datagram received to the first.
    fn udp_flows(skew: u64) -> Vec<Value> {
        UDP_FLOWS
            .iter()
            .enumerate()
            .map(|(i, &(family, direction, dport, sent, received, bs, br))| {
                let addr = if family == IpFamily::Ipv4 { "127.0.0.1" } else { "::1" };
                json!({"protocol": "udp", "family": family, "saddr": addr, "sport": 100 + i,
                       "daddr": addr, "dport": dport, "state": "CLOSE", "direction": direction,
                       "first_ns": 1, "last_ns": 2,
                       "owner": {"tgid": 7, "cgroup": 1, "comm": "init"}, "counts": null,
                       "datagrams": {"sent": sent, "received": received + if i == 0 { skew } else { 0 },
                                     "bytes_sent": bs, "bytes_received": br}})
            })
            .collect()
    }

    #[test]
    fn the_udp_flows_pass_where_udp_ran_and_a_wrong_count_is_named() {
        let mut udp_events = ALL.to_vec();
        udp_events.push("kc_connections_udp");
        // No udp_stream here: UDP's closes stay in the table.
        let mut closes = trips(Some(7), true);
        let o = object(&udp_events, closes.clone(), udp_flows(0));
        assert_eq!(judge(&o, Some(7), true), Vec::<String>::new());
        let o = object(&udp_events, closes.clone(), udp_flows(1));
        let wrong = judge(&o, Some(7), true);
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(
            wrong[0].starts_with("the workload's UDP flows in the table"),
            "{wrong:?}"
        );
        closes.extend(udp_flows(0));
        udp_events.push("kc_connections_udp_stream");
        let o = object(&udp_events, closes.clone(), vec![]);
        assert_eq!(judge(&o, Some(7), true), Vec::<String>::new());
        udp_events.pop();
        let o = object(&udp_events, closes, vec![]);
        assert_eq!(
            judge(&o, Some(7), true)[..2],
            [
                "a UDP flow is outside the table".to_string(),
                "the workload's UDP flows in the table (family, direction, peer port, datagrams sent, received, bytes sent, received) are [], expected [(Ipv4, Accept, 0, 0, 1, 0, 64), (Ipv4, Accept, 0, 4, 6, 112, 168), (Ipv4, Connect, 0, 1, 0, 64, 0), (Ipv4, Connect, 0, 3, 1, 84, 28), (Ipv4, Connect, 53, 3, 3, 84, 84), (Ipv6, Accept, 0, 1, 2, 28, 56), (Ipv6, Connect, 53, 2, 1, 56, 28)]".to_string()
            ]
        );
    }

    #[test]
    fn each_fault_is_named() {
        // The IPv4 round trip wrong, the others right.
        let mut flows = vec![
            flow("connect", 5, 6, Some(8), Some((4096, 16))),
            flow("accept", 6, 9, None, None),
        ];
        flows.extend(trips(Some(7), true).split_off(2));
        assert_eq!(
            judge(&object(ALL, flows, vec![]), Some(7), true),
            [
                "Ipv4: the connect flow 127.0.0.1:5 -> 127.0.0.1:6 is not the accepted flow 127.0.0.1:6 -> 127.0.0.1:9 seen from the other end",
                "Ipv4: the connect flow's owner is Some(8), expected the workload",
                "Ipv4: the connect flow sent 4096 and received 16 bytes with 0 retransmits, expected 4096, 17 (the FIN's byte) and 0",
                "Ipv4: the accepted flow's owner is None, expected the workload",
                "Ipv4: the accepted flow's counts are absent, expected there (only CO-RE objects read them)",
            ]
        );
        let missing = object(ALL, vec![flow("accept", 6, 5, Some(7), None)], vec![]);
        assert_eq!(
            judge(&missing, Some(7), false),
            [
                "Ipv4: 0 connect flows in the close stream, expected 1: []",
                "Ipv6: 0 connect flows in the close stream, expected 1: []",
                "DNS over TCP: 0 connect flows in the close stream, expected 1: []"
            ]
        );
    }
}
