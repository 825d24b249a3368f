package kernel

import (
	"runtime/debug"

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
}
