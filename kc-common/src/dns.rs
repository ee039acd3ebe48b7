//! DNS servers as the loader reports them: the rows of a server table (`struct kc_dns_server`
//! keyed by `struct kc_dns_server_key`, includes/kc_collectors.h), what each server was asked
//! and answered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::flow::IpFamily;

/// Slots of a latency histogram (`KC_HIST_SLOTS`): slot `s` holds durations of `2^s` to
/// `2^(s+1)` microseconds.
pub const HIST_SLOTS: usize = 32;

/// `sizeof(struct kc_dns_server_key)`: a family (u32) and 16 bytes of address.
pub const SERVER_KEY_SIZE: usize = 20;

/// `sizeof(struct kc_dns_server)`: queries, four response codes, timeouts, the histogram.
pub const SERVER_SIZE: usize = 8 * (1 + 4 + 1 + HIST_SLOTS);

/// A server's answers by response code (the dns collector's counters of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsResponses {
    pub noerror: u64,
    pub nxdomain: u64,
    pub servfail: u64,
    pub rcode_other: u64,
}

impl DnsResponses {
    /// Every answer, whatever its code.
    pub fn total(&self) -> u64 {
        self.noerror + self.nxdomain + self.servfail + self.rcode_other
    }
}

/// One DNS server: what the host's processes asked it and what it answered. A figure is None
/// where the pass did not observe the counter it adds to (`query`, `response`, `timeout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsServer {
    pub server: IpAddr,
    pub family: IpFamily,
    /// Query messages sent to it, resends included.
    pub queries: Option<u64>,
    /// Its answers to pending queries (the sender's address a receive wrote; where none, the
    /// server the query was last sent to).
    pub responses: Option<DnsResponses>,
    /// Those answers by time since the query's last send: log2 microsecond slots.
    pub latency: Option<Vec<u64>>,
    /// Queries still unanswered when their socket was closed, on sockets that asked this
    /// server alone (the collector's `timeout_unattributed` counts the others).
    pub timeouts: Option<u64>,
}

/// A server table's statistics over the pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerTable {
    pub map: String,
    pub table_size: u64,
    pub rows: u64,
    /// Rows the programs added (the collector's `servers_tracked`); None where the pass did
    /// not observe it.
    pub insertions: Option<u64>,
    /// Rows the LRU forgot to make room; None with the insertions.
    pub evicted: Option<u64>,
}

/// Which of a row's figures the pass observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServersSeen {
    pub queries: bool,
    pub responses: bool,
    pub timeouts: bool,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A server table's row as the programs wrote it (host byte order), or None where the key or
/// value is shorter than its struct or the key names a family other than IPv4's or IPv6's.
pub fn decode_dns_server(key: &[u8], value: &[u8], seen: ServersSeen) -> Option<DnsServer> {
    let (key, b) = (key.get(..SERVER_KEY_SIZE)?, value.get(..SERVER_SIZE)?);
    let (family, server): (IpFamily, IpAddr) =
        match u32::from_ne_bytes(key[..4].try_into().expect("4 bytes")) {
            2 => (
                IpFamily::Ipv4,
                <[u8; 4]>::try_from(&key[4..8]).expect("4 bytes").into(),
            ),
            10 => (
                IpFamily::Ipv6,
                <[u8; 16]>::try_from(&key[4..20]).expect("16 bytes").into(),
            ),
            _ => return None,
        };
    Some(DnsServer {
        server,
        family,
        queries: seen.queries.then(|| u64_at(b, 0)),
        responses: seen.responses.then(|| DnsResponses {
            noerror: u64_at(b, 8),
            nxdomain: u64_at(b, 16),
            servfail: u64_at(b, 24),
            rcode_other: u64_at(b, 32),
        }),
        latency: seen
            .responses
            .then(|| (0..HIST_SLOTS).map(|s| u64_at(b, 48 + 8 * s)).collect()),
        timeouts: seen.timeouts.then(|| u64_at(b, 40)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(family: u32, addr: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut key = vec![0u8; SERVER_KEY_SIZE];
        key[..4].copy_from_slice(&family.to_ne_bytes());
        key[4..4 + addr.len()].copy_from_slice(addr);
        let mut value = vec![0u8; SERVER_SIZE];
        for (i, v) in [
            (0, 8u64),
            (8, 3),
            (16, 2),
            (24, 1),
            (40, 1),
            (48 + 8 * 5, 6),
        ] {
            value[i..i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        (key, value)
    }

    const ALL: ServersSeen = ServersSeen {
        queries: true,
        responses: true,
        timeouts: true,
    };

    #[test]
    fn a_row_decodes_by_its_family() {
        let (key, value) = row(2, &[127, 0, 0, 1]);
        let s = decode_dns_server(&key, &value, ALL).expect("a row");
        assert_eq!(s.server, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.family, IpFamily::Ipv4);
        assert_eq!(s.queries, Some(8));
        let r = s.responses.expect("responses");
        assert_eq!((r.noerror, r.nxdomain, r.servfail, r.total()), (3, 2, 1, 6));
        assert_eq!(s.timeouts, Some(1));
        let latency = s.latency.expect("latency");
        assert_eq!(
            (latency.len(), latency[5], latency.iter().sum::<u64>()),
            (32, 6, 6)
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        let (key, value) = row(10, &v6);
        assert_eq!(
            decode_dns_server(&key, &value, ALL).unwrap().server,
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn what_the_pass_did_not_observe_is_none_never_zero() {
        let (key, value) = row(2, &[10, 0, 0, 53]);
        let s = decode_dns_server(
            &key,
            &value,
            ServersSeen {
                queries: true,
                ..ServersSeen::default()
            },
        )
        .unwrap();
        assert_eq!(
            (s.queries, s.responses, s.latency, s.timeouts),
            (Some(8), None, None, None)
        );
    }

    #[test]
    fn a_short_row_or_an_unknown_family_is_none() {
        let (key, value) = row(2, &[127, 0, 0, 1]);
        assert!(decode_dns_server(&key[..19], &value, ALL).is_none());
        assert!(decode_dns_server(&key, &value[..SERVER_SIZE - 1], ALL).is_none());
        let (key, value) = row(1, &[0; 4]);
        assert!(decode_dns_server(&key, &value, ALL).is_none());
    }
}
