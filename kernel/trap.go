package kernel

import (
	"math/bits"
	"sync/atomic"

	"github.com/unikgo/unikgo/kernel/insn"

	"github.com/unikgo/unikgo/x86"
)

// trap is called by trapCommon for every exception, interrupt and system
// call, with interrupts disabled, on the SYSCALL stack (trapCommon moves
// an IST stack's frame there). It may rewrite *f to resume a different
// thread.
func trap(f *TrapFrame) {
	c := &cpus[0]
	var t0 uint64
	vec, nr := f.Vector, f.RAX
	if profiling {
		t0 = x86.RDTSC()
	}
	if f.Vector&vecFrameLost != 0 {
		lostFrame(c, f)
	}
	if c.idling != 0 {
		// Interrupted the idle loop: handle the event; idlePoll picks a
		// thread when we return there.
		c.nest++
		if f.Vector < 32 {
			kernelFault(c, f)
		}
		irq(c, f, false)
		c.nest--
		return
	}
	if c.nest > 0 || c.cur < 0 {
		kernelFault(c, f)
	}
	c.nest++
	switch v := f.Vector; {
	case v == vecSyscall:
		doSyscall(c, f)
	case v < 32:
		exception(c, f)
	default:
		irq(c, f, true)
	}
	runStrays()
	deliverSignals(c, f)
	armTimer(c)
	if profiling {
		profTrap(vec, nr, t0, f.RIP)
	}
	c.nest--
}

// deviceIRQ handles vector if it is Xen's event upcall or a device's
// (kernel/irq), and reports whether it was.
func deviceIRQ(v uint64) bool {
	switch {
	case v == xenUpcallVector && onXen:
		xenUpcall()
	case v >= irqVectorBase && v < irqVectorBase+irqVectors:
		irqFired(v)
	default:
		return false
	}
	return true
}

// Interrupts delivered while interrupts were off (strayInterrupt,
// entry_amd64.s): how many, and the LAPIC vectors among them still in
// service, to be acknowledged and handled by runStrays (strayLate counts
// them). strayPending says strayVectors may be non-zero.
var (
	strayCount   uint64
	strayVectors [4]uint64
	strayPending uint64
	strayLate    uint64
	strayTold    bool
)

// runStrays acknowledges and handles the LAPIC interrupts strayInterrupt
// noted, as irq would have. It runs with interrupts off before the kernel
// returns to a thread or halts. An acknowledgement may exit to the
// hypervisor, which may deliver another stray: it is noted and handled in
// the same loop.
func runStrays() {
	if !strayTold && atomic.LoadUint64(&strayCount) != 0 {
		// Once, as it happens: a guest that never exits never prints
		// the count (powerOff).
		strayTold = true
		kprint("unikgo: an interrupt came while interrupts were off; handled later (counted at exit)\n")
	}
	for atomic.LoadUint64(&strayPending) != 0 {
		atomic.StoreUint64(&strayPending, 0)
		for w := range strayVectors {
			for b := atomic.SwapUint64(&strayVectors[w], 0); b != 0; b &= b - 1 {
				v := uint64(w*64 + bits.TrailingZeros64(b))
				strayLate++
				lapicEOIWrite()
				if !deviceIRQ(v) && v == timerVector {
					timerFired()
					expireTimers(nanotime())
				}
			}
		}
	}
}

// Interrupt frames overwritten by an interrupt delivered on top of them
// (lostFrame): how many, and whether the console was told.
var (
	lostFrames uint64
	lostTold   bool
	lostTest   uint64 // unikgo.losttest: idleLoop raises one (entry_amd64.s)
	idleResume uint64 // idleLoop polls before it halts (lostFrame)
)

// lostFrame handles an interrupt trapCommon found to have come while the
// CPU was still on IST1: in an entry stub, before trapCommon moved the
// frame off IST1, or in strayInterrupt. Delivered at IST1's top again, its
// frame overwrote the one the interrupted entry still needed, so where
// that one was to return is gone. Only a delivery against IF can do this:
// nested SVM under QEMU TCG delivers an interrupt a second time now and
// then, right after the first. If the lost frame had interrupted the idle
// loop (halted, no trap in progress), nothing is lost that the idle loop
// needs: f is made to resume idleLoop, which polls before it halts again.
// A thread's lost frame cannot be rebuilt: that is a kernel fault,
// reported as such rather than left to hang. (A second delivery that
// lands in trapCommon rather than in a stub is assumed to be of the same
// vector, as a repeated delivery is: the first's vector is gone too.)
func lostFrame(c *percpu, f *TrapFrame) {
	f.Vector &^= vecFrameLost
	if c.idling == 0 || c.nest != 0 {
		kprint("\nunikgo: interrupt ")
		kprintDec(f.Vector)
		kprint(" came while the CPU was entering another and overwrote the frame of the thread that one had interrupted: that thread cannot go on (an interrupt delivered twice, as nested virtualization under QEMU TCG does)\n")
		kernelFault(c, f)
	}
	// The entry stub the second delivery interrupted was another vector's:
	// that interrupt, in service at the LAPIC, is handled late (runStrays).
	if v, ok := stubVector(f.RIP); ok && v != f.Vector && v >= 32 && v != spuriousVector &&
		!(v == xenUpcallVector && onXen && xenUpcallNoEOI) {
		atomic.OrUint64(&strayVectors[v/64], 1<<(v%64))
		atomic.StoreUint64(&strayPending, 1)
	}
	lostFrames++
	if !lostTold {
		lostTold = true
		kprint("unikgo: an interrupt came while the CPU was entering another and overwrote its frame; the idle loop it had interrupted was resumed (counted at exit)\n")
	}
	idleResume = 1
	*f = TrapFrame{Vector: f.Vector, RIP: uint64(idleLoopAddr()), CS: selCode, RFLAGS: 2, RSP: uint64(c.idleTop), SS: selData}
}

// stubVector returns the IDT vector whose entry stub holds rip.
func stubVector(rip uint64) (uint64, bool) {
	for v := uintptr(0); v < 256; v++ {
		if a := uint64(stubAddr(v)); rip >= a && rip < a+stubSize {
			return uint64(v), true
		}
	}
	return 0, false
}

// stubSize bounds an entry stub's code (stubs_amd64.s: two pushes and a
// jump, 12 bytes).
const stubSize = 16

func irq(c *percpu, f *TrapFrame, inThread bool) {
	if f.Vector == spuriousVector {
		return
	}
	if f.Vector != xenUpcallVector || !onXen || !xenUpcallNoEOI {
		lapicEOIWrite()
	}
	if deviceIRQ(f.Vector) {
		// Wake-up preemption, as Linux gives I/O-bound tasks: a thread a
		// device event woke runs now rather than when the interrupted
		// thread's slice (timeSlice) ends.
		if inThread && runqLen > 0 {
			yield(c, f)
		}
		return
	}
	if f.Vector != timerVector {
		return
	}
	timerFired()
	if profiling && inThread {
		profSample(uintptr(f.RIP), uintptr(f.RSP), uintptr(f.RBP))
	}
	now := nanotime()
	expireTimers(now)
	if inThread && runqLen > 0 && now >= c.sliceEnd {
		yield(c, f)
	}
}

// exception handles a CPU exception raised by thread code: page faults are
// resolved or become SIGSEGV; the rest become the signal Linux sends.
func exception(c *percpu, f *TrapFrame) {
	switch f.Vector {
	case vecPageFault:
		addr := c.cr2
		if addr == 0 && f.ErrCode&pfPresent == 0 {
			addr = lostFaultAddress(c, f)
		}
		if f.ErrCode&pfPresent == 0 || f.ErrCode&pfWrite != 0 {
			code := faultIn(addr, f.ErrCode&pfWrite != 0, f.ErrCode&pfFetch != 0)
			if code == 0 {
				return
			}
			fault(c, f, sigSEGV, int32(code), uint64(addr))
			return
		}
		fault(c, f, sigSEGV, segvAccErr, uint64(addr))
	case 0:
		fault(c, f, sigFPE, 1, f.RIP) // FPE_INTDIV
	case 1, 3:
		fault(c, f, sigTRAP, 1, f.RIP)
	case 6:
		if emulate(f) {
			return
		}
		fault(c, f, sigILL, 2, f.RIP) // ILL_ILLOPN
	case 13, 12:
		if f.Vector == 13 && emulate(f) {
			return
		}
		fault(c, f, sigSEGV, 0x80, 0) // SI_KERNEL
	case 16, 19:
		fault(c, f, sigFPE, 0, f.RIP)
	case 17:
		fault(c, f, sigBUS, 1, f.RIP)
	default:
		kernelFault(c, f)
	}
}

// fault delivers a synchronous signal. Linux forces it through: a blocked
// synchronous signal is unblocked.
func fault(c *percpu, f *TrapFrame, sig int, code int32, addr uint64) {
	if verbose {
		kprint("unikgo: fault: signal ")
		kprintDec(uint64(sig))
		kprint(" vector ")
		kprintDec(f.Vector)
		kprint(" error ")
		kprintHex(f.ErrCode)
		kprint(" rip=")
		kprintHex(f.RIP)
		kprint(" addr=")
		kprintHex(addr)
		kprint("\n")
	}
	t := &threads[c.cur]
	t.sigmask &^= 1 << (sig - 1)
	deliver(c, f, sig, code, addr, f.Vector)
}

var exceptionNames = [...]string{
	"divide error", "debug", "NMI", "breakpoint", "overflow", "bound range",
	"invalid opcode", "device not available", "double fault", "coprocessor overrun",
	"invalid TSS", "segment not present", "stack fault", "general protection",
	"page fault", "reserved", "x87 error", "alignment check", "machine check",
	"SIMD error", "virtualization", "control protection",
}

// exitKernelFault is the guest exit status after a fault in kernel code.
const exitKernelFault = 125

var inFault bool

// kernelFault reports an exception in kernel code (registers and a
// symbolized backtrace) and powers off.
func kernelFault(c *percpu, f *TrapFrame) {
	if inFault {
		kprint("\nunikgo: fault while reporting a kernel fault\n")
		powerOff(exitKernelFault)
	}
	inFault = true
	kprint("\nunikgo: kernel fault: ")
	if f.Vector < uint64(len(exceptionNames)) {
		kprint(exceptionNames[f.Vector])
	} else {
		kprint("vector ")
		kprintDec(f.Vector)
	}
	kprint(" (error ")
	kprintHex(f.ErrCode)
	kprint(")\n")
	reg := func(name string, v uint64) {
		kprint(name)
		kprint("=")
		kprintHex(v)
		kprint(" ")
	}
	reg("rip", f.RIP)
	reg("rsp", f.RSP)
	reg("rflags", f.RFLAGS)
	if f.Vector == vecPageFault {
		reg("cr2", uint64(c.cr2))
	}
	kprint("\n")
	reg("rax", f.RAX)
	reg("rbx", f.RBX)
	reg("rcx", f.RCX)
	reg("rdx", f.RDX)
	kprint("\n")
	reg("rsi", f.RSI)
	reg("rdi", f.RDI)
	reg("rbp", f.RBP)
	reg("r8", f.R8)
	kprint("\n")
	reg("r9", f.R9)
	reg("r10", f.R10)
	reg("r11", f.R11)
	reg("r12", f.R12)
	kprint("\n")
	reg("r13", f.R13)
	reg("r14", f.R14)
	reg("r15", f.R15)
	kprint("\nbacktrace:\n")
	symbolize(uintptr(f.RIP), false)
	// Follow the frame-pointer chain (Go keeps RBP frames on amd64).
	bp := uintptr(f.RBP)
	for i := 0; i < 32 && bp > pageSize && bp < identTop && bp&7 == 0; i++ {
		ret := *(*uintptr)(ptr(bp + 8))
		if ret == 0 {
			break
		}
		symbolize(ret, true)
		bp = *(*uintptr)(ptr(bp))
	}
	powerOff(exitKernelFault)
}

// symbolize prints pc with its function and file:line, read from the
// binary's pclntab without help from the runtime.
func symbolize(pc uintptr, isReturn bool) {
	kprint("  ")
	kprintHex(uint64(pc))
	lookup := pc
	if isReturn {
		lookup--
	}
	if s, ok := loadSymtab(); ok {
		if name, file, line, ok := s.lookup(lookup); ok {
			kprint(" ")
			kprint(name)
			if file != "" {
				kprint("\n      ")
				kprint(file)
				kprint(":")
				kprintDec(uint64(line))
			}
		}
	}
	kprint("\n")
}

// faultAddress recovers a page fault's address from the faulting
// instruction when CR2 reads 0 (see package insn).
func faultAddress(c *percpu, f *TrapFrame) (uintptr, bool) {
	if f.RIP < pageSize || f.RIP+insn.MaxLen > uint64(identTop) {
		return 0, false
	}
	r := insn.Regs{RIP: f.RIP, FSBase: uint64(threads[c.cur].fsbase)}
	r.GPR = [16]uint64{f.RAX, f.RCX, f.RDX, f.RBX, f.RSP, f.RBP, f.RSI, f.RDI,
		f.R8, f.R9, f.R10, f.R11, f.R12, f.R13, f.R14, f.R15}
	a, ok := insn.Address(userBytes(uintptr(f.RIP), insn.MaxLen), &r, f.ErrCode&pfWrite != 0)
	return uintptr(a), ok
}

// lostFaultAddress finds the address of a not-present fault that arrived
// with CR2 = 0 (see faultAddress), or returns 0 to let the fault go to the
// program as SIGSEGV. It never returns a guess that already failed: a
// wrong address on a present page would send the thread back into the same
// fault forever, which froze lab guests before; an address it cannot
// recover is reported on the console, so the SIGSEGV the program then gets
// is not mistaken for its own nil dereference.
func lostFaultAddress(c *percpu, f *TrapFrame) uintptr {
	present := func(a uintptr) bool {
		if a < identTop {
			return a >= pageSize // the image and RAM: always mapped
		}
		e := walk(a, false)
		return e != nil && *e&ptePresent != 0
	}
	decoded, ok := faultAddress(c, f)
	if addr, ok := recoverAddress(decoded, ok, uintptr(f.RSP), present); ok {
		return addr
	}
	kprint("unikgo: page fault with no address (CR2 = 0) at rip=")
	kprintHex(f.RIP)
	kprint(" rsp=")
	kprintHex(f.RSP)
	kprint(" error ")
	kprintHex(f.ErrCode)
	kprint(": the instruction's access could not be recovered; bytes")
	if f.RIP >= pageSize && f.RIP+insn.MaxLen <= uint64(identTop) {
		const digits = "0123456789abcdef"
		for _, b := range userBytes(uintptr(f.RIP), insn.MaxLen) {
			h := [3]byte{' ', digits[b>>4], digits[b&15]}
			consoleWrite(h[:])
		}
	}
	kprint("\n")
	return 0
}

// recoverAddress decides which address a not-present fault without CR2
// was for, from the decoder's answer (decoded, if ok), the stack pointer
// and the page tables (present). It fails rather than return an address
// on a present page: the thread would fault there again, forever.
func recoverAddress(decoded uintptr, ok bool, rsp uintptr, present func(uintptr) bool) (uintptr, bool) {
	addr := decoded
	switch {
	case ok && addr < pageSize:
		return addr, true // a nil dereference: CR2 was right
	case ok:
		addr = straddledPage(addr, present(addr))
	default:
		// An instruction the decoder does not know: the stack's next
		// page is the likeliest miss (a goroutine's fresh stack).
		addr = rsp - 8
	}
	return addr, !present(addr)
}

// maxAccess is the widest memory access faultAddress decodes: a 16-byte
// SSE load or store (no VEX: AVX is left off).
const maxAccess = 16

// straddledPage corrects faultAddress's answer, which is where the access
// starts: an access that starts in a present page and crosses into the
// next one faults on the next page, so that page is the one to map (with
// start's, faultIn would find it present and return to the instruction,
// which faults again forever: a memmove store straddling into a heap page
// not yet touched froze the Xen lab guest this way).
func straddledPage(start uintptr, startPresent bool) uintptr {
	end := start + maxAccess - 1
	if !startPresent || end < start || end>>pageShift == start>>pageShift {
		return start
	}
	return end
}

// emulate performs instructions a hypervisor refused although CPUID
// advertises them: RDTSCP raises #GP for Xen guests in the nested QEMU lab,
// and the runtime uses it in cputicks. It reports whether f was handled.
func emulate(f *TrapFrame) bool {
	if f.RIP < pageSize || f.RIP+3 > uint64(identTop) {
		return false
	}
	b := userBytes(uintptr(f.RIP), 3)
	switch {
	case b[0] == 0x0f && b[1] == 0x01 && b[2] == 0xf9: // RDTSCP
		t := x86.RDTSC()
		f.RAX, f.RDX, f.RCX = t&0xffffffff, t>>32, 0 // TSC_AUX: CPU 0
		f.RIP += 3
		return true
	case b[0] == 0x0f && b[1] == 0x31: // RDTSC
		t := x86.RDTSC()
		f.RAX, f.RDX = t&0xffffffff, t>>32
		f.RIP += 2
		return true
	}
	return false
}
