//! An object's maps read by its plan into the report: the totals (per-CPU values summed),
//! the per-application rows (those of exited processes reported once, then removed), the
//! table's statistics from the ctrl map, histograms and per-device counts; each counter
//! nobody observed is null, with why.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use kc_common::dns::{
    decode_dns_server, DnsServer, ServerTable, ServersSeen, SERVER_KEY_SIZE, SERVER_SIZE,
};
use kc_common::flow::{decode_flow, Flow, FlowTable, TcpState, FLOW_SIZE};
use kc_common::plan::{CounterPlan, MapPlan, MapRole};
use kc_common::report::{evicted, AppsTable, GroupBy, MapReads, ProcessExit, Row, StreamReport};

use crate::attach::{map_fd, Loaded};
use crate::sys;
use crate::Options;

/// Why `c` is not observed in this pass, or None where every event that feeds it was
/// observed by a family not blind to it (a count of some of its events only would be a false
/// number). As kc-loader judges it (co-re/loader/kc_observed.c).
pub fn unobserved(c: &CounterPlan, loaded: &Loaded) -> Option<String> {
    if let Some(why) = &c.unobserved {
        return Some(why.clone());
    }
    if c.events.is_empty() {
        return Some("it names no event".into());
    }
    c.events.iter().find_map(|event| {
        if !loaded.plan.events.iter().any(|e| &e.event == event) {
            return Some(format!("the object has no program for its event {event}"));
        }
        match loaded.families.get(event) {
            None => Some(format!(
                "no family observes its event {event} on this kernel"
            )),
            Some(f) => c
                .blind
                .get(f)
                .map(|blind| format!("the {f} family observes {event}, but {blind}")),
        }
    })
}

/// The counters' values in a value of the counter struct (u64 each, in order).
fn u64s(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Each counter's value by name, None where unobserved (`observed`: per counter, in order;
/// worked out once per table, not per row).
fn named(
    counters: &[CounterPlan],
    values: impl Iterator<Item = u64>,
    observed: &[bool],
) -> BTreeMap<String, Option<u64>> {
    counters
        .iter()
        .zip(values)
        .zip(observed)
        .map(|((c, v), &seen)| (c.name.clone(), seen.then_some(v)))
        .collect()
}

/// `struct kc_process_exit` (includes/kc_collectors.h): the bytes before its row.
const EXIT_HEAD: usize = 48;

/// A process exit record, or None where it is shorter than the object's struct.
fn process_exit(bytes: &[u8], counters: &[CounterPlan], observed: &[bool]) -> Option<ProcessExit> {
    let row_bytes = bytes.get(EXIT_HEAD..EXIT_HEAD + 8 * counters.len())?;
    let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let comm = &bytes[32..48];
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
    let tgid = u32_at(16);
    Some(ProcessExit {
        tgid,
        ppid: u32_at(20),
        comm: String::from_utf8_lossy(comm).into_owned(),
        exit_code: u32_at(24),
        start_ns: u64_at(0),
        exit_ns: u64_at(8),
        row: (u32_at(28) != 0).then(|| Row {
            tgid: Some(tgid),
            cgroup: None,
            exited: true,
            counters: named(counters, u64s(row_bytes), observed),
        }),
    })
}

/// Takes every record the object's stream maps hold (their rings are polled at each read:
/// a record the ring had no room for kept its row in the table, where the walk finds it).
fn drain_streams(
    loaded: &mut Loaded,
    observed: &[bool],
) -> std::io::Result<BTreeMap<String, StreamReport>> {
    let mut out = BTreeMap::new();
    let Some(ebpf) = loaded.ebpf.as_mut() else {
        return Ok(out);
    };
    for m in loaded
        .plan
        .maps
        .iter()
        .filter(|m| m.role == MapRole::Stream)
    {
        let Some(map) = ebpf.map_mut(&m.name) else {
            continue;
        };
        let mut ring = aya::maps::RingBuf::try_from(map).map_err(std::io::Error::other)?;
        let record = m.value_type.as_deref().unwrap_or("");
        let (is_exit, is_close) = (
            record == "struct kc_process_exit",
            record == "struct kc_flow_close",
        );
        let (mut exits, mut closes) = (Vec::new(), Vec::new());
        let mut s = StreamReport {
            record: record.trim_start_matches("struct ").to_string(),
            ..StreamReport::default()
        };
        while let Some(item) = ring.next() {
            s.received += 1;
            s.bytes += item.len() as u64;
            // Whether the record carried its row, once decoded.
            let carried = if is_exit {
                process_exit(&item, &loaded.plan.counters, observed).map(|e| {
                    let row = e.row.is_some();
                    s.not_listed += u64::from(!listed(&mut exits, e));
                    row
                })
            } else if is_close {
                kc_common::flow::decode_flow_close(&item).map(|c| {
                    let row = c.had_row;
                    s.not_listed += u64::from(!listed(&mut closes, c));
                    row
                })
            } else {
                continue;
            };
            match carried {
                None => s.malformed += 1,
                Some(row) => s.rows += u64::from(row),
            }
        }
        s.exits = is_exit.then_some(exits);
        s.closes = is_close.then_some(closes);
        out.insert(m.name.clone(), s);
    }
    Ok(out)
}

/// Records listed per stream and read (kc-loader's KC_STREAM_LISTED); the rest are counted.
const STREAM_LISTED: usize = 4096;

/// Lists `record` where the stream's list has room: whether it did.
fn listed<T>(list: &mut Vec<T>, record: T) -> bool {
    let room = list.len() < STREAM_LISTED;
    if room {
        list.push(record);
    }
    room
}

/// Fills the report of `loaded` from its maps.
pub fn read(loaded: &mut Loaded, options: &Options, cpus: usize) -> std::io::Result<()> {
    let (group_by, reads) = (options.group_by, options.map_reads);
    let unobserved: BTreeMap<String, String> = loaded
        .plan
        .counters
        .iter()
        .filter_map(|c| Some((c.name.clone(), self::unobserved(c, loaded)?)))
        .collect();
    let observed: Vec<bool> = loaded
        .plan
        .counters
        .iter()
        .map(|c| !unobserved.contains_key(&c.name))
        .collect();
    // Before the table's walk: a row is in the stream or in the table, never neither.
    let streams = drain_streams(loaded, &observed)?;
    let streamed_rows: u64 = streams.values().map(|s| s.rows).sum();
    let (Some(ebpf), Some(cpus)) = (&loaded.ebpf, NonZeroUsize::new(cpus)) else {
        return Ok(());
    };
    let plan = &loaded.plan;
    let map = |role: MapRole| -> Option<(&MapPlan, &aya::maps::Map)> {
        let m = plan.maps.iter().find(|m| m.role == role)?;
        Some((m, ebpf.map(&m.name)?))
    };
    let n = plan.counters.len();
    let mut report = std::mem::take(&mut loaded.report);
    if let Some((m, totals)) = map(MapRole::Totals) {
        let stride = sys::value_slot(m.value_size.unwrap_or(0));
        let mut value = vec![0u8; stride * cpus.get()];
        sys::lookup(map_fd(totals)?, &0u32.to_ne_bytes(), &mut value)?;
        let mut sums = vec![0u64; n];
        for cpu in value.chunks_exact(stride.max(8)) {
            for (s, v) in sums.iter_mut().zip(u64s(cpu)) {
                *s += v;
            }
        }
        report.counters = Some(named(&plan.counters, sums.into_iter(), &observed));
        report.unobserved = Some(unobserved.clone());
    }
    if let (Some((m, apps)), Some((_, ctrl)), false) = (
        map(MapRole::Apps),
        map(MapRole::Ctrl),
        group_by == GroupBy::None,
    ) {
        let fd = map_fd(apps)?;
        let (mut rows, mut gone) = (Vec::new(), Vec::new());
        let visit = &mut |key: &[u8], value: &[u8]| {
            let id = u64::from_ne_bytes(key.try_into().expect("8-byte keys"));
            // SAFETY: kill with signal 0 only asks whether the process exists.
            let exited = group_by == GroupBy::Process
                && unsafe { libc::kill(id as libc::pid_t, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if exited {
                gone.extend_from_slice(key);
            }
            rows.push(Row {
                tgid: (group_by == GroupBy::Process).then_some(id as u32),
                cgroup: (group_by == GroupBy::Cgroup).then_some(id),
                exited,
                counters: named(&plan.counters, u64s(value), &observed),
            });
        };
        sys::walk(fd, 8, m.value_size.unwrap_or(0) as usize, reads, visit)?;
        let removed = sys::delete_all(fd, &gone, 8, reads)? as u64;
        let mut ctrl_value = [0u8; 24];
        sys::lookup(map_fd(ctrl)?, &0u32.to_ne_bytes(), &mut ctrl_value)?;
        let ctrl: Vec<u64> = u64s(&ctrl_value).collect();
        let (insertions, failures) = (ctrl[1], ctrl[2]);
        report.apps = Some(AppsTable {
            group_by,
            table_size: u64::from(m.max_entries),
            rows: rows.len() as u64,
            insertions,
            // Rows of exited processes are removed only now, after the walk.
            evicted: evicted(insertions, rows.len() as u64, streamed_rows),
            failures,
            removed_exited: removed,
        });
        match group_by {
            GroupBy::Cgroup => report.per_cgroup = Some(rows),
            _ => report.per_process = Some(rows),
        }
    }
    if let Some((m, flows)) = map(MapRole::Flows) {
        // TCP's rows and UDP's, each counted under its own event: one no family observed
        // inserted none.
        let inserted = ["tracked", "udp_tracked"]
            .iter()
            .map(|c| report.total(c).unwrap_or(0))
            .sum();
        let (rows, table) = read_flows(map_fd(flows)?, m, reads, inserted, streamed_rows)?;
        report.flows = Some(rows);
        report.flow_table = Some(table);
    }
    if let Some((m, servers)) = map(MapRole::DnsServers) {
        let seen = |c: &str| report.total(c).is_some();
        let seen_figures = ServersSeen {
            queries: seen("query"),
            responses: seen("response"),
            timeouts: seen("timeout"),
        };
        let (rows, table) = read_dns_servers(
            map_fd(servers)?,
            m,
            reads,
            report.total("servers_tracked"),
            seen_figures,
        )?;
        report.dns_servers = Some(rows);
        report.server_table = Some(table);
    }
    let mut histograms = BTreeMap::new();
    let mut devices = BTreeMap::new();
    for m in &plan.maps {
        let Some(map) = ebpf.map(&m.name) else {
            continue;
        };
        match m.role {
            MapRole::Histogram => {
                histograms.insert(
                    m.name.clone(),
                    read_histogram(map_fd(map)?, m, cpus, reads)?,
                );
            }
            MapRole::Devices => {
                devices.insert(m.name.clone(), read_devices(map_fd(map)?, m, cpus, reads)?);
            }
            _ => {}
        }
    }
    report.histograms = Some(histograms);
    report.devices = Some(devices);
    report.streams = Some(streams);
    loaded.report = report;
    Ok(())
}

/// A flow table's rows (`struct kc_flow` keyed by a socket's address), then the removal of
/// the closed ones: they are reported once, as kc-loader does (co-re/loader/kc_flows.c).
/// `inserted`: the rows the programs added (the collector's `tracked` and `udp_tracked`); `streamed`: those they
/// moved into a close record. A row that does not decode is left out; a table whose rows are
/// not this agent's `struct kc_flow` is refused, as kc-loader refuses it.
fn read_flows(
    fd: std::os::fd::BorrowedFd<'_>,
    m: &MapPlan,
    reads: MapReads,
    inserted: u64,
    streamed: u64,
) -> std::io::Result<(Vec<Flow>, FlowTable)> {
    if m.value_size != Some(FLOW_SIZE as u32) {
        return Err(std::io::Error::other(format!(
            "{}'s rows are {:?} bytes, this agent's struct kc_flow {FLOW_SIZE}: use the agent of the object's release",
            m.name, m.value_size
        )));
    }
    let (mut rows, mut closed) = (Vec::new(), Vec::new());
    sys::walk(fd, 8, FLOW_SIZE, reads, &mut |key: &[u8], value: &[u8]| {
        if let Some(f) = decode_flow(value) {
            if f.state == TcpState::Close {
                closed.extend_from_slice(key);
            }
            rows.push(f);
        }
    })?;
    let removed_closed = sys::delete_all(fd, &closed, 8, reads)? as u64;
    let table = FlowTable {
        map: m.name.clone(),
        table_size: u64::from(m.max_entries),
        rows: rows.len() as u64,
        insertions: inserted,
        evicted: evicted(inserted, rows.len() as u64, streamed),
        removed_closed,
    };
    Ok((rows, table))
}

/// A DNS server table's rows (`struct kc_dns_server` keyed by `struct kc_dns_server_key`), as
/// kc-loader reads them (co-re/loader/kc_dns_servers.c): figures of counters the pass did not
/// observe are None; `inserted` is the collector's `servers_tracked`. A table whose rows are not
/// this agent's structs is refused, as kc-loader refuses it.
fn read_dns_servers(
    fd: std::os::fd::BorrowedFd<'_>,
    m: &MapPlan,
    reads: MapReads,
    inserted: Option<u64>,
    seen: ServersSeen,
) -> std::io::Result<(Vec<DnsServer>, ServerTable)> {
    if m.value_size != Some(SERVER_SIZE as u32) || m.key_size != Some(SERVER_KEY_SIZE as u32) {
        return Err(std::io::Error::other(format!(
            "{}'s rows are {:?} bytes under keys of {:?}, this agent's struct kc_dns_server {SERVER_SIZE} under struct kc_dns_server_key {SERVER_KEY_SIZE}: use the agent of the object's release",
            m.name, m.value_size, m.key_size
        )));
    }
    let mut rows = Vec::new();
    sys::walk(
        fd,
        SERVER_KEY_SIZE,
        SERVER_SIZE,
        reads,
        &mut |key: &[u8], value: &[u8]| rows.extend(decode_dns_server(key, value, seen)),
    )?;
    let table = ServerTable {
        map: m.name.clone(),
        table_size: u64::from(m.max_entries),
        rows: rows.len() as u64,
        insertions: inserted,
        evicted: inserted.map(|i| evicted(i, rows.len() as u64, 0)),
    };
    Ok((rows, table))
}

/// Slots in a latency histogram (`KC_HIST_SLOTS`).
const HIST_SLOTS: usize = 32;

/// The value copies one lookup of map `m` returns: one per CPU for a per-CPU map, else one.
fn value_copies(m: &MapPlan, cpus: NonZeroUsize) -> usize {
    if sys::PERCPU_MAP_TYPES.contains(&m.map_type) {
        cpus.get()
    } else {
        1
    }
}

/// Counts keyed by `struct kc_hist_key { u32 id; u32 slot; }` (per CPU where the map is):
/// id → slot counts.
fn read_histogram(
    fd: std::os::fd::BorrowedFd<'_>,
    m: &MapPlan,
    cpus: NonZeroUsize,
    reads: MapReads,
) -> std::io::Result<BTreeMap<String, Vec<u64>>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, value) in sys::entries(fd, 8, 8 * value_copies(m, cpus), reads)? {
        let id = u32::from_ne_bytes(key[..4].try_into().expect("4 bytes"));
        let slot = u32::from_ne_bytes(key[4..].try_into().expect("4 bytes")) as usize;
        if slot >= HIST_SLOTS {
            continue;
        }
        let slots = out
            .entry(id.to_string())
            .or_insert_with(|| vec![0; HIST_SLOTS]);
        slots[slot] += u64s(&value).sum::<u64>();
    }
    Ok(out)
}

/// Counts per device (`major << 20 | minor`, a u32 key), per CPU where the map is per CPU.
fn read_devices(
    fd: std::os::fd::BorrowedFd<'_>,
    m: &MapPlan,
    cpus: NonZeroUsize,
    reads: MapReads,
) -> std::io::Result<BTreeMap<String, u64>> {
    Ok(sys::entries(fd, 4, 8 * value_copies(m, cpus), reads)?
        .into_iter()
        .map(|(key, value)| {
            let dev = u32::from_ne_bytes(key[..].try_into().expect("4-byte keys"));
            (
                format!("{}:{}", dev >> 20, dev & 0xfffff),
                u64s(&value).sum::<u64>(),
            )
        })
        .collect())
}
