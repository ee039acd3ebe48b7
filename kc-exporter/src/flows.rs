//! Series of an object's flow table (the connections collector): its rows now, by protocol and
//! state, and what the flows that ended while the exporter watched carried. One series a flow
//! would be a series a connection: unbounded on a busy host, so flows are summed by protocol.

use std::collections::BTreeMap;

use kc_common::flow::{Flow, FlowProtocol, TcpState};
use kc_common::report::ObjectReport;

use crate::exposition::Value;

/// One sample: its family's name and help, its labels, its value.
pub type Sample = (&'static str, &'static str, Vec<(String, String)>, Value);

/// What ended flows carried, per object and protocol, since the exporter started.
#[derive(Debug, Default)]
pub struct Ended {
    by: BTreeMap<(String, FlowProtocol), EndedFlows>,
}

#[derive(Debug, Default, Clone, Copy)]
struct EndedFlows {
    flows: u64,
    /// Bytes sent and received, where the object read them (CO-RE objects); None while no
    /// ended flow's bytes were known.
    bytes: Option<(u64, u64)>,
}

/// A flow's bytes each way, where its object read them: TCP's counts, UDP's datagrams.
fn bytes(f: &Flow) -> Option<(u64, u64)> {
    match (&f.counts, &f.datagrams) {
        (Some(c), _) => Some((c.bytes_sent, c.bytes_received)),
        (None, Some(d)) => Some((d.bytes_sent, d.bytes_received)),
        (None, None) => None,
    }
}

/// The flow-table series of `o` (none where it has no flow table). Each ended flow is seen once:
/// a close record, or a closed row (reported once, then removed from the table).
pub fn samples(ended: &mut Ended, o: &ObjectReport) -> Vec<Sample> {
    let (Some(rows), Some(table)) = (&o.flows, &o.flow_table) else {
        return Vec::new();
    };
    let object = o.object.as_str();
    let label = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        std::iter::once(("object".to_string(), object.to_string()))
            .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect()
    };
    let mut now: BTreeMap<(FlowProtocol, bool), u64> = BTreeMap::new();
    for f in rows {
        *now.entry((f.protocol, f.state == TcpState::Close))
            .or_default() += 1;
    }
    let closed_rows = rows.iter().filter(|f| f.state == TcpState::Close);
    for f in o.closes().map(|c| &c.flow).chain(closed_rows) {
        let e = ended
            .by
            .entry((object.to_string(), f.protocol))
            .or_default();
        e.flows += 1;
        if let Some((sent, received)) = bytes(f) {
            let (s, r) = e.bytes.unwrap_or_default();
            e.bytes = Some((s + sent, r + received));
        }
    }
    let mut out: Vec<Sample> = Vec::new();
    for ((protocol, closed), n) in now {
        let state = if closed { "closed" } else { "open" };
        out.push((
            "kc_exporter_flows",
            "Rows of the object's flow table now, by protocol and state (closed: ended, reported once before removal).",
            label(&[("protocol", protocol.to_string()), ("state", state.into())]),
            Value::Gauge(n as f64),
        ));
    }
    for (name, help, v) in [
        (
            "kc_exporter_flow_table_rows",
            "Rows in the object's flow table.",
            table.rows,
        ),
        (
            "kc_exporter_flow_table_size",
            "The flow table's size (--flow-table-size).",
            table.table_size,
        ),
    ] {
        out.push((name, help, label(&[]), Value::Gauge(v as f64)));
    }
    for ((_, protocol), e) in ended.by.iter().filter(|((o, _), _)| o == object) {
        let l = label(&[("protocol", protocol.to_string())]);
        out.push((
            "kc_exporter_flows_ended",
            "Flows that ended (TCP: closed; UDP: socket destroyed) since the exporter started.",
            l.clone(),
            Value::Counter(e.flows),
        ));
        let Some((sent, received)) = e.bytes else {
            continue;
        };
        for (direction, v) in [("sent", sent), ("received", received)] {
            let mut l = l.clone();
            l.push(("direction".into(), direction.into()));
            out.push((
                "kc_exporter_flows_ended_bytes",
                "Payload bytes the ended flows moved, each way (flows whose bytes the object reads: CO-RE objects).",
                l,
                Value::Counter(v),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(protocol: &str, state: &str, bytes: Option<u64>) -> serde_json::Value {
        json!({"protocol": protocol, "family": "ipv4", "saddr": "127.0.0.1", "sport": 1,
               "daddr": "127.0.0.1", "dport": 2, "state": state, "direction": "connect",
               "first_ns": 1, "last_ns": 2, "owner": null,
               "counts": bytes.filter(|_| protocol == "tcp").map(|b| json!({"bytes_sent": b,
                   "bytes_received": 1, "segs_out": 1, "segs_in": 1, "retransmits": 0})),
               "datagrams": bytes.filter(|_| protocol == "udp").map(|b| json!({"bytes_sent": b,
                   "bytes_received": 2, "sent": 1, "received": 1}))})
    }

    fn object(rows: Vec<serde_json::Value>, closes: Vec<serde_json::Value>) -> ObjectReport {
        let closes: Vec<_> = closes
            .into_iter()
            .map(|f| json!({"had_row": true, "flow": f}))
            .collect();
        // The report type's defaults, with the fields these series read laid over them.
        let mut o = serde_json::to_value(ObjectReport::default()).unwrap();
        let fields = json!({
            "object": "connections.bpf.o", "status": "ok", "flows": rows,
            "flow_table": {"map": "connections_flows", "table_size": 2048, "rows": 3,
                           "insertions": 5, "evicted": 0, "removed_closed": 1},
            "streams": {"connections_closed": {"record": "kc_flow_close", "received": closes.len(),
                "bytes": 0, "malformed": 0, "rows": closes.len(), "not_listed": 0, "closes": closes}}});
        o.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        serde_json::from_value(o).unwrap()
    }

    fn text(samples: &[Sample]) -> Vec<String> {
        samples
            .iter()
            .map(|(name, _, l, v)| {
                let l: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{name}{{{}}} {v:?}", l.join(","))
            })
            .collect()
    }

    #[test]
    fn rows_by_protocol_and_state_and_ended_flows_carried_across_scrapes() {
        let mut ended = Ended::default();
        let o = object(
            vec![
                flow("tcp", "ESTABLISHED", Some(10)),
                flow("udp", "ESTABLISHED", Some(20)),
                flow("udp", "CLOSE", Some(30)),
            ],
            vec![flow("tcp", "CLOSE", Some(40))],
        );
        let got = text(&samples(&mut ended, &o));
        for want in [
            "kc_exporter_flows{object=connections.bpf.o,protocol=tcp,state=open} Gauge(1.0)",
            "kc_exporter_flows{object=connections.bpf.o,protocol=udp,state=closed} Gauge(1.0)",
            "kc_exporter_flow_table_size{object=connections.bpf.o} Gauge(2048.0)",
            "kc_exporter_flows_ended{object=connections.bpf.o,protocol=tcp} Counter(1)",
            "kc_exporter_flows_ended_bytes{object=connections.bpf.o,protocol=udp,direction=sent} Counter(30)",
        ] {
            assert!(got.contains(&want.to_string()), "{want} not in {got:#?}");
        }
        // The next scrape: one more TCP close; what ended before is still counted.
        let got = text(&samples(
            &mut ended,
            &object(vec![], vec![flow("tcp", "CLOSE", Some(2))]),
        ));
        assert!(got.contains(
            &"kc_exporter_flows_ended_bytes{object=connections.bpf.o,protocol=tcp,direction=sent} Counter(42)".to_string()
        ), "{got:#?}");
        assert!(
            got.contains(
                &"kc_exporter_flows_ended{object=connections.bpf.o,protocol=udp} Counter(1)"
                    .to_string()
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn bytes_no_object_read_are_absent_not_zero() {
        let mut ended = Ended::default();
        let got = text(&samples(
            &mut ended,
            &object(vec![], vec![flow("tcp", "CLOSE", None)]),
        ));
        assert!(got.contains(
            &"kc_exporter_flows_ended{object=connections.bpf.o,protocol=tcp} Counter(1)"
                .to_string()
        ));
        assert!(
            !got.iter()
                .any(|s| s.starts_with("kc_exporter_flows_ended_bytes")),
            "{got:#?}"
        );
        assert!(samples(&mut ended, &ObjectReport::default()).is_empty());
    }
}
