package kernel

import (
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/unikgo/unikgo/boot"
)

// init runs inside the Go runtime, before the program's own packages are
// initialised. The 1 GB default goroutine stack limit cannot be reached in
// a VM with less RAM: unbounded recursion would end in an out-of-memory
// error instead of Go's "goroutine stack exceeds" message, so the limit is
// scaled to a quarter of RAM.
func init() {
	if !boot.Booted() {
		return
	}
	limit := ramBytes / 4
	if limit > 1<<30 {
		limit = 1 << 30
	}
	if limit < 1<<20 {
		limit = 1 << 20
	}
	debug.SetMaxStack(int(limit))
	if onXen {
		go watchXenControl()
	}
	if bootTime {
		// The kernel's package initialises just before the program's own:
		// this is the guest time from the PVH entry to (almost) main.
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		us := ts.Nano() / 1000
		os.Stderr.WriteString("unikgo: main after " + strconv.FormatInt(us/1000, 10) + "." +
			strconv.FormatInt(1000+us%1000, 10)[1:] + " ms\n")
	}
}
