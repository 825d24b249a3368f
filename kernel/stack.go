package kernel

import (
	"github.com/unikgo/unikgo/x86"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/cmdline"
)

// The initial stack the runtime's _rt0_amd64_linux expects, as a Linux
// kernel builds it for a new process (System V AMD64 ABI, 3.4.1):
// argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL, then the strings.

const (
	mainStackSize = 1 << 20

	atNull        = 0
	atPagesz      = 6
	atPlatform    = 15
	atHWCap       = 16
	atClktck      = 17
	atSecure      = 23
	atSysinfoEhdr = 33
	atRandom      = 25
)

// vdsoImage is the vDSO's ELF image (kernel/vdso), or 0 without one.
var vdsoImage uintptr

// stackWriter fills the stack downwards from top.
type stackWriter struct{ sp, lo uintptr }

func (w *stackWriter) bytes(b string) uintptr {
	w.sp -= uintptr(len(b)) + 1
	if w.sp < w.lo {
		return 0
	}
	d := userBytes(w.sp, uintptr(len(b))+1)
	copy(d, b)
	d[len(b)] = 0
	return w.sp
}

// envBuf holds the environment entries the kernel adds.
var envBuf [128]byte

func initialStack(l *cmdline.Line) (uintptr, bool) {
	base := sysMmap(0, mainStackSize, protRead|protWrite, mapPrivate|mapAnonymous, -1)
	if int64(base) < 0 {
		return 0, false
	}
	top := base + mainStackSize
	if !userOK(top-128<<10, 128<<10, true) {
		return 0, false
	}
	w := stackWriter{sp: top, lo: top - 120<<10}

	// Strings.
	platformStr := w.bytes("x86_64")
	w.sp = (w.sp - 16) &^ 15
	random := w.sp
	sysGetrandom(random, 16)

	argc := l.NumArgs()
	var argv [cmdline.MaxWords]uintptr
	if argc == 0 {
		argv[0] = w.bytes("unikgo")
		argc = 1
	} else {
		for i := 0; i < argc; i++ {
			argv[i] = w.bytes(l.ArgAt(i))
		}
	}
	var envp [cmdline.MaxWords + 4]uintptr
	envc := 0
	for i := 0; i < l.NumEnv(); i++ {
		envp[envc] = w.bytes(l.EnvAt(i))
		envc++
	}
	if !l.HasEnv("GOMEMLIMIT") {
		envp[envc] = w.bytes(memLimitEnv())
		envc++
	}
	if ncpu == 1 && !l.HasEnv("GOMAXPROCS") {
		envp[envc] = w.bytes(uniprocessorMaxProcs)
		envc++
	}
	if w.sp < w.lo {
		return 0, false
	}

	// Vectors: argc + argv + NULL + envp + NULL + auxv; SP 16-aligned.
	_, _, _, hwcap := x86.CPUID(1, 0)
	auxv := [...]uint64{
		atPagesz, pageSize,
		atClktck, 100,
		atHWCap, uint64(hwcap),
		atPlatform, uint64(platformStr),
		atRandom, uint64(random),
		atSecure, 0,
		atSysinfoEhdr, uint64(vdsoImage),
		atNull, 0,
	}
	words := 1 + argc + 1 + envc + 1 + len(auxv)
	w.sp = (w.sp - uintptr(words)*8) &^ 15
	p := w.sp
	put := func(v uint64) {
		*(*uint64)(ptr(p)) = v
		p += 8
	}
	put(uint64(argc))
	for i := 0; i < argc; i++ {
		put(uint64(argv[i]))
	}
	put(0)
	for i := 0; i < envc; i++ {
		put(uint64(envp[i]))
	}
	put(0)
	for _, v := range auxv {
		put(v)
	}
	return w.sp, true
}

// uniprocessorMaxProcs is the environment entry that gives the runtime two
// Ps on one vCPU. A served call (a socket or disk system call) blocks its
// thread in the kernel until a goroutine of the same program answers it;
// with one P that goroutine waits until sysmon retakes the blocked
// thread's P (tens of microseconds at best, and a sysmon wake-up each
// time); with a second P it runs at once. The command line's GOMAXPROCS=
// (or runtime.GOMAXPROCS) overrides it.
const uniprocessorMaxProcs = "GOMAXPROCS=2"

// memLimitEnv returns GOMEMLIMIT set to three quarters of the free memory
// at boot, so the garbage collector keeps the heap inside the VM.
func memLimitEnv() string {
	mib := freeFrames * pageSize * 3 / 4 >> 20
	if mib < 4 {
		mib = 4
	}
	n := copy(envBuf[:], "GOMEMLIMIT=")
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + mib%10)
		mib /= 10
		if mib == 0 {
			break
		}
	}
	n += copy(envBuf[n:], d[i:])
	n += copy(envBuf[n:], "MiB")
	return unsafe.String(&envBuf[0], n)
}
