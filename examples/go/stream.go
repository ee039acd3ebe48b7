// SPDX-License-Identifier: BSD-2-Clause

// The stream maps (ring buffers, role "stream"): every record the programs submitted since
// the last read, taken without waiting, as kc-loader reports them. A process exit carries its
// final row, which left the table: the report lists it with the exit, not among the rows.

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// exitHead is the size of struct kc_process_exit (includes/kc_collectors.h) before its row.
const exitHead = 48

// streamListed bounds the records listed per stream (kc-loader's KC_STREAM_LISTED).
const streamListed = 4096

type StreamReport struct {
	Record    string         `json:"record"`
	Received  uint64         `json:"received"`
	Bytes     uint64         `json:"bytes"`
	Malformed uint64         `json:"malformed"`
	Rows      uint64         `json:"rows"`
	NotListed uint64         `json:"not_listed"`
	Exits     *[]ProcessExit `json:"exits"`
	Closes    *[]FlowClose   `json:"closes"`
}

type ProcessExit struct {
	Tgid     uint32 `json:"tgid"`
	Ppid     uint32 `json:"ppid"`
	Comm     string `json:"comm"`
	ExitCode uint32 `json:"exit_code"`
	StartNs  uint64 `json:"start_ns"`
	ExitNs   uint64 `json:"exit_ns"`
	Row      *Row   `json:"row"`
}

// isStream says whether e's programs fill a stream map (its name ends in "_stream",
// kc_common::plan::EventPlan::is_stream).
func isStream(e EventPlan) bool { return strings.HasSuffix(e.Event, "_stream") }

// processExit decodes one struct kc_process_exit, or returns false where it is too short.
func (o *object) processExit(b []byte, unobserved map[string]string) (ProcessExit, bool) {
	if len(b) < exitHead+8*len(o.plan.Counters) {
		return ProcessExit{}, false
	}
	u32 := func(at int) uint32 { return binary.NativeEndian.Uint32(b[at:]) }
	comm := b[32:48]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	e := ProcessExit{
		Tgid: u32(16), Ppid: u32(20), Comm: string(comm), ExitCode: u32(24),
		StartNs: binary.NativeEndian.Uint64(b[0:]), ExitNs: binary.NativeEndian.Uint64(b[8:]),
	}
	if u32(28) != 0 {
		tgid := e.Tgid
		row := Row{Tgid: &tgid, Exited: true,
			Counters: o.named(u64s(b[exitHead:exitHead+8*len(o.plan.Counters)]), unobserved)}
		e.Row = &row
	}
	return e, true
}

// readStreams drains every stream map; it runs before the tables are walked, so that a row is
// either in a stream or in its table.
func (o *object) readStreams(unobserved map[string]string) (map[string]*StreamReport, error) {
	out := map[string]*StreamReport{}
	for _, mp := range o.plan.Maps {
		m := o.maps[mp.Name]
		if mp.Role != "stream" || m == nil {
			continue
		}
		rd, err := ringbuf.NewReader(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mp.Name, err)
		}
		isExit := mp.ValueType != nil && *mp.ValueType == "struct kc_process_exit"
		isClose := mp.ValueType != nil && *mp.ValueType == "struct kc_flow_close"
		s := &StreamReport{}
		if mp.ValueType != nil {
			s.Record = trimStruct(*mp.ValueType)
		}
		if isExit {
			s.Exits = &[]ProcessExit{}
		}
		if isClose {
			s.Closes = &[]FlowClose{}
		}
		// A deadline already past: take what the ring holds, never wait for more.
		rd.SetDeadline(time.Now())
		for {
			rec, err := rd.Read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				rd.Close()
				return nil, fmt.Errorf("%s: %w", mp.Name, err)
			}
			s.Received++
			s.Bytes += uint64(len(rec.RawSample))
			if isClose {
				c, ok := decodeFlowClose(rec.RawSample)
				switch {
				case !ok:
					s.Malformed++
				case len(*s.Closes) >= streamListed:
					s.NotListed++
				default:
					*s.Closes = append(*s.Closes, c)
				}
				if ok && c.HadRow {
					s.Rows++
				}
				continue
			}
			if !isExit {
				continue
			}
			e, ok := o.processExit(rec.RawSample, unobserved)
			switch {
			case !ok:
				s.Malformed++
			case len(*s.Exits) >= streamListed:
				s.NotListed++
			default:
				*s.Exits = append(*s.Exits, e)
			}
			if ok && e.Row != nil {
				s.Rows++
			}
		}
		rd.Close()
		out[mp.Name] = s
	}
	return out, nil
}

func trimStruct(t string) string { return strings.TrimPrefix(t, "struct ") }
