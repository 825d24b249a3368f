package kernel

import "github.com/unikgo/unikgo/x86"

// The unikgo.profile option: where the vCPU's time goes, printed on the
// console when the program ends. The kernel's share is measured exactly
// (TSC at each trap's entry and exit, by system call and by vector); idle
// is the time halted; the program's share is sampled (profTick) from the
// timer interrupt, by function. It answers "why is this slow" in a guest
// without a profiler of its own (Go's pprof needs SIGPROF timers, which
// the kernel does not emulate).

var profiling bool

// profTick is the time between samples: 1 ms, or 10 ms on Xen, where each
// timer interrupt costs three VM exits (injection, EOI, timer write) and
// in the lab's nested Xen 1 kHz of them slowed a network transfer 2-5x and
// changed its shape (smaller frames from dom0, more ACKs).
var profTick uint64 = 1_000_000

const (
	profTop    = 20 // lines per table
	profTopCum = 60 // lines of the table with callees
)

type profCount struct{ n, cycles uint64 }

var (
	profStart     uint64 // TSC when profiling began
	profKernel    uint64 // cycles in traps taken from threads
	profIdle      uint64 // cycles halted
	profIdleSince uint64 // TSC when the CPU last went idle, 0 when busy
	profSys       [512]profCount
	profVec       [256]profCount // traps other than system calls
	profSamples   uint64         // samples taken in thread code
	profResumed   uint64         // samples at the PC a trap just returned to
	profExitRIP   uint64         // where the last trap returned to
	profEcho      bool           // the timer was due as that trap returned
	profMissed    uint64         // samples whose function table was full
	profFns       [4096]profFn   // samples by the function they were in
	profCum       [4096]profFn   // samples by every function on the stack
	// Accesses that exit to a hypervisor (a VM exit each when virtualized):
	profTimerWrites uint64            // LAPIC timer (re)arms
	profTimerBy     [timerWhys]uint64 // the arms by why (armTimer)
	profTimerWhy    int32             // why the next arm is made
	profEOIs        uint64            // LAPIC EOIs
)

// profFn counts samples of one function.
type profFn struct {
	fn uintptr // _func address in the pclntab
	n  uint64
}

// profDepth bounds the frames walked per sample.
const profDepth = 48

// profTrap accounts a trap that began at TSC t0 and now returns to rip: a
// system call nr (vec = vecSyscall) or an exception or interrupt.
func profTrap(vec, nr, t0, rip uint64) {
	profResume(rip)
	d := x86.RDTSC() - t0
	profKernel += d
	if vec == vecSyscall {
		if nr < uint64(len(profSys)) {
			profSys[nr].n++
			profSys[nr].cycles += d
		}
		return
	}
	profVec[vec&255].n++
	profVec[vec&255].cycles += d
}

// profResume notes where and how a trap returns to a thread.
func profResume(rip uint64) {
	profExitRIP = rip
	profEcho = timerArmed != 0 && timerArmed <= nanotime()+profEchoWindow
}

// profEchoWindow: a deadline this close when a trap returns fires as the
// thread resumes, before it has run.
const profEchoWindow = 20_000 // ns

// profGoIdle and profWake bracket the time the CPU halts.
func profGoIdle() {
	if profiling && profIdleSince == 0 {
		profIdleSince = x86.RDTSC()
	}
}

func profWake() {
	if profiling && profIdleSince != 0 {
		profIdle += x86.RDTSC() - profIdleSince
		profIdleSince = 0
	}
}

// profSample records the program's PC at a timer interrupt. An interrupt
// pending while the kernel ran is taken the moment the thread resumes, at
// the PC the trap returned to (typically just past a SYSCALL): that is
// kernel time's echo, not the program's, and counted apart. The kernel
// knows when that happens: the timer was due (or about to be) as the trap
// returned, which under Xen is common, traps there taking tens of
// microseconds and the interrupt's injection more.
//
// The stack is walked through the frame pointers Go keeps on amd64 (each
// frame's BP slot holds the caller's BP, the return address above it), so
// that every function on it counts the sample once in profCum: what a
// function costs with its callees. A function sampled without a frame of
// its own (a leaf without locals, or any function in its prologue) has
// not pushed BP: its caller's return address is at the top of the stack,
// and BP is the caller's. A frame whose pages are not present ends the
// walk.
func profSample(pc, sp, bp uintptr) {
	if profEcho && uint64(pc) == profExitRIP {
		profResumed++
		return
	}
	profSamples++
	s, ok := loadSymtab()
	if !ok {
		return
	}
	fn := s.findFunc(pc)
	if !profCount1(&profFns, fn) {
		profMissed++
	}
	var w profWalk
	w.add(fn)
	if fn != 0 && s.pcvalue(fn, rd32(fn+fnPcsp), pc) == 0 && sp&7 == 0 && profReadable(sp, 8) {
		if ret := *(*uintptr)(ptr(sp)); ret != 0 {
			w.add(s.findFunc(ret - 1))
		}
	}
	for w.n < len(w.seen) && bp&7 == 0 && profReadable(bp, 16) {
		next, ret := *(*uintptr)(ptr(bp)), *(*uintptr)(ptr(bp + 8))
		if next <= bp || ret == 0 {
			return
		}
		w.add(s.findFunc(ret - 1))
		bp = next
	}
}

// profWalk is the functions one sample's stack walk has counted.
type profWalk struct {
	seen [profDepth]uintptr
	n    int
}

// add counts the sample in profCum for fn, once per walk.
func (w *profWalk) add(fn uintptr) {
	if fn == 0 || w.n == len(w.seen) {
		return
	}
	for _, f := range w.seen[:w.n] {
		if f == fn {
			return
		}
	}
	w.seen[w.n] = fn
	w.n++
	profCount1(&profCum, fn)
}

// profCount1 adds a sample to fn's entry in t; false if t is full.
func profCount1(t *[4096]profFn, fn uintptr) bool {
	h := (fn >> 3) * 0x9e3779b97f4a7c15 >> 52 // 12 bits
	for i := uintptr(0); i < uintptr(len(t)); i++ {
		e := &t[(h+i)%uintptr(len(t))]
		if e.fn == fn || e.fn == 0 {
			e.fn = fn
			e.n++
			return true
		}
	}
	return false
}

// profReadable reports whether [p, p+n) is mapped, without faulting
// anything in: a stack walk must not change the program's memory.
func profReadable(p, n uintptr) bool {
	if p < pageSize || p+n < p {
		return false
	}
	if p+n <= identTop {
		return true
	}
	for va := p &^ (pageSize - 1); va < p+n; va += pageSize {
		if e := walk(va, false); e == nil || *e&ptePresent == 0 {
			return false
		}
	}
	return true
}

// profNextTick bounds the timer's next deadline so that samples keep
// coming: the next whole millisecond, the same within one, so the timer is
// not rewritten by every trap.
func profNextTick(next, now uint64) uint64 {
	t := (now/profTick + 1) * profTick
	if next == 0 || t < next {
		return t
	}
	return next
}

// profTable prints t's top entries, emptying them.
func profTable(t *[4096]profFn, top int) {
	s, ok := loadSymtab()
	for k := 0; k < top && ok; k++ {
		best := -1
		var bn uint64
		for i := range t {
			if t[i].n > bn {
				best, bn = i, t[i].n
			}
		}
		if best < 0 {
			break
		}
		e := &t[best]
		kprint("  ")
		percent(e.n, profSamples)
		kprint("% ")
		if e.fn == 0 {
			kprint("(unknown)")
		} else {
			kprint(cstring(s.names + uintptr(rd32(e.fn+fnNameOff))))
		}
		kprint("\n")
		e.n = 0
	}
}

func percent(part, whole uint64) {
	if whole == 0 {
		whole = 1
	}
	kprintMilli(part * 100_000 / whole)
}

// profReport prints the tables.
func profReport() {
	if !profiling {
		return
	}
	profiling = false
	profWake()
	total := x86.RDTSC() - profStart
	kprint("unikgo: profile: ")
	kprintMilli(total * 1000 / tscHz)
	kprint(" s: kernel ")
	percent(profKernel, total)
	kprint("%, idle ")
	percent(profIdle, total)
	kprint("%, program the rest; ")
	kprintDec(profSamples)
	kprint(" samples of the program (")
	kprintDec(profResumed)
	kprint(" more taken as it resumed from a trap, left out)\n")
	kprint("unikgo: profile: local APIC: ")
	kprintDec(profTimerWrites)
	kprint(" timer writes, ")
	kprintDec(profEOIs)
	kprint(" EOIs (each an exit under a hypervisor)\n")
	kprint("unikgo: profile: timer writes for: ")
	// By the wait of the thread whose deadline it was (waitNone...
	// waitServe in sched.go, in order), the end of a time slice, or a
	// profiler tick.
	for i, name := range [timerWhys]string{"no wait", "futex", "nanosleep", "epoll_pwait", "pause", "io", "served call", "slice end", "profiler"} {
		if i > 0 {
			kprint(", ")
		}
		kprint(name)
		kprint(" ")
		kprintDec(profTimerBy[i])
	}
	kprint("\n")
	kprint("unikgo: profile: kernel, by system call and trap (% of all time, count, us each):\n")
	for k := 0; k < profTop; k++ {
		best, bestVec := -1, false
		var bc uint64
		for i := range profSys {
			if profSys[i].cycles > bc {
				best, bestVec, bc = i, false, profSys[i].cycles
			}
		}
		for i := range profVec {
			if profVec[i].cycles > bc {
				best, bestVec, bc = i, true, profVec[i].cycles
			}
		}
		if best < 0 {
			break
		}
		e := &profSys[best]
		kprint("  ")
		if bestVec {
			e = &profVec[best]
			kprint("vector ")
			kprintDec(uint64(best))
		} else if best < len(syscallNames) && syscallNames[best] != "" {
			kprint(syscallNames[best])
		} else {
			kprint("syscall ")
			kprintDec(uint64(best))
		}
		kprint(" ")
		percent(e.cycles, total)
		kprint("% ")
		kprintDec(e.n)
		kprint(" ")
		kprintMilli(e.cycles * 1000 / max(tscHz/1e6, 1) / e.n) // ns, shown as us
		kprint("\n")
		e.cycles = 0
	}
	kprint("unikgo: profile: program, by function (% of samples):\n")
	profTable(&profFns, profTop)
	kprint("unikgo: profile: program, by function with its callees (% of samples):\n")
	profTable(&profCum, profTopCum)
	if profMissed > 0 {
		kprint("  (")
		kprintDec(profMissed)
		kprint(" samples in functions past the table)\n")
	}
}
