package vdso

import "unsafe"

// Implemented in vdso_amd64.s.

// now reads the clock data block as the vDSO does: the monotonic time,
// the wall base, and false when the block is disabled.
func now() (mono, wall uint64, ok bool)

// clockGettimeAddr and gettimeofdayAddr return the addresses of the C-ABI
// functions __vdso_clock_gettime and __vdso_gettimeofday.
func clockGettimeAddr() uintptr
func gettimeofdayAddr() uintptr

// callClockGettime and callGettimeofday call the C-ABI functions from Go
// and return what they return (0, or a negative errno from the system
// call they fell back to).
func callClockGettime(id int32, ts unsafe.Pointer) int64
func callGettimeofday(tv, tz unsafe.Pointer) int64

// rdtsc reads the TSC after an LFENCE, as the vDSO does.
func rdtsc() uint64

// ClockGettime calls __vdso_clock_gettime(id, ts): the kernel does not
// need it; tests and tools can.
func ClockGettime(id int32, ts *[2]int64) int64 {
	return callClockGettime(id, unsafe.Pointer(ts))
}

// ClockGettimeAddr and GettimeofdayAddr return the addresses of
// __vdso_clock_gettime and __vdso_gettimeofday (for a profiler's
// symbolization, or a check that the runtime resolved them).
func ClockGettimeAddr() uintptr { return clockGettimeAddr() }
func GettimeofdayAddr() uintptr { return gettimeofdayAddr() }
