// SPDX-License-Identifier: BSD-2-Clause

// Flow tables (role "flows": struct kc_flow rows keyed by a socket's address) and flow close
// records (struct kc_flow_close), decoded as kc-loader reports them (includes/kc_collectors.h).

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	flowSize       = 128 // sizeof(struct kc_flow)
	flowCloseSize  = 16 + flowSize
	knownOwner     = 1 // KC_FLOW_KNOWN_OWNER
	knownCounts    = 2 // KC_FLOW_KNOWN_COUNTS
	knownDatagrams = 4 // KC_FLOW_KNOWN_DATAGRAMS
	tcpClose       = 7 // TCP_CLOSE
)

// tcpStates are the kernel's TCP state names, by number (include/net/tcp_states.h).
var tcpStates = []string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

var directions = []string{"unknown", "connect", "accept"}

// protocols are the flows' transports, by the kernel's IPPROTO_* numbers.
var protocols = map[byte]string{6: "tcp", 17: "udp"}

type Flow struct {
	Protocol  string      `json:"protocol"`
	Family    string      `json:"family"`
	Saddr     string      `json:"saddr"`
	Sport     uint16      `json:"sport"`
	Daddr     string      `json:"daddr"`
	Dport     uint16      `json:"dport"`
	State     string      `json:"state"`
	Direction string      `json:"direction"`
	FirstNs   uint64      `json:"first_ns"`
	LastNs    uint64      `json:"last_ns"`
	Owner     *FlowOwner  `json:"owner"`
	Counts    *FlowCounts `json:"counts"`
	Datagrams *Datagrams  `json:"datagrams"`
}

type FlowOwner struct {
	Tgid   uint32 `json:"tgid"`
	Cgroup uint64 `json:"cgroup"`
	Comm   string `json:"comm"`
}

type FlowCounts struct {
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
	SegsOut       uint64 `json:"segs_out"`
	SegsIn        uint64 `json:"segs_in"`
	Retransmits   uint64 `json:"retransmits"`
}

// Datagrams are a UDP flow's, each way, since it was first seen (ours: the kernel keeps none
// per socket).
type Datagrams struct {
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
	Sent          uint64 `json:"sent"`
	Received      uint64 `json:"received"`
}

type FlowTable struct {
	Map           string `json:"map"`
	TableSize     uint64 `json:"table_size"`
	Rows          uint64 `json:"rows"`
	Insertions    uint64 `json:"insertions"`
	Evicted       uint64 `json:"evicted"`
	RemovedClosed uint64 `json:"removed_closed"`
}

type FlowClose struct {
	HadRow bool `json:"had_row"`
	Flow   Flow `json:"flow"`
}

// decodeFlow decodes one struct kc_flow; false where it is short or names a family, protocol,
// state or direction the kernel does not have.
func decodeFlow(b []byte) (Flow, bool) {
	if len(b) < flowSize {
		return Flow{}, false
	}
	u16 := func(at int) uint16 { return binary.NativeEndian.Uint16(b[at:]) }
	u32 := func(at int) uint32 { return binary.NativeEndian.Uint32(b[at:]) }
	u64 := func(at int) uint64 { return binary.NativeEndian.Uint64(b[at:]) }
	f := Flow{Sport: u16(32), Dport: u16(34), FirstNs: u64(72), LastNs: u64(80)}
	protocol, ok := protocols[b[37]]
	if !ok {
		return Flow{}, false
	}
	f.Protocol = protocol
	switch b[36] {
	case 2:
		f.Family = "ipv4"
		f.Saddr = netip.AddrFrom4([4]byte(b[0:4])).String()
		f.Daddr = netip.AddrFrom4([4]byte(b[16:20])).String()
	case 10:
		f.Family = "ipv6"
		f.Saddr = netip.AddrFrom16([16]byte(b[0:16])).String()
		f.Daddr = netip.AddrFrom16([16]byte(b[16:32])).String()
	default:
		return Flow{}, false
	}
	state, direction := int(b[38]), int(b[39])
	if state < 1 || state >= len(tcpStates) || direction >= len(directions) {
		return Flow{}, false
	}
	f.State, f.Direction = tcpStates[state], directions[direction]
	known := u32(40)
	if known&knownOwner != 0 {
		comm := b[56:72]
		if i := bytes.IndexByte(comm, 0); i >= 0 {
			comm = comm[:i]
		}
		f.Owner = &FlowOwner{Tgid: u32(44), Cgroup: u64(48), Comm: string(comm)}
	}
	if known&knownCounts != 0 {
		f.Counts = &FlowCounts{BytesSent: u64(88), BytesReceived: u64(96), SegsOut: u64(104),
			SegsIn: u64(112), Retransmits: u64(120)}
	}
	if known&knownDatagrams != 0 {
		f.Datagrams = &Datagrams{BytesSent: u64(88), BytesReceived: u64(96), Sent: u64(104), Received: u64(112)}
	}
	return f, true
}

// decodeFlowClose decodes one struct kc_flow_close, as decodeFlow.
func decodeFlowClose(b []byte) (FlowClose, bool) {
	if len(b) < flowCloseSize {
		return FlowClose{}, false
	}
	f, ok := decodeFlow(b[16:])
	return FlowClose{HadRow: binary.NativeEndian.Uint32(b[8:]) != 0, Flow: f}, ok
}

// readFlows walks the object's flow table, then removes its closed rows (reported once, as
// kc-loader does); inserted is the collector's "tracked" and "udp_tracked" counters, streamed the rows its close
// records carried.
func (o *object) readFlows(inserted, streamed uint64) error {
	mp := o.plan.mapOf("flows")
	if mp == nil || o.maps[mp.Name] == nil {
		return nil
	}
	m := o.maps[mp.Name]
	rows := []Flow{}
	var closed []uint64
	var key uint64
	var value []byte
	it := m.Iterate()
	for it.Next(&key, &value) {
		if f, ok := decodeFlow(value); ok {
			if f.State == tcpStates[tcpClose] {
				closed = append(closed, key)
			}
			rows = append(rows, f)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", mp.Name, err)
	}
	removed := uint64(0)
	for _, k := range closed {
		if m.Delete(k) == nil {
			removed++
		}
	}
	o.report.Flows = &rows
	o.report.FlowTable = &FlowTable{Map: mp.Name, TableSize: uint64(mp.MaxEntries), Rows: uint64(len(rows)),
		Insertions: inserted, Evicted: evicted(inserted, uint64(len(rows)), streamed), RemovedClosed: removed}
	return nil
}
