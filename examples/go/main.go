// SPDX-License-Identifier: BSD-2-Clause

// kc-go-consumer: an installed release's CO-RE objects loaded with cilium/ebpf by their
// attach plan, attached around one workload as kc-loader --attach auto does (per event the
// cheapest family that fits this kernel), then read by the counter names the plan carries
// and printed as kc-loader's JSON report.
//
//	kc-go-consumer -release /opt/kernel-collector/current/co-re -- ./workload args...
//
// Root (or CAP_BPF and CAP_PERFMON) is needed to load programs.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

func main() {
	release := flag.String("release", "", "an installed release's CO-RE directory (it holds attach-plan.json)")
	groupBy := flag.String("group-by", "process", "per-application rows: none, process or cgroup")
	streams := flag.String("streams", "on", "off: no stream event loads (released processes' rows stay in the tables)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s -release DIR [-group-by none|process|cgroup] [-streams on|off] -- WORKLOAD [ARGS...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *release == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	report, err := run(*release, *groupBy, *streams, flag.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "kc-go-consumer: %v\n", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(report); err != nil {
		fmt.Fprintf(os.Stderr, "kc-go-consumer: writing the report: %v\n", err)
		os.Exit(1)
	}
}

func ms(since time.Time) float64 { return float64(time.Since(since).Microseconds()) / 1000 }

func run(dir, groupBy, streams string, workload []string) (*Report, error) {
	if streams != "on" && streams != "off" {
		return nil, fmt.Errorf("-streams %q: use on or off", streams)
	}
	plan, err := readPlan(filepath.Join(dir, "attach-plan.json"))
	if err != nil {
		return nil, err
	}
	groupValue, ok := plan.GroupBy[groupBy]
	if !ok {
		return nil, fmt.Errorf("-group-by %q: the plan knows none, process and cgroup", groupBy)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("loading BPF programs needs root: run it with sudo")
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	k := probeKernel()
	report := &Report{Kernel: k.release, Attach: "auto", KernelFigures: KernelFigures{Outer: map[string]uint64{}}}

	start := time.Now()
	objects := make([]*object, 0, len(plan.Objects))
	for i := range plan.Objects {
		o := load(dir, &plan.Objects[i], k)
		if o.report.Error == "" {
			o.attach(plan, k, groupValue, streams == "on")
		}
		objects = append(objects, o)
	}
	defer func() {
		for _, o := range objects {
			o.close()
		}
	}()
	report.Ms.Attach = ms(start)

	start = time.Now()
	cmd := exec.Command(workload[0], workload[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the workload %q: %w", workload[0], err)
	}
	report.WorkloadPid = cmd.Process.Pid
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("the workload %q: %w", workload[0], err)
	}
	report.Ms.Workload = ms(start)

	// Detach before reading: a counter and its histogram then hold the same events.
	start = time.Now()
	for _, o := range objects {
		o.detach()
	}
	report.Ms.Detach = ms(start)

	start = time.Now()
	for _, o := range objects {
		if o.attached() {
			if err := o.read(groupBy); err != nil {
				o.report.Error = fmt.Sprintf("reading its maps: %v", err)
				o.report.Status = "failed"
			}
		}
		report.Objects = append(report.Objects, o.report)
	}
	report.Ms.Read = ms(start)
	return report, nil
}

// setCtrl writes group_by into the ctrl map's one value.
func (o *object) setCtrl(groupValue uint64) error {
	ctrl := o.plan.mapOf("ctrl")
	if ctrl == nil {
		return nil
	}
	value := make([]byte, *ctrl.ValueSize)
	i := fieldIndex(ctrl, "group_by")
	if i < 0 {
		return fmt.Errorf("the ctrl map %s has no group_by field", ctrl.Name)
	}
	binary.NativeEndian.PutUint64(value[8*i:], groupValue)
	return o.maps[ctrl.Name].Update(uint32(0), value, ebpf.UpdateAny)
}

func fieldIndex(m *MapPlan, field string) int {
	for i, f := range m.ValueFields {
		if f == field {
			return i
		}
	}
	return -1
}
