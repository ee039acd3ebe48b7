// SPDX-License-Identifier: BSD-2-Clause

// The release's attach plan (schema/attach-plan.schema.json) and the report this example
// prints (schema/loader-report.schema.json: the shape kc-loader --json and kc-agent print).
// Only the fields this example uses or prints are declared.

package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// Plan is attach-plan.json: every object of one tarball.
type Plan struct {
	// Order is the families cheapest first: auto takes the first that fits an event.
	Order   []string          `json:"order"`
	GroupBy map[string]uint64 `json:"group_by"`
	Objects []ObjectPlan      `json:"objects"`
}

type ObjectPlan struct {
	Object        string        `json:"object"`
	Collector     string        `json:"collector"`
	Events        []EventPlan   `json:"events"`
	OtherPrograms []string      `json:"other_programs"`
	Maps          []MapPlan     `json:"maps"`
	Counters      []CounterPlan `json:"counters"`
}

type EventPlan struct {
	Event string `json:"event"`
	// Families maps a family to the groups that must all attach for it to observe the event.
	Families map[string][]GroupPlan `json:"families"`
}

// GroupPlan holds programs that stand in for one another: the first whose target this
// kernel has is the one to load.
type GroupPlan struct {
	Group        string        `json:"group"`
	Role         string        `json:"role"`
	Alternatives []ProgramPlan `json:"alternatives"`
}

type ProgramPlan struct {
	Program string `json:"program"`
	Section string `json:"section"`
	Target  Target `json:"target"`
}

// Target is where a program attaches; Check says how to tell whether the kernel has it.
type Target struct {
	Check      string `json:"check"` // btf-function, btf-tracepoint, kallsyms, tracefs, raw-tracepoint
	Function   string `json:"function,omitempty"`
	Tracepoint string `json:"tracepoint,omitempty"`
	Category   string `json:"category,omitempty"`
	Name       string `json:"name,omitempty"`
}

// String names the target as the report does.
func (t Target) String() string {
	switch t.Check {
	case "btf-function", "kallsyms":
		return t.Function
	case "btf-tracepoint":
		return t.Tracepoint
	case "tracefs":
		return t.Category + "/" + t.Name
	default:
		return t.Name
	}
}

type MapPlan struct {
	Name        string   `json:"name"`
	Role        string   `json:"role"` // totals, apps, ctrl, histogram, devices, flows, dns-servers, stream, internal
	MaxEntries  uint32   `json:"max_entries"`
	KeySize     *uint32  `json:"key_size"`
	ValueSize   *uint32  `json:"value_size"`
	ValueType   *string  `json:"value_type"` // a stream's: its records' type
	ValueFields []string `json:"value_fields"`
}

type CounterPlan struct {
	Name   string   `json:"name"`
	Events []string `json:"events"`
	// Unobserved says why this object never observes the counter, if so.
	Unobserved *string `json:"unobserved"`
	// Blind maps a family that sees the counter's events but cannot know it to why.
	Blind map[string]string `json:"blind"`
}

func (o *ObjectPlan) mapOf(role string) *MapPlan {
	for i := range o.Maps {
		if o.Maps[i].Role == role {
			return &o.Maps[i]
		}
	}
	return nil
}

// readPlan reads and decodes the plan, refusing one larger than a plan can be.
func readPlan(path string) (*Plan, error) {
	const maxPlan = 16 << 20
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the attach plan: %w (is %s an installed release's CO-RE directory?)", err, path)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxPlan {
		return nil, fmt.Errorf("%s is %d bytes: more than a plan can be (%d)", path, st.Size(), maxPlan)
	}
	var p Plan
	dec := json.NewDecoder(f)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s is not an attach plan: %w", path, err)
	}
	if len(p.Order) == 0 || p.GroupBy == nil {
		return nil, fmt.Errorf("%s lacks the families' order or the group_by values", path)
	}
	return &p, nil
}

// Report is one pass, as kc-loader --json prints it.
type Report struct {
	Kernel        string          `json:"kernel"`
	Attach        string          `json:"attach"`
	WorkloadPid   int             `json:"workload_pid"`
	StoppedBy     *string         `json:"stopped_by"`
	Ms            PassTimes       `json:"ms"`
	KernelFigures KernelFigures   `json:"kernel_figures"`
	Objects       []*ObjectReport `json:"objects"`
}

type PassTimes struct {
	Attach   float64 `json:"attach"`
	Workload float64 `json:"workload"`
	Detach   float64 `json:"detach"`
	Read     float64 `json:"read"`
}

// KernelFigures is the kernel's own accounting of the pass: this example reads none.
type KernelFigures struct {
	Workload map[string]uint64 `json:"workload"`
	Inner    map[string]uint64 `json:"inner"`
	Outer    map[string]uint64 `json:"outer"`
}

type ObjectReport struct {
	Object      string                         `json:"object"`
	Attach      string                         `json:"attach"`
	Status      string                         `json:"status"` // ok, partial, failed
	Error       string                         `json:"error"`
	Events      []EventReport                  `json:"events"`
	Ms          ObjectTimes                    `json:"ms"`
	MissedRuns  uint64                         `json:"missed_runs"`
	LogTail     string                         `json:"log_tail"`
	Programs    []ProgramReport                `json:"programs"`
	Counters    map[string]*uint64             `json:"counters"`
	Unobserved  map[string]string              `json:"unobserved"`
	PerProcess  []Row                          `json:"per_process"`
	PerCgroup   []Row                          `json:"per_cgroup"`
	Apps        *AppsTable                     `json:"apps"`
	Histograms  map[string]map[string][]uint64 `json:"histograms"` // map, id, slot counts
	Devices     map[string]map[string]uint64   `json:"devices"`    // map, "major:minor", count
	Flows       *[]Flow                        `json:"flows"`
	FlowTable   *FlowTable                     `json:"flow_table"`
	DNSServers  *[]DNSServer                   `json:"dns_servers"`
	ServerTable *ServerTable                   `json:"server_table"`
	Streams     map[string]*StreamReport       `json:"streams"`
	MemoryBytes *uint64                        `json:"memory_bytes"`
}

type ObjectTimes struct {
	Choose float64 `json:"choose"`
	Load   float64 `json:"load"`
	Attach float64 `json:"attach"`
}

type EventReport struct {
	Event      string                `json:"event"`
	Family     *string               `json:"family"`
	PassedOver map[string]PassedOver `json:"passed_over"`
}

// PassedOver says why a family was not used for an event: not-asked, costlier,
// no-program, absent, refused or failed.
type PassedOver struct {
	Kind string `json:"kind"`
	Why  string `json:"why"`
}

type ProgramReport struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	State  string `json:"state"` // skipped, loaded, attached, failed
	Detail string `json:"detail"`
}

type Row struct {
	Tgid     *uint32            `json:"tgid"`
	Cgroup   *uint64            `json:"cgroup"`
	Exited   bool               `json:"exited"`
	Counters map[string]*uint64 `json:"counters"`
}

type AppsTable struct {
	GroupBy       string `json:"group_by"`
	TableSize     uint64 `json:"table_size"`
	Rows          uint64 `json:"rows"`
	Insertions    uint64 `json:"insertions"`
	Evicted       uint64 `json:"evicted"`
	Failures      uint64 `json:"failures"`
	RemovedExited uint64 `json:"removed_exited"`
}
