//! Series of an object's DNS server table (the dns collector): per server, the queries sent to
//! it, its answers by response code, their latency and its timeouts. One series set a server:
//! the table holds 64, so the series are bounded with it. A figure the pass did not observe is
//! absent, never 0.

use kc_common::report::ObjectReport;

use crate::exposition::Value;
use crate::flows::Sample;
use crate::metrics::slot_bound;

/// The server-table series of `o` (none where it has no server table). `carried` turns a count
/// the kernel keeps into one that carries on across the exporter's reattaches.
pub fn samples(
    o: &ObjectReport,
    carried: &mut impl FnMut(&str, &[(String, String)], u64) -> u64,
) -> Vec<Sample> {
    let Some(table) = &o.server_table else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in o.dns_servers.iter().flatten() {
        let server = vec![("server".to_string(), s.server.to_string())];
        let mut counter =
            |out: &mut Vec<Sample>, name: &'static str, help, l: Vec<(String, String)>, n| {
                let v = carried(&format!("{}{name}", table.map), &l, n);
                out.push((name, help, l, Value::Counter(v)));
            };
        if let Some(n) = s.queries {
            counter(
                &mut out,
                "kc_dns_server_queries",
                "dns: query messages sent to the server, resends included.",
                server.clone(),
                n,
            );
        }
        if let Some(t) = s.timeouts {
            counter(&mut out, "kc_dns_server_timeouts", "dns: queries unanswered when their socket closed, on sockets that asked this server alone.", server.clone(), t);
        }
        if let Some(r) = &s.responses {
            for (rcode, n) in [
                ("noerror", r.noerror),
                ("nxdomain", r.nxdomain),
                ("servfail", r.servfail),
                ("other", r.rcode_other),
            ] {
                let mut l = server.clone();
                l.push(("rcode".into(), rcode.into()));
                counter(
                    &mut out,
                    "kc_dns_server_responses",
                    "dns: the server's answers to pending queries, by response code.",
                    l,
                    n,
                );
            }
        }
        if let Some(slots) = &s.latency {
            let buckets = slots
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    (
                        slot_bound(i),
                        carried(&format!("{}latency{i}", table.map), &server, n),
                    )
                })
                .collect();
            out.push((
                "kc_dns_server_latency_seconds",
                "dns: the server's answers by time since the query's last send, in the kernel's log2 buckets; the kernel keeps no sum (NaN).",
                server,
                Value::Histogram(buckets),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_common::dns::{DnsResponses, DnsServer, ServerTable};
    use kc_common::flow::IpFamily;

    fn object(responses: bool) -> ObjectReport {
        let mut latency = vec![0; 32];
        latency[3] = 2;
        ObjectReport {
            object: "dns.bpf.o".into(),
            dns_servers: Some(vec![DnsServer {
                server: "::1".parse().unwrap(),
                family: IpFamily::Ipv6,
                queries: Some(3),
                responses: responses.then(|| DnsResponses {
                    noerror: 1,
                    nxdomain: 1,
                    ..DnsResponses::default()
                }),
                latency: responses.then_some(latency),
                timeouts: responses.then_some(1),
            }]),
            server_table: Some(ServerTable {
                map: "dns_servers".into(),
                table_size: 64,
                rows: 1,
                insertions: Some(1),
                evicted: Some(0),
            }),
            ..ObjectReport::default()
        }
    }

    #[test]
    fn a_server_gives_its_counts_by_code_and_its_latency() {
        let got = samples(&object(true), &mut |_, _, n| n);
        let names: Vec<_> = got.iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "kc_dns_server_queries",
                "kc_dns_server_timeouts",
                "kc_dns_server_responses",
                "kc_dns_server_responses",
                "kc_dns_server_responses",
                "kc_dns_server_responses",
                "kc_dns_server_latency_seconds"
            ]
        );
        assert_eq!(got[2].2[1], ("rcode".to_string(), "noerror".to_string()));
        assert_eq!(got[0].2[0], ("server".to_string(), "::1".to_string()));
        let Value::Histogram(b) = &got[6].3 else {
            panic!("not a histogram")
        };
        assert_eq!((b.len(), b[3].1, b[3].0), (32, 2, 16e-6));
    }

    #[test]
    fn what_the_pass_did_not_observe_is_absent() {
        let got = samples(&object(false), &mut |_, _, n| n);
        assert_eq!(got.len(), 1, "only the queries: {got:?}");
        assert!(samples(&ObjectReport::default(), &mut |_, _, n| n).is_empty());
    }
}
