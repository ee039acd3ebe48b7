// SPDX-License-Identifier: BSD-2-Clause

// An object's maps read by its plan into the report: the totals (one value per CPU,
// summed), the per-application rows (those of exited processes reported once, then
// removed), the table's statistics, the latency histograms and the counts per device; a
// counter nobody observed is null, with why.

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// unobserved says why c is not observed in this pass, or "" where every event that feeds it
// was observed by a family not blind to it (a count of some of its events would be false).
func (o *object) unobserved(c CounterPlan) string {
	if c.Unobserved != nil {
		return *c.Unobserved
	}
	if len(c.Events) == 0 {
		return "it names no event"
	}
	for _, event := range c.Events {
		known := false
		for _, e := range o.plan.Events {
			known = known || e.Event == event
		}
		if !known {
			return fmt.Sprintf("the object has no program for its event %s", event)
		}
		f, ok := o.families[event]
		if !ok {
			return fmt.Sprintf("no family observes its event %s on this kernel", event)
		}
		if blind, ok := c.Blind[f]; ok {
			return fmt.Sprintf("the %s family observes %s, but %s", f, event, blind)
		}
	}
	return ""
}

// named pairs the plan's counters with values (u64s in the counter struct's order).
func (o *object) named(values []uint64, unobserved map[string]string) map[string]*uint64 {
	out := map[string]*uint64{}
	for i, c := range o.plan.Counters {
		if _, gone := unobserved[c.Name]; gone || i >= len(values) {
			out[c.Name] = nil
			continue
		}
		v := values[i]
		out[c.Name] = &v
	}
	return out
}

func u64s(b []byte) []uint64 {
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(b[8*i:])
	}
	return out
}

func (o *object) read(groupBy string) error {
	r := o.report
	r.MemoryBytes = o.memlock()
	if err := o.readHistogramsAndDevices(); err != nil {
		return err
	}
	r.MissedRuns = o.missedRuns()
	unobserved := map[string]string{}
	for _, c := range o.plan.Counters {
		if why := o.unobserved(c); why != "" {
			unobserved[c.Name] = why
		}
	}
	if totals := o.plan.mapOf("totals"); totals != nil {
		var perCPU [][]byte
		if err := o.maps[totals.Name].Lookup(uint32(0), &perCPU); err != nil {
			return fmt.Errorf("%s: %w", totals.Name, err)
		}
		sums := make([]uint64, len(o.plan.Counters))
		for _, cpu := range perCPU {
			for i, v := range u64s(cpu) {
				if i < len(sums) {
					sums[i] += v
				}
			}
		}
		r.Counters = o.named(sums, unobserved)
		r.Unobserved = unobserved
	}
	streams, err := o.readStreams(unobserved)
	if err != nil {
		return err
	}
	r.Streams = streams
	streamedRows := uint64(0)
	for _, s := range streams {
		streamedRows += s.Rows
	}
	if r.Counters != nil {
		// TCP's rows and UDP's, each counted under its own event: one no family observed
		// inserted none.
		inserted := uint64(0)
		for _, c := range []string{"tracked", "udp_tracked"} {
			if v := r.Counters[c]; v != nil {
				inserted += *v
			}
		}
		if err := o.readFlows(inserted, streamedRows); err != nil {
			return err
		}
		if err := o.readDNSServers(); err != nil {
			return err
		}
	}
	apps, ctrl := o.plan.mapOf("apps"), o.plan.mapOf("ctrl")
	if apps == nil || ctrl == nil || groupBy == "none" {
		return nil
	}
	var rows []Row
	var gone []uint64
	var id uint64
	var value []byte
	it := o.maps[apps.Name].Iterate()
	for it.Next(&id, &value) {
		exited := groupBy == "process" && errors.Is(unix.Kill(int(id), 0), unix.ESRCH)
		if exited {
			gone = append(gone, id)
		}
		row := Row{Exited: exited, Counters: o.named(u64s(value), unobserved)}
		if groupBy == "process" {
			tgid := uint32(id)
			row.Tgid = &tgid
		} else {
			cgroup := id
			row.Cgroup = &cgroup
		}
		rows = append(rows, row)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", apps.Name, err)
	}
	removed := uint64(0)
	for _, key := range gone {
		if o.maps[apps.Name].Delete(key) == nil {
			removed++
		}
	}
	var ctrlValue []byte
	if err := o.maps[ctrl.Name].Lookup(uint32(0), &ctrlValue); err != nil {
		return fmt.Errorf("%s: %w", ctrl.Name, err)
	}
	field := func(name string) (uint64, error) {
		if i := fieldIndex(ctrl, name); i >= 0 && 8*i+8 <= len(ctrlValue) {
			return binary.NativeEndian.Uint64(ctrlValue[8*i:]), nil
		}
		return 0, fmt.Errorf("the ctrl map %s has no %s field", ctrl.Name, name)
	}
	insertions, err := field("insertions")
	if err != nil {
		return err
	}
	failures, err := field("failures")
	if err != nil {
		return err
	}
	r.Apps = &AppsTable{
		GroupBy: groupBy, TableSize: uint64(apps.MaxEntries), Rows: uint64(len(rows)),
		Insertions: insertions, Evicted: evicted(insertions, uint64(len(rows)), streamedRows),
		Failures: failures, RemovedExited: removed,
	}
	if groupBy == "cgroup" {
		r.PerCgroup = rows
	} else {
		r.PerProcess = rows
	}
	return nil
}

// evicted is an LRU table's evictions, which it makes silently: every row the programs inserted
// is still there (rows, read before any removal), moved out with a stream's record (streamed),
// or was evicted to make room (kc_common::report::evicted).
func evicted(inserted, rows, streamed uint64) uint64 {
	if inserted > rows+streamed {
		return inserted - rows - streamed
	}
	return 0
}

// histSlots is KC_HIST_SLOTS: a latency histogram's log2 slots.
const histSlots = 32

// readHistogramsAndDevices reads the latency histograms (counts, per CPU where the map is, keyed by
// struct kc_hist_key { u32 id; u32 slot; }) and the counts per device (a u32 dev_t key,
// major << 20 | minor).
func (o *object) readHistogramsAndDevices() error {
	r := o.report
	r.Histograms = map[string]map[string][]uint64{}
	r.Devices = map[string]map[string]uint64{}
	for _, mp := range o.plan.Maps {
		m := o.maps[mp.Name]
		if m == nil || (mp.Role != "histogram" && mp.Role != "devices") {
			continue
		}
		var key []byte
		var perCPU []uint64
		var one uint64
		value := any(&one)
		if isPerCPU(m.Type()) {
			value = &perCPU
		}
		histograms, devices := map[string][]uint64{}, map[string]uint64{}
		it := m.Iterate()
		for it.Next(&key, value) {
			total := one
			for _, v := range perCPU {
				total += v
			}
			perCPU = perCPU[:0]
			if mp.Role == "histogram" && len(key) == 8 {
				id := binary.NativeEndian.Uint32(key)
				slot := binary.NativeEndian.Uint32(key[4:])
				if slot >= histSlots {
					continue
				}
				name := fmt.Sprint(id)
				if histograms[name] == nil {
					histograms[name] = make([]uint64, histSlots)
				}
				histograms[name][slot] += total
			} else if mp.Role == "devices" && len(key) == 4 {
				dev := binary.NativeEndian.Uint32(key)
				devices[fmt.Sprintf("%d:%d", dev>>20, dev&0xfffff)] += total
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("%s: %w", mp.Name, err)
		}
		if mp.Role == "histogram" {
			r.Histograms[mp.Name] = histograms
		} else {
			r.Devices[mp.Name] = devices
		}
	}
	return nil
}

func isPerCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUHash || t == ebpf.PerCPUArray || t == ebpf.LRUCPUHash
}

// memlock is the kernel's own figure of the memory the plan's maps hold: the sum of each
// map's `memlock:` line in its fd's fdinfo, as kc-loader reports it; nil where one cannot be
// read.
func (o *object) memlock() *uint64 {
	var total uint64
	for _, mp := range o.plan.Maps {
		m := o.maps[mp.Name]
		if m == nil {
			return nil
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
		if err != nil {
			return nil
		}
		found := false
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return nil
				}
				total, found = total+n, true
			}
		}
		if !found {
			return nil
		}
	}
	return &total
}
