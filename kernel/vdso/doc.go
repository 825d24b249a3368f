// Package vdso provides a virtual dynamic shared object for the Go runtime
// the kernel runs, so that nanotime and walltime read the clock without a
// system call, as they do under Linux.
//
// Under Linux the runtime finds the vDSO through the auxiliary vector entry
// AT_SYSINFO_EHDR (33) and resolves __vdso_clock_gettime (version
// LINUX_2.6) with its own small ELF parser (runtime/vdso_linux.go). The
// image Build writes holds only what that parser and debug/elf read: an ELF
// header, a PT_LOAD and a PT_DYNAMIC program header, the dynamic section,
// DT_HASH, the dynamic symbols and strings, the version tables, and section
// headers. The code is not in the image: the symbols' values are the
// distance from the image to the assembly functions in this package
// (wrapping around when a function lies below the image), which the
// runtime adds back to the image's address.
//
// The functions follow the System V C ABI and read the clock data block
// (set with SetTSC, SetXen, SetWallBase, Disable) under a sequence lock.
// Clocks they do not compute, or all clocks while the block is disabled,
// go to the real SYSCALL instruction, as Linux's vDSO does.
//
// The kernel's part, before the program starts: put AT_SYSINFO_EHDR =
// Build() in the initial auxiliary vector; once the clock is final, call
// SetTSC(tscBase, tscMult, wallBaseNS), or on Xen SetXen(address of vCPU
// 0's vcpu_time_info, xenSysOff, wallBaseNS, 0); and make the kernel's own
// Xen clock clamp against XenLast() instead of a variable of its own, so
// that the two never hand out times that go back against each other.
// Nanotime and Realtime compute the time exactly as the vDSO does, for a
// kernel that wants one clock for both.
package vdso
