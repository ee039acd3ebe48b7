// SPDX-License-Identifier: BSD-2-Clause

// What the running kernel has for a plan's targets, asked once per run: its BTF (functions
// and BTF tracepoints), /proc/kallsyms, kprobe support and tracefs's events.

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

type kernel struct {
	btf      *btf.Spec // nil: the kernel exposes no BTF
	kallsyms map[string]bool
	kprobes  bool
	tracefs  string // "" where tracefs is not mounted
	release  string
}

func probeKernel() *kernel {
	k := &kernel{kallsyms: map[string]bool{}}
	k.btf, _ = btf.LoadKernelSpec()
	if f, err := os.Open("/proc/kallsyms"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if fields := strings.Fields(s.Text()); len(fields) >= 3 {
				k.kallsyms[fields[2]] = true
			}
		}
		f.Close()
	}
	_, err := os.Stat("/sys/bus/event_source/devices/kprobe/type")
	k.kprobes = err == nil
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if st, err := os.Stat(filepath.Join(dir, "events")); err == nil && st.IsDir() {
			k.tracefs = dir
			break
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		k.release = strings.TrimSpace(string(b))
	}
	return k
}

// tracingMayAllocate says whether a tracing program's hash map may allocate its elements as
// they come: from 6.1 (its BPF memory allocator); kc-loader's and kc-agent's rule too
// (kc_common::plan::MapPlan::allocates_as_it_goes).
func (k *kernel) tracingMayAllocate() bool {
	var major, minor int
	if _, err := fmt.Sscanf(k.release, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 6 || (major == 6 && minor >= 1)
}

// missing says why a target is not usable: absent from this kernel, or refused by it.
type missing struct {
	kind string // absent or refused
	why  string
}

// has says whether the kernel has target t, else why not.
func (k *kernel) has(t Target) *missing {
	absent := func(format string, a ...any) *missing { return &missing{"absent", fmt.Sprintf(format, a...)} }
	refused := func(why string) *missing { return &missing{"refused", why} }
	isDir := func(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }
	switch t.Check {
	case "btf-function":
		if k.btf == nil {
			return refused("the kernel exposes no BTF")
		}
		var fn *btf.Func
		if err := k.btf.TypeByName(t.Function, &fn); err != nil {
			return absent("no function %s in the kernel's BTF", t.Function)
		}
	case "btf-tracepoint":
		if k.btf == nil {
			return refused("the kernel exposes no BTF")
		}
		var td *btf.Typedef
		if err := k.btf.TypeByName("btf_trace_"+t.Tracepoint, &td); err != nil {
			return absent("no BTF tracepoint %s", t.Tracepoint)
		}
	case "kallsyms":
		if !k.kprobes {
			return refused("this kernel has no kprobes")
		}
		if !k.kallsyms[t.Function] {
			return absent("no %s in /proc/kallsyms", t.Function)
		}
	case "tracefs":
		if k.tracefs == "" {
			return refused("tracefs is not mounted")
		}
		if !isDir(filepath.Join(k.tracefs, "events", t.Category, t.Name)) {
			return absent("no tracepoint %s/%s", t.Category, t.Name)
		}
	case "raw-tracepoint":
		if k.tracefs == "" {
			return refused("tracefs is not mounted")
		}
		found, _ := filepath.Glob(filepath.Join(k.tracefs, "events", "*", t.Name))
		if len(found) == 0 {
			return absent("no tracepoint %s", t.Name)
		}
	default:
		return &missing{"failed", fmt.Sprintf("a target this example does not know: %q", t.Check)}
	}
	return nil
}

// isRefusal tells an error by which the kernel refuses a kind of program altogether (EPERM
// for trampolines on some kernels, EOPNOTSUPP, ENOTSUPP) from one of ours.
func isRefusal(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.Errno(524))
}
