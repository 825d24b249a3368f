package kernel

// Signals, delivered the way Linux x86-64 does it so that the Go runtime's
// own handlers run unchanged: a fault in Go code becomes SIGSEGV with a
// struct rt_sigframe pushed on the thread's alternate signal stack, which
// lets the runtime turn it into a panic; SIGURG from tgkill drives async
// preemption. The layouts below follow the kernel's
// arch/x86/include/uapi/asm/sigcontext.h and ucontext.h (checked by
// TestSigframeLayout).

const (
	nsig = 64

	sigHUP   = 1
	sigILL   = 4
	sigTRAP  = 5
	sigABRT  = 6
	sigBUS   = 7
	sigFPE   = 8
	sigKILL  = 9
	sigSEGV  = 11
	sigPIPE  = 13
	sigCHLD  = 17
	sigSTOP  = 19
	sigURG   = 23
	sigWINCH = 28

	saSiginfo   = 0x4
	saOnstack   = 0x08000000
	saRestart   = 0x10000000
	saRestorer  = 0x04000000
	saNodefer   = 0x40000000
	saResethand = 0x80000000

	sigDFL = 0
	sigIGN = 1

	ssOnstack = 1
	ssDisable = 2

	siTkill = -6
	siUser  = 0
)

// Offsets in the signal frame.
const (
	frPretcode  = 0
	frUC        = 8
	ucFlags     = 0
	ucLink      = 8
	ucStack     = 16 // stack_t: sp@0, flags@8, size@16
	ucMcontext  = 40
	ucSigmask   = 296
	ucSize      = 304
	frInfo      = frUC + ucSize // 312
	siginfoSize = 128
	frameSize   = frInfo + siginfoSize // 440
	fxSize      = 512

	// sigcontext offsets within uc_mcontext.
	scR8      = 0
	scRDI     = 64
	scRSI     = 72
	scRBP     = 80
	scRBX     = 88
	scRDX     = 96
	scRAX     = 104
	scRCX     = 112
	scRSP     = 120
	scRIP     = 128
	scEFLAGS  = 136
	scCSGSFS  = 144
	scErr     = 152
	scTrapno  = 160
	scOldmask = 168
	scCR2     = 176
	scFPState = 184
)

type sigaction struct {
	handler, flags, restorer, mask uint64
}

var sigactions [nsig + 1]sigaction

func sysRtSigaction(f *TrapFrame) {
	sig, act, oact := int(f.RDI), uintptr(f.RSI), uintptr(f.RDX)
	if sig < 1 || sig > nsig || f.R10 != 8 {
		f.RAX = errno(_EINVAL)
		return
	}
	if oact != 0 {
		if !userOK(oact, 32, true) {
			f.RAX = errno(_EFAULT)
			return
		}
		*(*sigaction)(ptr(oact)) = sigactions[sig]
	}
	if act != 0 {
		if sig == sigKILL || sig == sigSTOP {
			f.RAX = errno(_EINVAL)
			return
		}
		if !userOK(act, 32, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		sigactions[sig] = *(*sigaction)(ptr(act))
	}
	f.RAX = 0
}

const unblockable = 1<<(sigKILL-1) | 1<<(sigSTOP-1)

func sysRtSigprocmask(c *percpu, f *TrapFrame) {
	how, set, oset := int(f.RDI), uintptr(f.RSI), uintptr(f.RDX)
	if f.R10 != 8 {
		f.RAX = errno(_EINVAL)
		return
	}
	t := &threads[c.cur]
	if oset != 0 {
		if !userOK(oset, 8, true) {
			f.RAX = errno(_EFAULT)
			return
		}
		*(*uint64)(ptr(oset)) = t.sigmask
	}
	if set != 0 {
		if !userOK(set, 8, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		m := *(*uint64)(ptr(set))
		switch how {
		case 0:
			t.sigmask |= m
		case 1:
			t.sigmask &^= m
		case 2:
			t.sigmask = m
		default:
			f.RAX = errno(_EINVAL)
			return
		}
		t.sigmask &^= unblockable
	}
	f.RAX = 0
}

func onAltStack(t *thread, sp uint64) bool {
	return t.altSize != 0 && uintptr(sp) > t.altSP && uintptr(sp) <= t.altSP+t.altSize
}

func sysSigaltstack(c *percpu, f *TrapFrame) {
	ss, oss := uintptr(f.RDI), uintptr(f.RSI)
	t := &threads[c.cur]
	if oss != 0 {
		if !userOK(oss, 24, true) {
			f.RAX = errno(_EFAULT)
			return
		}
		fl := int32(0)
		if t.altSize == 0 {
			fl = ssDisable
		} else if onAltStack(t, f.RSP) {
			fl = ssOnstack
		}
		*(*uint64)(ptr(oss)) = uint64(t.altSP)
		*(*int32)(ptr(oss + 8)) = fl
		*(*uint64)(ptr(oss + 16)) = uint64(t.altSize)
	}
	if ss != 0 {
		if !userOK(ss, 24, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		if onAltStack(t, f.RSP) {
			f.RAX = errno(_EPERM)
			return
		}
		sp := *(*uint64)(ptr(ss))
		fl := *(*int32)(ptr(ss + 8))
		size := *(*uint64)(ptr(ss + 16))
		if fl&ssDisable != 0 {
			t.altSP, t.altSize = 0, 0
		} else {
			if size < 2048 {
				f.RAX = errno(_ENOMEM)
				return
			}
			t.altSP, t.altSize = uintptr(sp), uintptr(size)
		}
	}
	f.RAX = 0
}

// raise marks sig pending on thread i and interrupts a blocking wait.
func raise(i int, sig int) {
	t := &threads[i]
	t.pending |= 1 << (sig - 1)
	// A served call is not interrupted: the server may already have done
	// it (a disk write), as Linux's uninterruptible disk waits.
	if t.state == tsBlocked && t.wait != waitServe && t.sigmask&(1<<(sig-1)) == 0 && sigactions[sig].handler > sigIGN {
		if t.wait == waitIO {
			// Parked on its SYSCALL instruction to run it again
			// (restartOn): with SA_RESTART it does so after the
			// handler, as Linux restarts; else it returns EINTR.
			if sigactions[sig].flags&saRestart != 0 {
				wake(i, t.sysno)
				return
			}
			t.regs.RIP += 2
		}
		wake(i, errno(_EINTR))
	}
}

// deliverSignals delivers the current thread's pending, unblocked signals.
func deliverSignals(c *percpu, f *TrapFrame) {
	if c.cur < 0 {
		return
	}
	t := &threads[c.cur]
	for t.pending&^t.sigmask != 0 {
		p := t.pending &^ t.sigmask
		sig := 1
		for p&1 == 0 {
			p >>= 1
			sig++
		}
		t.pending &^= 1 << (sig - 1)
		code := int32(siTkill)
		deliver(c, f, sig, code, 0, 0)
	}
}

// deliver builds a signal frame for sig on the current thread, rewriting f
// to enter the handler.
func deliver(c *percpu, f *TrapFrame, sig int, code int32, addr uint64, trapno uint64) {
	t := &threads[c.cur]
	a := &sigactions[sig]
	switch a.handler {
	case sigDFL:
		switch sig {
		case sigURG, sigCHLD, sigWINCH:
			return
		}
		kprint("unikgo: terminated by signal ")
		kprintDec(uint64(sig))
		kprint("\n")
		powerOff(128 + sig)
	case sigIGN:
		if code > 0 { // a fault cannot be ignored
			kprint("unikgo: fault with the signal ignored\n")
			powerOff(128 + sig)
		}
		return
	}
	sp := f.RSP - 128 // skip the red zone
	if a.flags&saOnstack != 0 && t.altSize != 0 && !onAltStack(t, f.RSP) {
		sp = uint64(t.altSP + t.altSize)
	}
	fp := (sp - fxSize) &^ 63
	fr := ((fp - frameSize) &^ 15) - 8
	if !userOK(uintptr(fr), uintptr(sp-fr), true) {
		kprint("unikgo: cannot deliver signal ")
		kprintDec(uint64(sig))
		kprint(": bad stack\n")
		powerOff(128 + sig)
	}
	b := userBytes(uintptr(fr), uintptr(sp-fr))
	for i := range b[:frameSize] {
		b[i] = 0
	}
	memmove8(uintptr(fp), c.fx, fxSize)
	put := func(off int, v uint64) { *(*uint64)(ptr(uintptr(fr) + uintptr(off))) = v }
	put(frPretcode, a.restorer)
	uc := frUC
	put(uc+ucStack, uint64(t.altSP))
	fl := uint64(0)
	if t.altSize == 0 {
		fl = ssDisable
	} else if onAltStack(t, f.RSP) {
		fl = ssOnstack
	}
	put(uc+ucStack+8, fl)
	put(uc+ucStack+16, uint64(t.altSize))
	mc := uc + ucMcontext
	r := [...]uint64{f.R8, f.R9, f.R10, f.R11, f.R12, f.R13, f.R14, f.R15,
		f.RDI, f.RSI, f.RBP, f.RBX, f.RDX, f.RAX, f.RCX, f.RSP, f.RIP, f.RFLAGS}
	for i, v := range r {
		put(mc+8*i, v)
	}
	put(mc+scCSGSFS, uint64(selCode)|uint64(selData)<<48)
	put(mc+scErr, f.ErrCode)
	put(mc+scTrapno, trapno)
	put(mc+scOldmask, t.sigmask)
	put(mc+scCR2, addr)
	put(mc+scFPState, fp)
	put(uc+ucSigmask, t.sigmask)
	info := uintptr(fr) + frInfo
	*(*int32)(ptr(info)) = int32(sig)
	*(*int32)(ptr(info + 8)) = code
	if code > 0 {
		*(*uint64)(ptr(info + 16)) = addr
	} else {
		*(*int32)(ptr(info + 16)) = 1 // si_pid
	}
	if a.flags&saNodefer == 0 {
		t.sigmask |= 1 << (sig - 1)
	}
	t.sigmask |= a.mask
	t.sigmask &^= unblockable
	if a.flags&saResethand != 0 {
		a.handler = sigDFL
	}
	f.RSP = fr
	f.RIP = a.handler
	f.RDI = uint64(sig)
	f.RSI = uint64(info)
	f.RDX = fr + uint64(uc)
	f.RAX = 0
	f.RFLAGS &^= 1<<10 | 1<<8 | 1<<18 // DF, TF, AC
}

func sysRtSigreturn(c *percpu, f *TrapFrame) {
	t := &threads[c.cur]
	uc := uintptr(f.RSP)
	if !userOK(uc, ucSize, false) {
		kprint("unikgo: rt_sigreturn with a bad frame\n")
		powerOff(128 + sigSEGV)
	}
	mc := uc + ucMcontext
	get := func(off uintptr) uint64 { return *(*uint64)(ptr(mc + off)) }
	f.R8, f.R9, f.R10, f.R11 = get(0), get(8), get(16), get(24)
	f.R12, f.R13, f.R14, f.R15 = get(32), get(40), get(48), get(56)
	f.RDI, f.RSI, f.RBP, f.RBX = get(scRDI), get(scRSI), get(scRBP), get(scRBX)
	f.RDX, f.RAX, f.RCX, f.RSP = get(scRDX), get(scRAX), get(scRCX), get(scRSP)
	f.RIP = get(scRIP)
	const userFlags = 0xcd5 | 1<<18 | 1<<21 // CF PF AF ZF SF TF DF OF, AC, ID
	f.RFLAGS = f.RFLAGS&^userFlags | get(scEFLAGS)&userFlags | rflagsIF
	f.CS, f.SS = selCode, selData
	if fp := uintptr(get(scFPState)); fp != 0 && userOK(fp, fxSize, false) {
		memmove8(c.fx, fp, fxSize)
		// MXCSR (offset 24) reserved bits would make FXRSTOR fault.
		*(*uint32)(ptr(c.fx + 24)) &= 0xffbf
	}
	t.sigmask = *(*uint64)(ptr(uc + ucSigmask)) &^ unblockable
}

func sysTgkill(c *percpu, f *TrapFrame, tid int32, sig int) {
	if sig < 0 || sig > nsig {
		f.RAX = errno(_EINVAL)
		return
	}
	for i := range live() {
		if threads[i].state != tsFree && threads[i].tid == tid {
			if sig != 0 {
				raise(i, sig)
			}
			f.RAX = 0
			return
		}
	}
	f.RAX = errno(_ESRCH)
}

func sysKill(c *percpu, f *TrapFrame, pid int64, sig int) {
	if pid != 0 && pid != 1 && pid != -1 {
		f.RAX = errno(_ESRCH)
		return
	}
	if sig < 0 || sig > nsig {
		f.RAX = errno(_EINVAL)
		return
	}
	f.RAX = 0
	if sig == 0 {
		return
	}
	if sig == sigKILL || sig == sigSTOP && false {
		powerOff(128 + sig)
	}
	// Process-directed: the current thread if it does not block it.
	target := int(c.cur)
	if threads[target].sigmask&(1<<(sig-1)) != 0 {
		for i := range live() {
			if threads[i].state != tsFree && threads[i].sigmask&(1<<(sig-1)) == 0 {
				target = i
				break
			}
		}
	}
	raise(target, sig)
}
