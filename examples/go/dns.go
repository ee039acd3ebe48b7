// SPDX-License-Identifier: BSD-2-Clause

// DNS server tables (role "dns-servers": struct kc_dns_server rows keyed by struct
// kc_dns_server_key), decoded as kc-loader reports them (includes/kc_collectors.h).

package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	serverKeySize = 20                          // sizeof(struct kc_dns_server_key)
	serverSize    = 8 * (1 + 4 + 1 + histSlots) // sizeof(struct kc_dns_server)
)

// DNSResponses are a server's answers by response code (the dns counters of the same names).
type DNSResponses struct {
	Noerror    uint64 `json:"noerror"`
	Nxdomain   uint64 `json:"nxdomain"`
	Servfail   uint64 `json:"servfail"`
	RcodeOther uint64 `json:"rcode_other"`
}

// DNSServer is what one server was asked and answered; a figure whose counter (query,
// response, timeout) the pass did not observe is null, never 0.
type DNSServer struct {
	Server    string        `json:"server"`
	Family    string        `json:"family"`
	Queries   *uint64       `json:"queries"`
	Responses *DNSResponses `json:"responses"`
	Latency   []uint64      `json:"latency"` // log2 microsecond slots; null with Responses
	Timeouts  *uint64       `json:"timeouts"`
}

// ServerTable is a server table's statistics; Insertions and Evicted are null where the
// collector's servers_tracked was not observed.
type ServerTable struct {
	Map        string  `json:"map"`
	TableSize  uint64  `json:"table_size"`
	Rows       uint64  `json:"rows"`
	Insertions *uint64 `json:"insertions"`
	Evicted    *uint64 `json:"evicted"`
}

// decodeDNSServer decodes a row as the programs wrote it (host byte order); ok is false for a
// short key or value, or a family other than AF_INET's or AF_INET6's.
func decodeDNSServer(key, b []byte, seen func(string) *uint64) (DNSServer, bool) {
	if len(key) < serverKeySize || len(b) < serverSize {
		return DNSServer{}, false
	}
	u64 := func(at int) uint64 { return binary.NativeEndian.Uint64(b[at:]) }
	some := func(counter string, v uint64) *uint64 {
		if seen(counter) == nil {
			return nil
		}
		return &v
	}
	var s DNSServer
	switch binary.NativeEndian.Uint32(key) {
	case 2:
		s.Family, s.Server = "ipv4", netip.AddrFrom4([4]byte(key[4:8])).String()
	case 10:
		s.Family, s.Server = "ipv6", netip.AddrFrom16([16]byte(key[4:20])).String()
	default:
		return DNSServer{}, false
	}
	s.Queries = some("query", u64(0))
	s.Timeouts = some("timeout", u64(40))
	if seen("response") != nil {
		s.Responses = &DNSResponses{Noerror: u64(8), Nxdomain: u64(16), Servfail: u64(24), RcodeOther: u64(32)}
		s.Latency = make([]uint64, histSlots)
		for i := range s.Latency {
			s.Latency[i] = u64(48 + 8*i)
		}
	}
	return s, true
}

// readDNSServers walks the object's DNS server table, if it has one. A table whose rows are
// not this consumer's structs is refused, as kc-loader refuses it.
func (o *object) readDNSServers() error {
	mp := o.plan.mapOf("dns-servers")
	if mp == nil || o.maps[mp.Name] == nil {
		return nil
	}
	if mp.KeySize == nil || *mp.KeySize != serverKeySize || mp.ValueSize == nil || *mp.ValueSize != serverSize {
		return fmt.Errorf("%s's rows are not struct kc_dns_server (%d bytes) under struct kc_dns_server_key (%d): use the consumer of the object's release",
			mp.Name, serverSize, serverKeySize)
	}
	seen := func(c string) *uint64 { return o.report.Counters[c] }
	rows := []DNSServer{}
	var key, value []byte
	it := o.maps[mp.Name].Iterate()
	for it.Next(&key, &value) {
		if s, ok := decodeDNSServer(key, value, seen); ok {
			rows = append(rows, s)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", mp.Name, err)
	}
	table := &ServerTable{Map: mp.Name, TableSize: uint64(mp.MaxEntries), Rows: uint64(len(rows))}
	if inserted := seen("servers_tracked"); inserted != nil {
		e := evicted(*inserted, uint64(len(rows)), 0)
		table.Insertions, table.Evicted = inserted, &e
	}
	o.report.DNSServers = &rows
	o.report.ServerTable = table
	return nil
}
