// SPDX-License-Identifier: BSD-2-Clause

// One object by its plan: maps created at load, programs loaded only when an event's chosen
// family needs them (a family the kernel refuses, trampolines on some kernels, is never
// handed to the verifier), attached, then detached and read.

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

type object struct {
	plan     *ObjectPlan
	kernel   *btf.Spec
	spec     *ebpf.CollectionSpec
	maps     map[string]*ebpf.Map
	programs map[string]*ebpf.Program
	links    []link.Link
	// families holds the family observing each event.
	families map[string]string
	report   *ObjectReport
}

func load(dir string, plan *ObjectPlan, k *kernel) *object {
	o := &object{
		plan:     plan,
		kernel:   k.btf,
		maps:     map[string]*ebpf.Map{},
		programs: map[string]*ebpf.Program{},
		families: map[string]string{},
		report:   &ObjectReport{Object: plan.Object, Attach: "auto", Status: "failed"},
	}
	for _, p := range o.allPrograms() {
		o.report.Programs = append(o.report.Programs, ProgramReport{Name: p.Program, Target: p.Target.String(), State: "skipped"})
	}
	start := time.Now()
	defer func() { o.report.Ms.Load = ms(start) }()
	spec, err := ebpf.LoadCollectionSpec(filepath.Join(dir, plan.Object))
	if err != nil {
		o.report.Error = fmt.Sprintf("load: %v", err)
		return o
	}
	names := make([]string, 0, len(spec.Maps))
	for name := range spec.Maps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// A start-time hash (KC_START_MAP) holds the calls in flight: where the kernel allows,
		// its elements are allocated as they come, as kc-loader and kc-agent load it.
		if ms := spec.Maps[name]; ms.Type == ebpf.Hash && strings.HasSuffix(name, "_starts") && k.tracingMayAllocate() {
			ms.Flags |= unix.BPF_F_NO_PREALLOC
		}
		m, err := ebpf.NewMapWithOptions(spec.Maps[name], ebpf.MapOptions{})
		if err != nil {
			o.report.Error = fmt.Sprintf("load: map %s: %v", name, err)
			return o
		}
		o.maps[name] = m
	}
	// The programs refer to these maps from now on.
	if err := spec.RewriteMaps(o.maps); err != nil {
		o.report.Error = fmt.Sprintf("load: %v", err)
		return o
	}
	o.spec = spec
	return o
}

func (o *object) allPrograms() []ProgramPlan {
	var all []ProgramPlan
	for _, e := range o.plan.Events {
		for _, groups := range e.Families {
			for _, g := range groups {
				all = append(all, g.Alternatives...)
			}
		}
	}
	return all
}

func (o *object) attached() bool { return o.spec != nil && o.report.Status != "failed" }

// attach chooses and attaches a family per event (a stream's event only where streams is
// set), then the programs outside every family.
func (o *object) attach(plan *Plan, k *kernel, groupValue uint64, streams bool) {
	start := time.Now()
	if err := o.setCtrl(groupValue); err != nil {
		o.report.Error = fmt.Sprintf("writing the ctrl map: %v", err)
		return
	}
	partial := false
	for _, e := range o.plan.Events {
		if isStream(e) && !streams {
			passed := map[string]PassedOver{}
			for _, f := range plan.Order {
				passed[f] = PassedOver{"not-asked", "not asked for (-streams off): the table keeps the rows"}
			}
			// Left out by choice: not an event this kernel cannot see.
			o.report.Events = append(o.report.Events, EventReport{Event: e.Event, PassedOver: passed})
			continue
		}
		family, passed := o.choose(plan.Order, e, k)
		ev := EventReport{Event: e.Event, PassedOver: passed}
		if family != "" {
			f := family
			ev.Family = &f
			o.families[e.Event] = family
		} else {
			partial = true
		}
		o.report.Events = append(o.report.Events, ev)
	}
	for _, name := range o.plan.OtherPrograms {
		l, err := o.loadAndAttach(ProgramPlan{Program: name, Section: o.spec.Programs[name].SectionName})
		if err != nil {
			o.report.Error = fmt.Sprintf("%s: %v", name, err)
			o.detach()
			o.families = map[string]string{}
			return
		}
		o.links = append(o.links, l)
	}
	o.report.Status = "ok"
	if partial {
		o.report.Status = "partial"
	}
	o.report.Ms.Attach = ms(start) - o.report.Ms.Choose
}

// choose returns the family that observes e (or "") and why every other was passed over:
// per family in the plan's order, every group needs an alternative whose target this kernel
// has; a family that then fails to load or attach is dropped and the next tried.
func (o *object) choose(order []string, e EventPlan, k *kernel) (string, map[string]PassedOver) {
	passed := map[string]PassedOver{}
	chosen := ""
	for _, f := range order {
		if chosen != "" {
			passed[f] = PassedOver{"costlier", "a cheaper family fits"}
			continue
		}
		groups, ok := e.Families[f]
		if !ok {
			passed[f] = PassedOver{"no-program", fmt.Sprintf("the collector has no %s program for this event", f)}
			continue
		}
		t := time.Now()
		var programs []ProgramPlan
		var why *missing
		for _, g := range groups {
			var first *missing
			var found *ProgramPlan
			for i, p := range g.Alternatives {
				if m := k.has(p.Target); m == nil {
					found = &g.Alternatives[i]
					break
				} else if first == nil {
					first = m
				}
			}
			if found == nil {
				why = first
				break
			}
			programs = append(programs, *found)
		}
		o.report.Ms.Choose += ms(t)
		if why != nil {
			passed[f] = PassedOver{why.kind, fmt.Sprintf("%s: %s", f, why.why)}
			continue
		}
		var links []link.Link
		var failed error
		var failedName string
		for _, p := range programs {
			l, err := o.loadAndAttach(p)
			if err != nil {
				failed, failedName = err, p.Program
				break
			}
			links = append(links, l)
		}
		if failed != nil {
			// The group attaches whole or not at all.
			for _, l := range links {
				l.Close()
			}
			o.setState(failedName, "failed", failed.Error())
			kind := "failed"
			if isRefusal(failed) {
				kind = "refused"
			}
			passed[f] = PassedOver{kind, fmt.Sprintf("%s: %v", failedName, failed)}
			continue
		}
		for _, p := range programs {
			o.setState(p.Program, "attached", "")
		}
		o.links = append(o.links, links...)
		chosen = f
	}
	return chosen, passed
}

func (o *object) setState(program, state, detail string) {
	for i := range o.report.Programs {
		if o.report.Programs[i].Name == program {
			o.report.Programs[i].State, o.report.Programs[i].Detail = state, detail
		}
	}
}

// loadAndAttach loads p's program the first time it is needed, then attaches it where its
// target (or, for programs outside the families, its section) says.
func (o *object) loadAndAttach(p ProgramPlan) (link.Link, error) {
	prog, ok := o.programs[p.Program]
	if !ok {
		spec, found := o.spec.Programs[p.Program]
		if !found {
			return nil, fmt.Errorf("the object has no program %s (a plan of another build?)", p.Program)
		}
		var err error
		prog, err = ebpf.NewProgramWithOptions(spec, ebpf.ProgramOptions{KernelTypes: o.kernel})
		if err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				o.report.LogTail = fmt.Sprintf("%+v", ve)
			}
			return nil, fmt.Errorf("load: %w", err)
		}
		o.programs[p.Program] = prog
	}
	t := p.Target
	switch {
	case t.Check == "btf-function" || t.Check == "btf-tracepoint":
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case t.Check == "kallsyms" && strings.HasPrefix(p.Section, "kretprobe/"):
		// With room for the calls in flight (kprobe_events), as kc-loader; through the
		// kprobe PMU, which sizes the pool itself, where that fails.
		if l, err := link.Kretprobe(t.Function, prog, &link.KprobeOptions{RetprobeMaxActive: returnProbeRoom()}); err == nil {
			return l, nil
		}
		return link.Kretprobe(t.Function, prog, nil)
	case t.Check == "kallsyms":
		return link.Kprobe(t.Function, prog, nil)
	case t.Check == "tracefs":
		return link.Tracepoint(t.Category, t.Name, prog, nil)
	case t.Check == "raw-tracepoint":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: t.Name, Program: prog})
	case t.Check == "":
		// Outside every family: cilium/ebpf attaches it by its section.
		return attachBySection(prog, p.Section)
	}
	return nil, fmt.Errorf("a target this example does not know: %q", t.Check)
}

// attachBySection attaches a program the plan names without a target (always attached).
func attachBySection(prog *ebpf.Program, section string) (link.Link, error) {
	kind, rest, _ := strings.Cut(section, "/")
	switch kind {
	case "tracepoint", "tp":
		category, name, _ := strings.Cut(rest, "/")
		return link.Tracepoint(category, name, prog, nil)
	case "raw_tp", "raw_tracepoint":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: rest, Program: prog})
	case "tp_btf", "fentry", "fexit":
		return link.AttachTracing(link.TracingOptions{Program: prog})
	}
	return nil, fmt.Errorf("section %s: not a kind this example attaches", section)
}

func (o *object) detach() {
	for _, l := range o.links {
		l.Close()
	}
	o.links = nil
}

func (o *object) close() {
	o.detach()
	for _, p := range o.programs {
		p.Close()
	}
	for _, m := range o.maps {
		m.Close()
	}
}

// missedRuns sums the runs the kernel skipped for the object's programs (recursion_misses
// of bpf_prog_info, which cilium/ebpf 0.11 does not expose).
func (o *object) missedRuns() uint64 {
	var total uint64
	for _, p := range o.programs {
		// On the heap, which Go does not move while the kernel writes it.
		info := make([]byte, 256)
		attr := struct {
			fd      uint32
			infoLen uint32
			info    uint64
		}{uint32(p.FD()), uint32(len(info)), uint64(uintptr(unsafe.Pointer(&info[0])))}
		const objGetInfoByFD = 15
		_, _, errno := unix.Syscall(unix.SYS_BPF, objGetInfoByFD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		// recursion_misses is at byte 208 of struct bpf_prog_info (uapi, since 5.12).
		runtime.KeepAlive(info)
		if errno == 0 && attr.infoLen >= 216 {
			total += binary.NativeEndian.Uint64(info[208:])
		}
	}
	return total
}

// returnProbeRoom is how many calls in flight a return probe follows: a kretprobe keeps one
// instance per call between entry and return (a thread asleep in the function holds one), and
// a call that finds none free goes unseen. 8 per possible CPU, never fewer than 128, at most
// the kernel's 4096: kc-loader's rule (co-re/loader/kc_probe_events.c).
func returnProbeRoom() int {
	return min(max(8*possibleCPUs(), 128), 4096)
}

// possibleCPUs counts the CPUs in /sys/devices/system/cpu/possible ("0-3", "0,2-5"); 1 where
// it cannot be read.
func possibleCPUs() int {
	text, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 1
	}
	n := 0
	for _, span := range strings.Split(strings.TrimSpace(string(text)), ",") {
		first, last, isRange := strings.Cut(span, "-")
		a, errA := strconv.Atoi(first)
		b, errB := a, error(nil)
		if isRange {
			b, errB = strconv.Atoi(last)
		}
		if errA != nil || errB != nil || b < a {
			return 1
		}
		n += b - a + 1
	}
	return max(n, 1)
}
