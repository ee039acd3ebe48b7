//! Network flows as the loader reports them: the rows of a flow table (`struct kc_flow`,
//! includes/kc_collectors.h) and the records of a close stream (`struct kc_flow_close`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The kernel's TCP states (include/net/tcp_states.h), by the names and numbers it gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent,
    SynRecv,
    #[serde(rename = "FIN_WAIT1")]
    FinWait1,
    #[serde(rename = "FIN_WAIT2")]
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).expect("a state serializes");
        f.write_str(name.as_str().expect("as a string"))
    }
}

/// How a flow began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    /// Before the programs were attached: first seen in a later state (TCP).
    Unknown,
    /// TCP: its socket's connect. UDP: the socket's first datagram seen was one it sent.
    Connect,
    /// TCP: a listener's child. UDP: the first datagram seen was one it received.
    Accept,
}

/// A flow's transport.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FlowProtocol {
    /// Reports from before UDP flows carry no protocol: theirs are TCP's.
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for FlowProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlowProtocol::Tcp => "tcp",
            FlowProtocol::Udp => "udp",
        })
    }
}

impl FlowProtocol {
    /// The protocol numbered `n` by the kernel (IPPROTO_*).
    pub fn from_kernel(n: u8) -> Option<Self> {
        match n {
            6 => Some(FlowProtocol::Tcp),
            17 => Some(FlowProtocol::Udp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

/// The process that connected, or accepted the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlowOwner {
    pub tgid: u32,
    pub cgroup: u64,
    pub comm: String,
}

/// The socket's own counts (tcp_sock's: what `ss -ti` shows), as of the flow's `last_ns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlowCounts {
    /// Payload bytes transmitted, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes received; a FIN received counts 1.
    pub bytes_received: u64,
    /// Segments sent and received, pure ACKs included.
    pub segs_out: u64,
    pub segs_in: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
}

/// A UDP flow's datagrams, each way, since its `first_ns`: ours (the kernel keeps no count per
/// UDP socket), from every send and receive the object observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DatagramCounts {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub sent: u64,
    pub received: u64,
}

/// One TCP or UDP flow: a row of a flow table, or a close's final row. A UDP flow's state is
/// ESTABLISHED while its socket lives, CLOSE once destroyed; an unconnected UDP socket's peer
/// is the unspecified address and port 0 (`ss` shows `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Flow {
    #[serde(default)]
    pub protocol: FlowProtocol,
    pub family: IpFamily,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub state: TcpState,
    pub direction: FlowDirection,
    /// CLOCK_MONOTONIC of the first and the last event seen.
    pub first_ns: u64,
    pub last_ns: u64,
    /// None where no event the object observed ran in the owner's context.
    pub owner: Option<FlowOwner>,
    /// TCP's counts; None where the object cannot read them (legacy objects: CO-RE only), and
    /// for UDP flows.
    pub counts: Option<FlowCounts>,
    /// UDP's; None for TCP flows.
    #[serde(default)]
    pub datagrams: Option<DatagramCounts>,
}

impl Flow {
    /// `saddr:sport -> daddr:dport`, for a message.
    pub fn tuple(&self) -> String {
        let end = |a: &IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        format!(
            "{} -> {}",
            end(&self.saddr, self.sport),
            end(&self.daddr, self.dport)
        )
    }
}

/// A flow table's statistics over the pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlowTable {
    pub map: String,
    pub table_size: u64,
    pub rows: u64,
    pub insertions: u64,
    /// Rows the LRU forgot to make room: neither in the table nor moved into a close record.
    pub evicted: u64,
    /// Closed rows reported and then removed (where no stream took them).
    pub removed_closed: u64,
}

/// A flow's close (`struct kc_flow_close`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FlowClose {
    /// The table held the flow: `flow` is its row, which left the table.
    pub had_row: bool,
    pub flow: Flow,
}

impl TcpState {
    /// The state numbered `n` by the kernel (its discriminant here).
    pub fn from_kernel(n: u8) -> Option<Self> {
        use TcpState::*;
        Some(match n {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => return None,
        })
    }
}

/// `struct kc_flow`'s size (includes/kc_collectors.h): the rows of a flow table.
pub const FLOW_SIZE: usize = 128;
/// `struct kc_flow_close`'s: a socket's address and `has_row` (with 4 bytes reserved), then
/// its flow.
pub const FLOW_CLOSE_SIZE: usize = 16 + FLOW_SIZE;

/// The `known` bits of `struct kc_flow` (KC_FLOW_KNOWN_*).
const KNOWN_OWNER: u32 = 1;
const KNOWN_COUNTS: u32 = 2;
const KNOWN_DATAGRAMS: u32 = 4;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A flow table's row as the programs wrote it (`struct kc_flow`, in the host's byte order),
/// or None where it is shorter than the struct or names a family, protocol, state or direction
/// the kernel does not have.
pub fn decode_flow(b: &[u8]) -> Option<Flow> {
    let b = b.get(..FLOW_SIZE)?;
    let address = |at: usize, family: IpFamily| -> IpAddr {
        match family {
            IpFamily::Ipv4 => <[u8; 4]>::try_from(&b[at..at + 4]).expect("4 bytes").into(),
            IpFamily::Ipv6 => <[u8; 16]>::try_from(&b[at..at + 16])
                .expect("16 bytes")
                .into(),
        }
    };
    let family = match b[36] {
        2 => IpFamily::Ipv4,
        10 => IpFamily::Ipv6,
        _ => return None,
    };
    let direction = match b[39] {
        0 => FlowDirection::Unknown,
        1 => FlowDirection::Connect,
        2 => FlowDirection::Accept,
        _ => return None,
    };
    let known = u32_at(b, 40);
    let comm = &b[56..72];
    let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(comm.len())];
    Some(Flow {
        protocol: FlowProtocol::from_kernel(b[37])?,
        family,
        saddr: address(0, family),
        sport: u16_at(b, 32),
        daddr: address(16, family),
        dport: u16_at(b, 34),
        state: TcpState::from_kernel(b[38])?,
        direction,
        first_ns: u64_at(b, 72),
        last_ns: u64_at(b, 80),
        owner: (known & KNOWN_OWNER != 0).then(|| FlowOwner {
            tgid: u32_at(b, 44),
            cgroup: u64_at(b, 48),
            comm: String::from_utf8_lossy(comm).into_owned(),
        }),
        counts: (known & KNOWN_COUNTS != 0).then(|| FlowCounts {
            bytes_sent: u64_at(b, 88),
            bytes_received: u64_at(b, 96),
            segs_out: u64_at(b, 104),
            segs_in: u64_at(b, 112),
            retransmits: u64_at(b, 120),
        }),
        datagrams: (known & KNOWN_DATAGRAMS != 0).then(|| DatagramCounts {
            bytes_sent: u64_at(b, 88),
            bytes_received: u64_at(b, 96),
            sent: u64_at(b, 104),
            received: u64_at(b, 112),
        }),
    })
}

/// A close stream's record (`struct kc_flow_close`), or None as for decode_flow.
pub fn decode_flow_close(b: &[u8]) -> Option<FlowClose> {
    let b = b.get(..FLOW_CLOSE_SIZE)?;
    Some(FlowClose {
        had_row: u32_at(b, 8) != 0,
        flow: decode_flow(&b[16..])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the programs write it: 127.0.0.1:5 -> 127.0.0.1:6, CLOSE, accepted, owned by
    /// 7 ("init"), counts unknown.
    fn row() -> Vec<u8> {
        let mut b = vec![0u8; FLOW_SIZE];
        b[0..4].copy_from_slice(&[127, 0, 0, 1]);
        b[16..20].copy_from_slice(&[127, 0, 0, 1]);
        b[32..34].copy_from_slice(&5u16.to_ne_bytes());
        b[34..36].copy_from_slice(&6u16.to_ne_bytes());
        b[36] = 2;
        b[37] = 6;
        b[38] = 7;
        b[39] = 2;
        b[40..44].copy_from_slice(&KNOWN_OWNER.to_ne_bytes());
        b[44..48].copy_from_slice(&7u32.to_ne_bytes());
        b[56..60].copy_from_slice(b"init");
        b[72..80].copy_from_slice(&1u64.to_ne_bytes());
        b[80..88].copy_from_slice(&2u64.to_ne_bytes());
        b[88..96].copy_from_slice(&4096u64.to_ne_bytes());
        b
    }

    #[test]
    fn a_row_decodes_with_only_what_it_knows() {
        let f = decode_flow(&row()).unwrap();
        assert_eq!(f.tuple(), "127.0.0.1:5 -> 127.0.0.1:6");
        assert_eq!(
            (f.state, f.direction),
            (TcpState::Close, FlowDirection::Accept)
        );
        assert_eq!(
            f.owner.as_ref().map(|o| (o.tgid, o.comm.as_str())),
            Some((7, "init"))
        );
        assert_eq!(
            f.counts, None,
            "its counts' bit is clear: 4096 is not a figure"
        );
        let mut counted = row();
        counted[40] |= KNOWN_COUNTS as u8;
        assert_eq!(
            decode_flow(&counted).unwrap().counts.unwrap().bytes_sent,
            4096
        );
        let mut udp = row();
        udp[37] = 17;
        udp[40] = (KNOWN_OWNER | KNOWN_DATAGRAMS) as u8;
        udp[104..112].copy_from_slice(&3u64.to_ne_bytes());
        let udp = decode_flow(&udp).unwrap();
        assert_eq!((udp.protocol, udp.counts), (FlowProtocol::Udp, None));
        assert_eq!(
            udp.datagrams,
            Some(DatagramCounts {
                bytes_sent: 4096,
                bytes_received: 0,
                sent: 3,
                received: 0
            })
        );
        let mut close = vec![0u8; 16];
        close[8] = 1;
        close.extend(row());
        assert!(decode_flow_close(&close).unwrap().had_row);
    }

    #[test]
    fn a_short_or_impossible_row_is_none() {
        assert_eq!(decode_flow(&row()[..FLOW_SIZE - 1]), None);
        for (at, value) in [(36, 3u8), (37, 0), (37, 136), (38, 0), (38, 13), (39, 3)] {
            let mut b = row();
            b[at] = value;
            assert_eq!(decode_flow(&b), None, "byte {at} = {value}");
        }
        assert_eq!(decode_flow_close(&[0u8; FLOW_CLOSE_SIZE - 1]), None);
    }

    #[test]
    fn a_flow_parses_and_names_its_state_as_the_kernel() {
        let f: Flow = serde_json::from_str(
            r#"{"family": "ipv6", "saddr": "::1", "sport": 5, "daddr": "::1", "dport": 6,
                "state": "FIN_WAIT1", "direction": "accept", "first_ns": 1, "last_ns": 2,
                "owner": null, "counts": null}"#,
        )
        .unwrap();
        assert_eq!(
            (f.state, f.protocol, f.datagrams.clone()),
            (TcpState::FinWait1, FlowProtocol::Tcp, None),
            "a report from before UDP flows is TCP's"
        );
        assert_eq!(f.state.to_string(), "FIN_WAIT1");
        assert_eq!(TcpState::NewSynRecv.to_string(), "NEW_SYN_RECV");
        for n in 1..=12 {
            assert_eq!(TcpState::from_kernel(n).map(|s| s as u8), Some(n));
        }
        assert_eq!(f.tuple(), "[::1]:5 -> [::1]:6");
        let unknown = r#"{"family": "ipv4", "saddr": "1.2.3.4", "sport": 5, "daddr": "1.2.3.4",
            "dport": 6, "state": "OPEN", "direction": "connect", "first_ns": 1, "last_ns": 2,
            "owner": null, "counts": null}"#;
        assert!(serde_json::from_str::<Flow>(unknown).is_err());
    }
}
