//! The dns collector's server table against what the guest's workload asked each server
//! (co-re/tests/kc-vmtest-init.c, `dns` and `dns_tcp`): every figure exact, or absent where the
//! pass did not observe the counter it adds to, and the table's rows adding up to the totals.

use kc_common::dns::DnsServer;
use kc_common::report::ObjectReport;

/// What the workload asks one of its resolver's addresses, and how it is answered.
struct Asked {
    server: &'static str,
    /// Query messages, resends included.
    queries: u64,
    /// Answers: noerror, nxdomain, servfail, other codes.
    responses: [u64; 4],
    /// Queries left unanswered at their socket's close (a socket that asked this server alone)
    /// or at their process's exit (a process that asked this server alone: the workload asks
    /// both, so its exit's timeout is `timeout_unattributed`'s).
    timeouts: u64,
}

/// 127.0.0.1: A ok (write), A sf and TXT tx (sendmmsg), A nx (sendto), A to twice, never
/// answered; over TCP A ok, then AAAA nx and A ok (one writev). [::1]: AAAA ok, then AAAA ex,
/// left unanswered at the workload's exit.
const ASKED: [Asked; 2] = [
    Asked {
        server: "127.0.0.1",
        queries: 9,
        responses: [4, 2, 1, 0],
        timeouts: 1,
    },
    Asked {
        server: "::1",
        queries: 2,
        responses: [1, 0, 0, 0],
        timeouts: 0,
    },
];

/// One figure of a row: the expected value where the pass observed its counter, else absent.
fn figure(
    wrong: &mut Vec<String>,
    what: &str,
    counter: &str,
    o: &ObjectReport,
    got: Option<u64>,
    want: u64,
) {
    match (o.total(counter), got) {
        (Some(_), Some(g)) if g == want => {}
        (Some(_), g) => wrong.push(format!("{what}: {g:?}, the workload's {want}")),
        (None, None) => {}
        (None, Some(g)) => wrong.push(format!(
            "{what}: {g}, but `{counter}` was not observed: it must be absent"
        )),
    }
}

fn judge_row(asked: &Asked, row: &DnsServer, o: &ObjectReport, wrong: &mut Vec<String>) {
    let name = asked.server;
    figure(
        wrong,
        &format!("{name} queries"),
        "query",
        o,
        row.queries,
        asked.queries,
    );
    figure(
        wrong,
        &format!("{name} timeouts"),
        "timeout",
        o,
        row.timeouts,
        asked.timeouts,
    );
    let codes = row
        .responses
        .as_ref()
        .map(|r| [r.noerror, r.nxdomain, r.servfail, r.rcode_other]);
    for (i, code) in ["noerror", "nxdomain", "servfail", "rcode_other"]
        .iter()
        .enumerate()
    {
        figure(
            wrong,
            &format!("{name} {code}"),
            "response",
            o,
            codes.map(|c| c[i]),
            asked.responses[i],
        );
    }
    let answered = row.responses.as_ref().map(|r| r.total());
    let timed = row.latency.as_ref().map(|l| l.iter().sum::<u64>());
    if answered != timed {
        wrong.push(format!(
            "{name}: {answered:?} answers, but {timed:?} in its latency histogram"
        ));
    }
}

/// Every fault of `object`'s server table; `entry_mode`: a p object, which keeps none.
pub fn judge(object: &ObjectReport, entry_mode: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    let (rows, table) = (object.dns_servers.as_deref(), object.server_table.as_ref());
    if entry_mode {
        if rows.is_some() || table.is_some() {
            wrong.push("an entry-only object reports a server table: it sees no answers".into());
        }
        return wrong;
    }
    let (Some(rows), Some(table)) = (rows, table) else {
        wrong.push("no dns_servers table in the report".into());
        return wrong;
    };
    for asked in &ASKED {
        match rows.iter().find(|r| r.server.to_string() == asked.server) {
            Some(row) => judge_row(asked, row, object, &mut wrong),
            None if object.total("query").is_some() => {
                wrong.push(format!("{}: no row", asked.server))
            }
            None => {}
        }
    }
    let others: Vec<String> = rows
        .iter()
        .filter(|r| !ASKED.iter().any(|a| r.server.to_string() == a.server))
        .map(|r| r.server.to_string())
        .collect();
    if !others.is_empty() {
        wrong.push(format!(
            "rows of servers the workload never asked: {others:?}"
        ));
    }
    if table.rows != rows.len() as u64 {
        wrong.push(format!(
            "server_table says {} rows, the report lists {}",
            table.rows,
            rows.len()
        ));
    }
    if let Some(inserted) = table.insertions {
        if inserted != rows.len() as u64 || table.evicted != Some(0) {
            wrong.push(format!(
                "server_table: {inserted} insertions, {:?} evicted, for {} rows of {}",
                table.evicted,
                rows.len(),
                table.table_size
            ));
        }
    }
    // The rows add up to the collector's totals.
    let sum = |f: &dyn Fn(&DnsServer) -> Option<u64>| -> Option<u64> { rows.iter().map(f).sum() };
    let totals = |names: &[&str]| -> Option<u64> { names.iter().map(|n| object.total(n)).sum() };
    for (what, rows_say, totals_say) in [
        ("queries", sum(&|r| r.queries), totals(&["query", "resend"])),
        (
            "answers",
            sum(&|r| r.responses.as_ref().map(|x| x.total())),
            totals(&["response"]),
        ),
        (
            "timeouts",
            sum(&|r| r.timeouts),
            totals(&["timeout"])
                .zip(totals(&["timeout_unattributed"]))
                .map(|(t, u)| t - u.min(t)),
        ),
    ] {
        if let (Some(a), Some(b)) = (rows_say, totals_say) {
            if a != b {
                wrong.push(format!(
                    "the servers' {what} add up to {a}, the collector's counters to {b}"
                ));
            }
        }
    }
    wrong
        .into_iter()
        .map(|w| format!("dns_servers: {w}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::{json, Value};

    fn slots(n: u64) -> Value {
        let mut s = vec![0u64; 32];
        s[4] = n;
        json!(s)
    }

    fn object(v4_queries: u64, counters: Value) -> ObjectReport {
        let r = report(json!({"objects": [{"object": "dns.bpf.o", "status": "ok",
            "counters": counters,
            "dns_servers": [
                {"server": "127.0.0.1", "family": "ipv4", "queries": v4_queries,
                 "responses": {"noerror": 4, "nxdomain": 2, "servfail": 1, "rcode_other": 0},
                 "latency": slots(7), "timeouts": 1},
                {"server": "::1", "family": "ipv6", "queries": 2,
                 "responses": {"noerror": 1, "nxdomain": 0, "servfail": 0, "rcode_other": 0},
                 "latency": slots(1), "timeouts": 0}],
            "server_table": {"map": "dns_servers", "table_size": 64, "rows": 2, "insertions": 2, "evicted": 0}}]}));
        r.objects[0].clone()
    }

    fn totals() -> Value {
        json!({"query": 10, "resend": 1, "response": 8, "timeout": 2, "timeout_unattributed": 1, "servers_tracked": 2})
    }

    #[test]
    fn the_workloads_servers_pass() {
        assert_eq!(judge(&object(9, totals()), false), Vec::<String>::new());
    }

    #[test]
    fn a_wrong_figure_or_a_sum_that_does_not_add_up_is_named() {
        let wrong = judge(&object(8, totals()), false);
        assert_eq!(
            wrong,
            [
                "dns_servers: 127.0.0.1 queries: Some(8), the workload's 9",
                "dns_servers: the servers' queries add up to 10, the collector's counters to 11"
            ]
        );
    }

    #[test]
    fn a_figure_of_an_unobserved_counter_must_be_absent() {
        let wrong = judge(
            &object(
                9,
                json!({"query": 10, "resend": 1, "response": null, "timeout": null}),
            ),
            false,
        );
        assert!(
            wrong
                .iter()
                .any(|w| w.contains("127.0.0.1 noerror: 4, but `response` was not observed")),
            "{wrong:?}"
        );
        assert!(judge(&object(9, totals()), true)[0].contains("entry-only object"));
    }
}
