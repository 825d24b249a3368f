//go:build amd64

package vdso

import (
	"sync/atomic"
	"unsafe"
)

// Modes of the clock data block.
const (
	ModeDisabled = 0 // every call is a system call
	ModeTSC      = 1 // mono = (rdtsc - tscBase) * tscMult >> 32
	ModeXen      = 2 // mono = Xen system time - xenSysOff, kept monotonic
)

// data is the clock data block the vDSO functions read. It holds no Go
// pointers (the Xen time info's address is a plain integer). The field
// offsets are used by vdso_amd64.s (the off* constants; a test checks
// them).
type data struct {
	// seq is the sequence lock: odd while the kernel updates the fields
	// below it; a reader that sees it odd, or changed by the end of its
	// reading, reads again.
	seq  uint32
	mode uint32

	tscBase  uint64 // TSC at mono 0
	tscMult  uint64 // ns per TSC tick, 32.32 fixed point
	wallBase uint64 // realtime (Unix ns) at mono 0

	xenInfo   uint64 // address of the vcpu_time_info read (vCPU 0's)
	xenSysOff uint64 // Xen system time at mono 0

	_ [16]byte

	// xenLast is the greatest Xen-mode monotonic time handed out, by the
	// kernel or the vDSO (one cache line of its own: it is written).
	xenLast atomic.Uint64
	_       [56]byte
}

const (
	offSeq       = 0
	offMode      = 4
	offTSCBase   = 8
	offTSCMult   = 16
	offWallBase  = 24
	offXenInfo   = 32
	offXenSysOff = 40
	offXenLast   = 64
)

// clock is the data block (named ·clock in vdso_amd64.s).
var clock data

// Offsets in struct vcpu_time_info.
const (
	pvVersion = 0
	pvTSC     = 8
	pvSystem  = 16
	pvMul     = 24
	pvShift   = 28
)

// beginWrite takes the sequence lock for writing: it makes seq odd. A
// second writer waits for the first. Readers spin while seq is odd, so a
// writer must not be stopped in between: the kernel updates with
// interrupts off (a reader on the same CPU would spin forever), and the
// writers are nosplit and not inlined, so that on a host Go's
// asynchronous preemption cannot stop one either (a reader spinning in
// the vDSO cannot be preempted and would hold up a stop-the-world).
//
//go:nosplit
func beginWrite() {
	for {
		s := atomic.LoadUint32(&clock.seq)
		if s&1 == 0 && atomic.CompareAndSwapUint32(&clock.seq, s, s+1) {
			return
		}
	}
}

//go:nosplit
func endWrite() { atomic.AddUint32(&clock.seq, 1) }

// SetTSC switches the vDSO to the TSC clock: monotonic time is
// ((rdtsc - base) * mult) >> 32 (mult: ns per tick, 32.32 fixed point, the
// product taken to 128 bits) and realtime is wall + monotonic.
//
//go:nosplit
//go:noinline
func SetTSC(base, mult, wall uint64) {
	beginWrite()
	atomic.StoreUint64(&clock.tscBase, base)
	atomic.StoreUint64(&clock.tscMult, mult)
	atomic.StoreUint64(&clock.wallBase, wall)
	atomic.StoreUint32(&clock.mode, ModeTSC)
	endWrite()
}

// SetXen switches the vDSO to Xen system time read from the
// vcpu_time_info at info under the pvclock version protocol: monotonic
// time is system time - sysOff, never less than the last value handed out
// (XenLast, shared with the kernel), and realtime is wall + monotonic.
// last, if greater than the current XenLast, raises it (pass the time the
// kernel's clock had when it switched).
//
//go:nosplit
//go:noinline
func SetXen(info uintptr, sysOff, wall, last uint64) {
	if info == 0 {
		return
	}
	beginWrite()
	atomic.StoreUint64(&clock.xenInfo, uint64(info))
	atomic.StoreUint64(&clock.xenSysOff, sysOff)
	atomic.StoreUint64(&clock.wallBase, wall)
	for {
		l := clock.xenLast.Load()
		if l >= last || clock.xenLast.CompareAndSwap(l, last) {
			break
		}
	}
	atomic.StoreUint32(&clock.mode, ModeXen)
	endWrite()
}

// SetWallBase changes realtime's base (Unix ns at monotonic 0), as a
// settimeofday or a wall-clock correction does.
//
//go:nosplit
//go:noinline
func SetWallBase(wall uint64) {
	beginWrite()
	atomic.StoreUint64(&clock.wallBase, wall)
	endWrite()
}

// Disable makes every vDSO call a system call.
//
//go:nosplit
//go:noinline
func Disable() {
	beginWrite()
	atomic.StoreUint32(&clock.mode, ModeDisabled)
	endWrite()
}

// Mode returns the data block's mode.
//
//go:nosplit
func Mode() uint32 { return atomic.LoadUint32(&clock.mode) }

// XenLast is the Xen clock's monotonic floor the vDSO shares with the
// kernel: the kernel's own Xen nanotime must clamp against (and CAS) this
// value, not a copy, or the two clocks could go back against each other.
//
//go:nosplit
func XenLast() *atomic.Uint64 { return &clock.xenLast }

// Nanotime returns the monotonic time computed exactly as the vDSO does,
// and false when the block is disabled.
//
//go:nosplit
func Nanotime() (uint64, bool) {
	mono, _, ok := now()
	return mono, ok
}

// Realtime returns the real time in Unix ns computed as the vDSO does, and
// false when the block is disabled.
//
//go:nosplit
func Realtime() (uint64, bool) {
	mono, wall, ok := now()
	return wall + mono, ok
}

// DataAddr returns the data block's address (for a debugger or a dump).
func DataAddr() uintptr { return uintptr(unsafe.Pointer(&clock)) }
