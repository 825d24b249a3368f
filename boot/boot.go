// Package boot is the first code that runs in a unikgo image: the PVH entry
// point (Xen PVH, and QEMU's -kernel loader through the same ELF note), the
// switch to long mode with an identity map of the low 4 GiB, and a copy of the
// boot loader's start info out of low memory. It then hands over to the
// kernel, which provides the Linux system-call surface the Go runtime needs.
//
// Nothing here may allocate or use the Go runtime: it runs before the runtime
// exists, with a zeroed stand-in g.
package boot

import (
	"unsafe"

	"github.com/unikgo/unikgo/boot/pvh"
)

// Values written by pvhEntry in 32-bit mode.
var (
	startInfoPA uint32
	entryTSC    uint64
)

// Info is the boot information, copied out of the loader's memory by start64
// before anything else can overwrite it.
var Info pvh.BootInfo

// Booted reports whether this program was started through pvhEntry (as an
// image) rather than as an ordinary Linux process (as in host tests).
func Booted() bool { return booted }

var booted bool

// EntryTSC is the time-stamp counter read at the very first instruction.
func EntryTSC() uint64 { return entryTSC }

// kernelMain is provided by package kernel (go:linkname) and never returns.
func kernelMain()

// start64 is called from long64 on the boot stack.
//
//go:nosplit
func start64() {
	booted = true
	pvh.Copy(&Info, uintptr(startInfoPA), physRead)
	kernelMain()
}

// physRead reads n bytes of physical memory at pa: the early map is an
// identity map of the low 4 GiB.
//
//go:nosplit
func physRead(pa uintptr, n int) []byte {
	return unsafe.Slice((*byte)(ptr(pa)), n)
}

// pvhEntry is the image entry point (ELF e_entry and the PVH note).
func pvhEntry()

// long64 is pvhEntry's 64-bit continuation.
func long64()

// ptr converts a physical address of the identity map to a pointer (see
// kernel.ptr: this memory is never Go heap memory).
func ptr(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }
