//! What a report's stream maps delivered, judged against its own counters and the workload:
//! every record the programs submitted reached the loader, none was malformed, a row that
//! went into the stream left the table, the exits of the workload's children, which it reaps
//! itself, are there with the workload as their parent, and so is its own, with status 0.

use kc_common::report::ObjectReport;

/// The counters of the records the programs submitted to a collector's stream (process's
/// exits, connections' TCP and UDP closes, each under its own event: includes/kc_collectors.h);
/// what the ring refused is `stream_lost` (`udp_stream_lost`), judged by counters.toml.
const SUBMITTED: &[&str] = &["streamed", "udp_streamed"];

/// Every fault of `object`'s streams; `children`: how many processes the workload forks and
/// reaps (counters.toml's process fork row), where it ran.
pub fn judge(object: &ObjectReport, workload: Option<u32>, children: Option<u64>) -> Vec<String> {
    let mut wrong = Vec::new();
    let Some(streams) = &object.streams else {
        return wrong;
    };
    for (map, s) in streams {
        if s.malformed > 0 {
            wrong.push(format!(
                "{map}: {} records shorter than {}",
                s.malformed, s.record
            ));
        }
        // Where no family observed the stream's event, nothing more to hold it to.
        let observed: Vec<u64> = SUBMITTED.iter().filter_map(|c| object.total(c)).collect();
        if observed.is_empty() {
            continue;
        }
        let submitted: u64 = observed.iter().sum();
        // The loader drains the ring after detach: it holds every record submitted.
        if s.received != submitted {
            wrong.push(format!(
                "{map}: the programs submitted {submitted} records, the loader received {}",
                s.received
            ));
        }
        let Some(exits) = &s.exits else {
            continue;
        };
        let with_rows = exits.iter().filter(|e| e.row.is_some()).count() as u64;
        if s.not_listed == 0 && with_rows != s.rows {
            wrong.push(format!(
                "{map}: {} records carry a row, {with_rows} listed do",
                s.rows
            ));
        }
        for e in exits.iter().filter(|e| e.row.is_some()) {
            let in_table = object
                .per_process
                .iter()
                .flatten()
                .any(|r| r.tgid == Some(e.tgid));
            if in_table {
                wrong.push(format!(
                    "{map}: process {}'s row is both in the stream and in the table",
                    e.tgid
                ));
            }
            if e.exit_ns < e.start_ns {
                wrong.push(format!(
                    "{map}: process {} exited ({}) before it started ({})",
                    e.tgid, e.exit_ns, e.start_ns
                ));
            }
        }
        if let (Some(pid), Some(children), 0) = (workload, children, s.not_listed) {
            let reaped = exits.iter().filter(|e| e.ppid == pid).count() as u64;
            if reaped != children {
                wrong.push(format!(
                    "{map}: {reaped} exits of the workload's children, expected {children} (it forks and reaps them)"
                ));
            }
            match exits.iter().find(|e| e.tgid == pid) {
                None => wrong.push(format!("{map}: the workload's own exit is not there")),
                Some(own) if own.exit_code != 0 => wrong.push(format!(
                    "{map}: the workload's exit code is {:#x}, it exited with 0",
                    own.exit_code
                )),
                Some(_) => {}
            }
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_fixtures::report;
    use serde_json::json;

    fn exit(tgid: u32, ppid: u32, row: bool) -> serde_json::Value {
        let row = row.then(|| json!({"tgid": tgid, "exited": true, "counters": {"fork": 1}}));
        json!({"tgid": tgid, "ppid": ppid, "comm": "w", "exit_code": 0, "start_ns": 1,
               "exit_ns": 2, "row": row})
    }

    fn object(streamed: Option<u64>, exits: Vec<serde_json::Value>, table: &[u32]) -> ObjectReport {
        let rows: Vec<_> = table
            .iter()
            .map(|t| json!({"tgid": t, "exited": false, "counters": {"fork": 1}}))
            .collect();
        let with_rows = exits.iter().filter(|e| !e["row"].is_null()).count();
        report(json!({"workload_pid": 7, "objects": [{
            "object": "process.bpf.o", "status": "ok",
            "counters": {"streamed": streamed}, "per_process": rows,
            "streams": {"process_exits": {"record": "kc_process_exit", "received": exits.len(),
                "bytes": 112 * exits.len(), "malformed": 0, "rows": with_rows, "not_listed": 0,
                "exits": exits}}}]}))
        .objects
        .remove(0)
    }

    #[test]
    fn a_whole_stream_passes() {
        let o = object(
            Some(3),
            vec![exit(8, 7, true), exit(9, 7, true), exit(7, 1, true)],
            &[1],
        );
        assert_eq!(judge(&o, Some(7), Some(2)), Vec::<String>::new());
        // Two counters into one stream (connections: TCP's closes and UDP's): their sum.
        let mut two = object(
            Some(1),
            vec![exit(8, 7, true), exit(9, 7, true), exit(7, 1, true)],
            &[1],
        );
        two.counters
            .as_mut()
            .unwrap()
            .insert("udp_streamed".into(), Some(2));
        assert_eq!(judge(&two, Some(7), Some(2)), Vec::<String>::new());
        // No family observed the stream's event (a forced family that has none for it).
        assert_eq!(
            judge(&object(None, vec![], &[7]), Some(7), Some(2)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_fault_is_named() {
        let o = object(Some(4), vec![exit(8, 7, true), exit(9, 1, false)], &[8]);
        let wrong = judge(&o, Some(7), Some(2));
        assert_eq!(
            wrong,
            [
                "process_exits: the programs submitted 4 records, the loader received 2",
                "process_exits: process 8's row is both in the stream and in the table",
                "process_exits: 1 exits of the workload's children, expected 2 (it forks and reaps them)",
                "process_exits: the workload's own exit is not there",
            ]
        );
    }
}
