package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/unikgo/unikgo/builder/qemu"
	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

// exitLine is how the kernel reports the program's exit status on Xen,
// which carries no exit code of its own (kernel/xen.go).
var exitLine = regexp.MustCompile(`(?m)^unikgo: exit status (\d+)`)

// runXen boots image as a PVH guest in the Xen lab (Xen 4.17 and a Linux
// dom0 under QEMU, qemu-tests/xenlab), streams its PV console to stdout
// and returns the program's exit status as unikbuild's.
func runXen(ctx context.Context, e env, rf runFlags, image, cmdline string) error {
	mem, err := mebibytes(rf.mem)
	if err != nil {
		return usageError("run: --mem %q: %v", rf.mem, err)
	}
	if rf.net != "" {
		return usageError("run: --net is not supported with --xen yet")
	}
	// Disks become xvda, xvdb... (read-only ones after the others); the
	// lab works on copies, which are copied back once the guest is gone.
	var disks []xenlab.Disk
	for i, d := range append(rf.disks[:len(rf.disks):len(rf.disks)], rf.roDisks...) {
		if i >= 26 {
			return usageError("run: at most 26 disks with --xen")
		}
		disks = append(disks, xenlab.Disk{HostPath: d, Vdev: "xvd" + string(rune('a'+i)), ReadOnly: i >= len(rf.disks)})
	}
	lab, err := xenlab.Start(ctx, xenlab.Options{Progress: e.stderr})
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		lab.Close()
		if failed {
			fmt.Fprintln(e.stderr, "unikbuild: Xen lab logs kept in", lab.Dir())
		} else {
			lab.RemoveDir()
		}
	}()
	gctx := ctx
	if rf.timeout > 0 {
		var cancel context.CancelFunc
		gctx, cancel = context.WithTimeout(ctx, rf.timeout)
		defer cancel()
	}
	g, err := lab.Create(gctx, xenlab.GuestConfig{Name: "unikbuild", Type: xenlab.PVH, Kernel: image,
		Cmdline: cmdline, MemoryMiB: mem, VCPUs: rf.smp, Disks: disks})
	if err != nil {
		return err
	}
	stop := g.Stream(nil, func(l string) { fmt.Fprintln(e.stdout, l) })
	reason, err := g.WaitShutdown(gctx)
	time.Sleep(300 * time.Millisecond) // let xenconsoled flush the last bytes
	stop()
	if err != nil {
		if gctx.Err() != nil && ctx.Err() == nil {
			return &exitError{code: exitFailure, msg: fmt.Sprintf("guest still running after %v on Xen: destroyed it (raise --timeout if it needs longer)", rf.timeout)}
		}
		return err
	}
	for _, d := range disks {
		if d.ReadOnly {
			continue
		}
		if err := lab.CopyOut(g.Name+".disk-"+d.Vdev, d.HostPath); err != nil {
			return err
		}
	}
	failed = false
	m := exitLine.FindAllStringSubmatch(g.Console(), -1)
	if m == nil {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("guest shut down (%v) without printing an exit status", reason)}
	}
	status, _ := strconv.Atoi(m[len(m)-1][1])
	return guestExit(qemu.Exit{Status: status})
}

// mebibytes parses a QEMU-style size ("128M", "1G", "64") into MiB.
func mebibytes(s string) (int, error) {
	if s == "" {
		return 128, nil
	}
	mult := 1
	switch strings.ToUpper(s[len(s)-1:]) {
	case "G":
		mult, s = 1024, s[:len(s)-1]
	case "M":
		s = s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a size such as 64M or 1G")
	}
	return n * mult, nil
}
