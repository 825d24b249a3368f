// Package x86 wraps the x86-64 instructions that platform code needs as Go
// functions: CPUID, the time-stamp counter, model-specific registers and
// port I/O. It is a leaf package shared by the kernel and the Xen platform
// code; none of these functions touch the Go runtime, so they may be called
// before it starts and in trap context.
package x86

// CPUID executes CPUID with EAX = leaf and ECX = sub.
func CPUID(leaf, sub uint32) (a, b, c, d uint32)

// RDTSC reads the time-stamp counter.
func RDTSC() uint64

// RDMSR reads a model-specific register.
func RDMSR(msr uint32) uint64

// WRMSR writes a model-specific register.
func WRMSR(msr uint32, v uint64)

// InB, InW and InL read an I/O port.
func InB(port uint16) uint8
func InW(port uint16) uint16
func InL(port uint16) uint32

// OutB, OutW and OutL write an I/O port.
func OutB(port uint16, v uint8)
func OutW(port uint16, v uint16)
func OutL(port uint16, v uint32)

// Pause hints a spin-wait loop.
func Pause()
