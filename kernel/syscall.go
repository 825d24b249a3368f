package kernel

import (
	"github.com/unikgo/unikgo/x86"
	"golang.org/x/sys/unix"
)

// doSyscall emulates one Linux x86-64 system call: number in RAX, arguments
// in RDI, RSI, RDX, R10, R8, R9, result (or -errno) in RAX.
func doSyscall(c *percpu, f *TrapFrame) {
	a0, a1, a2, a3 := f.RDI, f.RSI, f.RDX, f.R10
	t := &threads[c.cur]
	t.sysno = f.RAX
	if strace {
		straceEntry(t, f)
	}
	if servedCall(c, f) {
		return
	}
	switch nr := f.RAX; nr {
	case unix.SYS_READ:
		sysRead(c, f)
	case unix.SYS_WRITE:
		sysWrite(c, f)
	case unix.SYS_WRITEV:
		sysWritev(c, f)
	case unix.SYS_CLOSE:
		f.RAX = sysClose(int64(a0))
	case unix.SYS_FCNTL:
		f.RAX = sysFcntl(int64(a0), int(a1), a2)
	case unix.SYS_MMAP:
		f.RAX = uint64(sysMmap(uintptr(a0), uintptr(a1), uint32(a2), uint32(a3), int64(int32(f.R8))))
	case unix.SYS_MUNMAP:
		f.RAX = uint64(sysMunmap(uintptr(a0), uintptr(a1)))
	case unix.SYS_MPROTECT:
		f.RAX = uint64(sysMprotect(uintptr(a0), uintptr(a1), uint32(a2)))
	case unix.SYS_MADVISE:
		f.RAX = uint64(sysMadvise(uintptr(a0), uintptr(a1), int(a2)))
	case unix.SYS_RT_SIGACTION:
		sysRtSigaction(f)
	case unix.SYS_RT_SIGPROCMASK:
		sysRtSigprocmask(c, f)
	case unix.SYS_RT_SIGRETURN:
		sysRtSigreturn(c, f)
	case unix.SYS_SIGALTSTACK:
		sysSigaltstack(c, f)
	case unix.SYS_SCHED_YIELD:
		f.RAX = 0
		yield(c, f)
	case unix.SYS_NANOSLEEP:
		ns, ok := readTimespec(uintptr(a0))
		if !ok {
			f.RAX = errno(_EINVAL)
			return
		}
		f.RAX = 0
		block(c, f, waitSleep, nanotime()+ns+1)
	case unix.SYS_CLOCK_NANOSLEEP:
		ns, ok := readTimespec(uintptr(a2))
		if !ok {
			f.RAX = errno(_EINVAL)
			return
		}
		deadline := nanotime() + ns
		if a1&1 != 0 { // TIMER_ABSTIME
			deadline = ns
			if int(a0) == clockRealtime {
				deadline -= wallBaseNS
			}
		}
		f.RAX = 0
		block(c, f, waitSleep, deadline+1)
	case unix.SYS_PAUSE:
		f.RAX = errno(_EINTR)
		block(c, f, waitPause, 0)
	case unix.SYS_CLOCK_GETTIME:
		ns, ok := clockNow(c, int(a0))
		switch {
		case !ok:
			f.RAX = errno(_EINVAL)
		case !writeTimespec(uintptr(a1), ns):
			f.RAX = errno(_EFAULT)
		default:
			f.RAX = 0
		}
	case unix.SYS_CLOCK_GETRES:
		if a1 != 0 && !writeTimespec(uintptr(a1), 1) {
			f.RAX = errno(_EFAULT)
			return
		}
		f.RAX = 0
	case unix.SYS_GETTIMEOFDAY:
		if a0 != 0 {
			if !userOK(uintptr(a0), 16, true) {
				f.RAX = errno(_EFAULT)
				return
			}
			ns := wallBaseNS + nanotime()
			*(*int64)(ptr(uintptr(a0))) = int64(ns / 1e9)
			*(*int64)(ptr(uintptr(a0) + 8)) = int64(ns % 1e9 / 1000)
		}
		f.RAX = 0
	case unix.SYS_TIME:
		s := (wallBaseNS + nanotime()) / 1e9
		if a0 != 0 {
			if !userOK(uintptr(a0), 8, true) {
				f.RAX = errno(_EFAULT)
				return
			}
			*(*uint64)(ptr(uintptr(a0))) = s
		}
		f.RAX = s
	case unix.SYS_FUTEX:
		sysFutex(c, f)
	case unix.SYS_CLONE:
		sysClone(c, f)
	case unix.SYS_EXIT:
		threadExit(c, f)
	case unix.SYS_EXIT_GROUP:
		powerOff(int(a0 & 0xff))
	case unix.SYS_ARCH_PRCTL:
		switch a0 {
		case 0x1002: // ARCH_SET_FS
			if a1 >= userTop {
				f.RAX = errno(_EPERM)
				return
			}
			t.fsbase = uintptr(a1)
			c.ufs = uintptr(a1)
			f.RAX = 0
		case 0x1003: // ARCH_GET_FS
			if !userOK(uintptr(a1), 8, true) {
				f.RAX = errno(_EFAULT)
				return
			}
			*(*uint64)(ptr(uintptr(a1))) = uint64(t.fsbase)
			f.RAX = 0
		default:
			f.RAX = errno(_EINVAL)
		}
	case unix.SYS_GETPID:
		f.RAX = 1
	case unix.SYS_GETPPID:
		f.RAX = 0
	case unix.SYS_GETTID:
		f.RAX = uint64(t.tid)
	case unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID:
		f.RAX = 0
	case unix.SYS_TGKILL:
		if a0 != 1 {
			f.RAX = errno(_ESRCH)
			return
		}
		sysTgkill(c, f, int32(a1), int(a2))
	case unix.SYS_TKILL:
		sysTgkill(c, f, int32(a0), int(a1))
	case unix.SYS_KILL:
		sysKill(c, f, int64(a0), int(a1))
	case unix.SYS_SCHED_GETAFFINITY:
		if a1 < 8 || !userOK(uintptr(a2), 8, true) {
			f.RAX = errno(_EINVAL)
			return
		}
		*(*uint64)(ptr(uintptr(a2))) = 1<<ncpu - 1
		f.RAX = 8
	case unix.SYS_SCHED_SETAFFINITY:
		f.RAX = 0
	case unix.SYS_EPOLL_CREATE1:
		f.RAX = sysEpollCreate1(a0)
	case unix.SYS_EPOLL_CREATE:
		f.RAX = sysEpollCreate1(0)
	case unix.SYS_EPOLL_CTL:
		f.RAX = sysEpollCtl(int64(a0), int(a1), int64(a2), uintptr(a3))
	case unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT:
		sysEpollPwait(c, f)
	case unix.SYS_PIPE2:
		f.RAX = sysPipe2(uintptr(a0), a1)
	case unix.SYS_PIPE:
		f.RAX = sysPipe2(uintptr(a0), 0)
	case unix.SYS_EVENTFD2:
		f.RAX = sysEventfd2(a0, a1)
	case unix.SYS_EVENTFD:
		f.RAX = sysEventfd2(a0, 0)
	case unix.SYS_GETRANDOM:
		f.RAX = sysGetrandom(uintptr(a0), uintptr(a1))
	case unix.SYS_UNAME:
		f.RAX = sysUname(uintptr(a0))
	case unix.SYS_PRLIMIT64:
		f.RAX = sysPrlimit(int(a1), uintptr(a3))
	case unix.SYS_GETRLIMIT:
		f.RAX = sysPrlimit(int(a0), uintptr(a1))
	case unix.SYS_SETRLIMIT:
		f.RAX = 0
	case unix.SYS_OPENAT, unix.SYS_OPEN:
		p, fl := a1, a2
		if nr == unix.SYS_OPEN {
			p, fl = a0, a1
		}
		path, e := readPath(uintptr(p))
		if e != 0 {
			f.RAX = e
		} else if !servedPath(c, f, path, true) {
			f.RAX = sysOpen(path, fl)
		}
	case unix.SYS_NEWFSTATAT, unix.SYS_STAT, unix.SYS_LSTAT, unix.SYS_ACCESS, unix.SYS_FACCESSAT,
		unix.SYS_FACCESSAT2, unix.SYS_STATX:
		p := a1
		if nr == unix.SYS_STAT || nr == unix.SYS_LSTAT || nr == unix.SYS_ACCESS {
			p = a0
		}
		path, e := readPath(uintptr(p))
		if e != 0 {
			f.RAX = e
		} else if !servedPath(c, f, path, false) {
			f.RAX = statBuiltin(nr, path, f)
		}
	case unix.SYS_READLINKAT, unix.SYS_READLINK:
		f.RAX = errno(_ENOENT)
	case unix.SYS_SOCKET:
		servedSocket(c, f)
	case unix.SYS_FSTAT:
		f.RAX = errno(_EBADF)
		if getFD(int64(a0)) != nil {
			f.RAX = errno(_ENOSYS)
		}
	case unix.SYS_IOCTL:
		f.RAX = errno(_ENOTTY)
		if d := getFD(int64(a0)); d == nil {
			f.RAX = errno(_EBADF)
		} else if d.kind == fdEvtchn {
			f.RAX = evtchnIoctl(d, a1, uintptr(a2))
		} else if d.kind == fdDMA {
			f.RAX = dmaIoctl(int64(a0), a1, uintptr(a2))
		} else if d.kind == fdIRQ {
			f.RAX = irqIoctl(d, a1, uintptr(a2))
		} else if d.kind == fdServer {
			f.RAX = serveIoctl(d, a1, uintptr(a2))
		}
	case unix.SYS_GETCWD:
		if a1 < 2 {
			f.RAX = errno(_ERANGE)
			return
		}
		if !userOK(uintptr(a0), 2, true) {
			f.RAX = errno(_EFAULT)
			return
		}
		b := userBytes(uintptr(a0), 2)
		b[0], b[1] = '/', 0
		f.RAX = 2
	case unix.SYS_PRCTL:
		switch a0 {
		case unix.PR_SET_NAME, unix.PR_GET_NAME:
			f.RAX = 0
		default:
			f.RAX = errno(_EINVAL)
		}
	case unix.SYS_SET_ROBUST_LIST, unix.SYS_SET_TID_ADDRESS:
		f.RAX = 0
		if nr == unix.SYS_SET_TID_ADDRESS {
			f.RAX = uint64(t.tid)
		}
	case unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCKALL, unix.SYS_MUNLOCKALL:
		f.RAX = 0
	default:
		unimplemented(nr)
		f.RAX = errno(_ENOSYS)
	}
}

var reported [512]bool

func unimplemented(nr uint64) {
	if nr < uint64(len(reported)) {
		if reported[nr] {
			return
		}
		reported[nr] = true
	}
	kprint("unikgo: unimplemented system call ")
	kprintDec(nr)
	if nr < uint64(len(syscallNames)) && syscallNames[nr] != "" {
		kprint(" (")
		kprint(syscallNames[nr])
		kprint(")")
	}
	kprint(": returning ENOSYS\n")
}

const (
	cloneVM            = 0x100
	cloneFS            = 0x200
	cloneFiles         = 0x400
	cloneSighand       = 0x800
	cloneThread        = 0x10000
	cloneSettls        = 0x80000
	cloneParentSettid  = 0x100000
	cloneChildCleartid = 0x200000
	cloneChildSettid   = 0x1000000
)

func sysClone(c *percpu, f *TrapFrame) {
	flags, stack, ptid, ctid, tls := f.RDI, f.RSI, uintptr(f.RDX), uintptr(f.R10), f.R8
	if flags&(cloneVM|cloneThread|cloneSighand) != cloneVM|cloneThread|cloneSighand {
		f.RAX = errno(_ENOSYS) // no processes: one address space, one program
		return
	}
	i := newThread()
	if i < 0 {
		f.RAX = errno(_EAGAIN)
		return
	}
	cur := &threads[c.cur]
	nt := &threads[i]
	nt.regs = *f
	nt.regs.RAX = 0
	if stack != 0 {
		nt.regs.RSP = stack
	}
	nt.fsbase = cur.fsbase
	if flags&cloneSettls != 0 {
		nt.fsbase = uintptr(tls)
	}
	memmove8(nt.fx, c.fx, 512)
	nt.sigmask = cur.sigmask
	if flags&cloneParentSettid != 0 && userOK(ptid, 4, true) {
		*(*int32)(ptr(ptid)) = nt.tid
	}
	if flags&cloneChildSettid != 0 && userOK(ctid, 4, true) {
		*(*int32)(ptr(ctid)) = nt.tid
	}
	runqPush(i)
	f.RAX = uint64(nt.tid)
}

func threadExit(c *percpu, f *TrapFrame) {
	threads[c.cur] = thread{}
	nThreads--
	for threadsHigh > 0 && threads[threadsHigh-1].state == tsFree {
		threadsHigh--
	}
	c.cur = -1
	if nThreads == 0 {
		powerOff(int(f.RDI & 0xff))
	}
	schedule(c, f)
}

func sysGetrandom(buf, n uintptr) uint64 {
	if n > 1<<25 {
		n = 1 << 25
	}
	if !userOK(buf, n, true) {
		return errno(_EFAULT)
	}
	b := userBytes(buf, n)
	for i := 0; i < len(b); i += 8 {
		v := randomU64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return uint64(n)
}

var weakRand uint64

// randomU64 uses RDRAND; without it, a TSC-seeded xorshift (reported once
// at boot as weak).
func randomU64() uint64 {
	if haveRDRAND {
		for i := 0; i < 10; i++ {
			if v, ok := rdrand(); ok {
				return v
			}
		}
	}
	if weakRand == 0 {
		weakRand = x86.RDTSC() | 1
	}
	weakRand ^= weakRand << 13
	weakRand ^= weakRand >> 7
	weakRand ^= weakRand << 17
	return weakRand ^ x86.RDTSC()
}

func sysUname(p uintptr) uint64 {
	const field = 65
	if !userOK(p, 6*field, true) {
		return errno(_EFAULT)
	}
	b := userBytes(p, 6*field)
	for i := range b {
		b[i] = 0
	}
	copy(b[0*field:], "Linux")
	copy(b[1*field:], "unikgo")
	copy(b[2*field:], "6.1.0-unikgo")
	copy(b[3*field:], "#1 unikgo")
	copy(b[4*field:], "x86_64")
	copy(b[5*field:], "(none)")
	return 0
}

func sysPrlimit(res int, old uintptr) uint64 {
	if old == 0 {
		return 0
	}
	if !userOK(old, 16, true) {
		return errno(_EFAULT)
	}
	cur, max := ^uint64(0), ^uint64(0)
	switch res {
	case unix.RLIMIT_NOFILE:
		cur, max = maxFDs, maxFDs
	case unix.RLIMIT_STACK:
		cur = 8 << 20
	}
	*(*uint64)(ptr(old)) = cur
	*(*uint64)(ptr(old + 8)) = max
	return 0
}

var pathBuf [maxName + 1]byte

// readPath copies a NUL-terminated path of the program into pathBuf.
func readPath(p uintptr) ([]byte, uint64) {
	for n := 0; n < len(pathBuf); n++ {
		if !userOK(p+uintptr(n), 1, false) {
			return nil, errno(_EFAULT)
		}
		b := *(*byte)(ptr(p + uintptr(n)))
		if b == 0 {
			return pathBuf[:n], 0
		}
		pathBuf[n] = b
	}
	return nil, errno(_ENAMETOOLONG)
}

// statBuiltin answers stat and access for the kernel's own device files
// and their directories, so that programs (and drivers checking whether
// they run in an image) see them as on Linux.
func statBuiltin(nr uint64, path []byte, f *TrapFrame) uint64 {
	mode := uint32(0)
	switch string(path) {
	case "/", "/dev", "/dev/unikgo", "/dev/xen":
		mode = unix.S_IFDIR | 0o755
	case "/dev/unikgo/dma", "/dev/unikgo/irq", "/dev/unikgo/serve", "/dev/xen/evtchn":
		mode = unix.S_IFCHR | 0o600
	default:
		return errno(_ENOENT)
	}
	var st uintptr
	switch nr {
	case unix.SYS_NEWFSTATAT:
		st = uintptr(f.RDX)
	case unix.SYS_STAT, unix.SYS_LSTAT:
		st = uintptr(f.RSI)
	case unix.SYS_STATX:
		return errno(_ENOSYS) // callers fall back to fstatat
	default: // access, faccessat
		return 0
	}
	if !userOK(st, statSize, true) {
		return errno(_EFAULT)
	}
	clear(userBytes(st, statSize))
	*(*uint64)(ptr(st + statNlink)) = 1
	*(*uint32)(ptr(st + statMode)) = mode
	*(*int64)(ptr(st + statBlksize)) = 4096
	return 0
}

// struct stat on x86-64 (layout_test.go checks them against unix.Stat_t).
const (
	statSize    = 144
	statNlink   = 16
	statMode    = 24
	statBlksize = 56
)

// sysOpen opens the few device files the kernel provides.
func sysOpen(path []byte, flags uint64) uint64 {
	switch string(path) {
	case "/dev/xen/evtchn":
		return evtchnOpen(flags)
	case "/dev/unikgo/dma":
		return dmaOpen(flags)
	case "/dev/unikgo/irq":
		return irqOpen(flags)
	case "/dev/unikgo/serve":
		return serveOpen(flags)
	}
	return errno(_ENOENT)
}

// straceEntry prints a system call as it enters (unikgo.strace): thread,
// name and the first three arguments. Results are not shown: a call that
// blocks finishes elsewhere.
func straceEntry(t *thread, f *TrapFrame) {
	kprint("strace: ")
	kprintDec(uint64(t.tid))
	kprint(" ")
	if f.RAX < uint64(len(syscallNames)) && syscallNames[f.RAX] != "" {
		kprint(syscallNames[f.RAX])
	} else {
		kprintDec(f.RAX)
	}
	kprint("(")
	kprintHex(f.RDI)
	kprint(", ")
	kprintHex(f.RSI)
	kprint(", ")
	kprintHex(f.RDX)
	kprint(")\n")
}
