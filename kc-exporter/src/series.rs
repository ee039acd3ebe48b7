//! Per-application rows as Prometheus series, bounded and never going backwards.
//!
//! Each scrape reads every row of every per-application table. A row's counters restart when
//! the LRU table evicts it and the process counts again (a new row from zero): the restart is
//! seen as a value below the last one, the last value carried, and counted
//! (`kc_exporter_row_restarts_total`). At most `max_series` series are exported as rows of
//! their own, the rows most active since the last scrape first (rows exported before win a
//! tie); what the others counted since the last scrape is added to the table's `other` row.
//! A row's own series is its count less what `other` received of it, so both only grow and
//! together they are the table's whole count. A row of an exited process is exported once,
//! then forgotten (the reader removes it from the table).

use std::collections::{BTreeMap, HashMap};

/// One row of a table as read: its id (tgid or cgroup id), whether its process has exited,
/// and its counters (None: unobserved in this pass, never exported).
#[derive(Debug, Clone, PartialEq)]
pub struct RowRead {
    pub id: u64,
    pub exited: bool,
    pub values: Vec<Option<u64>>,
}

/// A row exported this scrape: its id and each observed counter's value.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOut {
    pub id: u64,
    pub values: Vec<Option<u64>>,
}

/// What one table exports this scrape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableOut {
    pub rows: Vec<RowOut>,
    /// The counts of rows not exported on their own, summed since the exporter started.
    pub other: Vec<u64>,
    /// Rows this scrape folded into `other`.
    pub folded: u64,
    /// Rows seen restarting (evicted, then counting again), since the exporter started.
    pub restarts: u64,
}

#[derive(Debug, Clone, Default)]
struct RowState {
    /// The table's values at the last scrape.
    last: Vec<u64>,
    /// Carried over restarts: the row's whole count is `carried + last`.
    carried: Vec<u64>,
    /// What `other` received of this row.
    to_other: Vec<u64>,
    exported: bool,
}

/// The rows of every table across scrapes (table: an object's file name).
#[derive(Debug, Default)]
pub struct Rows {
    rows: HashMap<(String, u64), RowState>,
    other: BTreeMap<String, Vec<u64>>,
    restarts: BTreeMap<String, u64>,
}

impl Rows {
    /// One scrape of every table: `tables` maps a table to its rows; `alive(id)` says
    /// whether a row that is no longer in its table may come back (its process lives): such
    /// a row's state is kept so that its series cannot go backwards when it does.
    pub fn scrape(
        &mut self,
        tables: &BTreeMap<String, Vec<RowRead>>,
        max_series: usize,
        alive: &dyn Fn(u64) -> bool,
    ) -> BTreeMap<String, TableOut> {
        // Each row's whole count (restarts carried) and what it counted since the last scrape.
        let mut seen: Vec<(String, u64, Vec<u64>, u64, usize, bool)> = Vec::new();
        // The row each entry of `seen` was read as.
        let mut read: Vec<&RowRead> = Vec::new();
        for (table, rows) in tables {
            for r in rows {
                let st = self.rows.entry((table.clone(), r.id)).or_default();
                let n = r.values.len();
                st.last.resize(n, 0);
                st.carried.resize(n, 0);
                st.to_other.resize(n, 0);
                let mut restarted = false;
                let mut delta = vec![0u64; n];
                for (i, v) in r.values.iter().enumerate() {
                    let v = v.unwrap_or(0);
                    if v < st.last[i] {
                        restarted = true;
                        st.carried[i] += st.last[i];
                        st.last[i] = 0;
                    }
                    delta[i] = v - st.last[i];
                    st.last[i] = v;
                }
                if restarted {
                    *self.restarts.entry(table.clone()).or_default() += 1;
                }
                let activity = delta.iter().fold(0u64, |a, d| a.saturating_add(*d));
                let series = r.values.iter().filter(|v| v.is_some()).count();
                seen.push((table.clone(), r.id, delta, activity, series, st.exported));
                read.push(r);
            }
        }
        // The most active first; a row exported before keeps its place in a tie.
        let mut order: Vec<usize> = (0..seen.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&seen[a], &seen[b]);
            b.3.cmp(&a.3)
                .then(b.5.cmp(&a.5))
                .then(a.0.cmp(&b.0))
                .then(a.1.cmp(&b.1))
        });
        let mut budget = max_series;
        let mut chosen = vec![false; seen.len()];
        for i in order {
            if seen[i].4 <= budget {
                budget -= seen[i].4;
                chosen[i] = true;
            }
        }
        let mut out: BTreeMap<String, TableOut> = tables
            .iter()
            .map(|(t, rows)| {
                let n = rows.first().map_or(0, |r| r.values.len());
                let other = self.other.entry(t.clone()).or_default();
                other.resize(other.len().max(n), 0);
                (t.clone(), TableOut::default())
            })
            .collect();
        for (k, (table, id, delta, ..)) in seen.iter().enumerate() {
            let st = self
                .rows
                .get_mut(&(table.clone(), *id))
                .expect("seen above");
            let t = out.get_mut(table).expect("every table");
            st.exported = chosen[k];
            if chosen[k] {
                let values = read[k]
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.map(|_| st.carried[i] + st.last[i] - st.to_other[i]))
                    .collect();
                t.rows.push(RowOut { id: *id, values });
            } else {
                t.folded += 1;
                let other = self.other.get_mut(table).expect("every table");
                for (i, d) in delta.iter().enumerate() {
                    st.to_other[i] += d;
                    other[i] += d;
                }
            }
        }
        // Exited rows were exported once; rows gone from their table are kept while they may
        // come back.
        let exited: Vec<(String, u64)> = tables
            .iter()
            .flat_map(|(t, rows)| rows.iter().filter(|r| r.exited).map(|r| (t.clone(), r.id)))
            .collect();
        for k in exited {
            self.rows.remove(&k);
        }
        let in_tables: std::collections::HashSet<(&str, u64)> =
            seen.iter().map(|s| (s.0.as_str(), s.1)).collect();
        self.rows
            .retain(|(t, id), _| in_tables.contains(&(t.as_str(), *id)) || alive(*id));
        for (t, o) in &mut out {
            o.other = self.other.get(t).cloned().unwrap_or_default();
            o.restarts = self.restarts.get(t).copied().unwrap_or(0);
            o.rows.sort_by_key(|r| r.id);
        }
        out
    }
}

/// Keeps counters that restart (the objects loaded again after SIGHUP) from going backwards:
/// a value below the last one of its series carries the last one over.
#[derive(Debug, Default)]
pub struct Carry {
    series: HashMap<String, (u64, u64)>,
}

impl Carry {
    /// The exported value of series `key` whose source now reads `raw`.
    pub fn value(&mut self, key: &str, raw: u64) -> u64 {
        let (carried, last) = self.series.entry(key.to_string()).or_insert((0, 0));
        if raw < *last {
            *carried += *last;
        }
        *last = raw;
        *carried + raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, values: &[u64]) -> RowRead {
        RowRead {
            id,
            exited: false,
            values: values.iter().map(|&v| Some(v)).collect(),
        }
    }

    fn table(rows: Vec<RowRead>) -> BTreeMap<String, Vec<RowRead>> {
        BTreeMap::from([("vfs.bpf.o".to_string(), rows)])
    }

    fn values(o: &TableOut, id: u64) -> Option<Vec<Option<u64>>> {
        o.rows.iter().find(|r| r.id == id).map(|r| r.values.clone())
    }

    #[test]
    fn an_evicted_row_that_counts_again_does_not_go_backwards() {
        let mut rows = Rows::default();
        let alive = |_| true;
        rows.scrape(&table(vec![row(7, &[10, 100])]), 100, &alive);
        // Evicted, then five more reads: the table restarts the row from zero.
        let out = rows.scrape(&table(vec![row(7, &[5, 50])]), 100, &alive);
        let t = &out["vfs.bpf.o"];
        assert_eq!(values(t, 7), Some(vec![Some(15), Some(150)]));
        assert_eq!(t.restarts, 1);
        let out = rows.scrape(&table(vec![row(7, &[6, 50])]), 100, &alive);
        assert_eq!(
            values(&out["vfs.bpf.o"], 7),
            Some(vec![Some(16), Some(150)])
        );
    }

    #[test]
    fn rows_over_the_budget_are_summed_into_other_and_every_series_only_grows() {
        let mut rows = Rows::default();
        let alive = |_| true;
        // Two series per row, room for two rows.
        let out = rows.scrape(
            &table(vec![row(1, &[1, 1]), row(2, &[50, 0]), row(3, &[20, 0])]),
            4,
            &alive,
        );
        let t = &out["vfs.bpf.o"];
        assert_eq!(t.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!((t.other.clone(), t.folded), (vec![1, 1], 1));
        // Row 1 becomes the busiest: it is exported, row 3 folds; row 1's own series starts
        // after what other already holds of it, other keeps growing.
        let out = rows.scrape(
            &table(vec![row(1, &[101, 1]), row(2, &[60, 0]), row(3, &[21, 0])]),
            4,
            &alive,
        );
        let t = &out["vfs.bpf.o"];
        assert_eq!(t.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(values(t, 1), Some(vec![Some(100), Some(0)]));
        assert_eq!(t.other, vec![2, 1]);
        // Every count is in exactly one series: 101 + 60 + 21 reads in all.
        let own: u64 = t.rows.iter().map(|r| r.values[0].unwrap()).sum::<u64>();
        assert_eq!(
            own + t.other[0] + 20,
            101 + 60 + 21,
            "row 3's 20 stay in its own (now unexported) series"
        );
    }

    #[test]
    fn unobserved_counters_take_no_series_and_are_never_exported() {
        let mut rows = Rows::default();
        let r = RowRead {
            id: 4,
            exited: false,
            values: vec![Some(3), None],
        };
        let out = rows.scrape(&table(vec![r]), 1, &|_| true);
        assert_eq!(values(&out["vfs.bpf.o"], 4), Some(vec![Some(3), None]));
    }

    #[test]
    fn an_exited_row_is_exported_once_then_forgotten() {
        let mut rows = Rows::default();
        let mut r = row(9, &[4]);
        r.exited = true;
        let out = rows.scrape(&table(vec![r]), 10, &|_| true);
        assert_eq!(values(&out["vfs.bpf.o"], 9), Some(vec![Some(4)]));
        assert!(rows.rows.is_empty());
        // A row gone from its table stays known while its process lives, then not.
        rows.scrape(&table(vec![row(5, &[1])]), 10, &|_| true);
        rows.scrape(&table(vec![]), 10, &|id| id == 5);
        assert_eq!(rows.rows.len(), 1);
        rows.scrape(&table(vec![]), 10, &|_| false);
        assert!(rows.rows.is_empty());
    }

    #[test]
    fn a_carried_series_never_goes_backwards() {
        let mut c = Carry::default();
        assert_eq!(c.value("a", 5), 5);
        assert_eq!(c.value("a", 7), 7);
        assert_eq!(c.value("a", 2), 9, "restarted from zero: 7 carried");
        assert_eq!(c.value("b", 1), 1);
    }
}
