package kernel

import (
	"github.com/unikgo/unikgo/x86"
	"unsafe"

	"github.com/unikgo/unikgo/boot"
	"github.com/unikgo/unikgo/boot/pvh"
	"github.com/unikgo/unikgo/kernel/cmdline"
	"github.com/unikgo/unikgo/kernel/vdso"
	"github.com/unikgo/unikgo/xenpv"
)

var (
	verbose  bool
	strace   bool // unikgo.strace: print every system call on entry
	quiet    bool
	bootTime bool
	ncpu     = 1
	platform = "qemu"
	xenBase  uint32
)

// buildCmdline is the default command line, set by unikbuild with
// -ldflags -X when the image is built with --cmdline; used when the boot
// loader passes none.
var buildCmdline string

// kernelMain is called by boot.start64 on the boot stack, with the early
// identity map and the boot TLS. It sets up the machine and enters the Go
// runtime as thread 1; it never returns.
//
//go:linkname kernelMain github.com/unikgo/unikgo/boot.kernelMain
func kernelMain() {
	c := &cpus[0]
	c.self = uintptr(unsafe.Pointer(c))
	c.cur = -1
	c.nest = 1
	xenBase = detectXen()
	if xenBase != 0 {
		platform = "xen"
	}
	consoleInit(xenBase != 0)
	detectFeatures()
	if xenBase != 0 {
		xenInit()
	}
	rsdpPA = uintptr(boot.Info.RSDP)

	// Physical memory: RAM above the image.
	kend := align(kernelEnd(), pageSize)
	var ramTop uint64
	for _, r := range boot.Info.Regions() {
		if r.Type != pvh.MemRAM {
			continue
		}
		ramBytes += r.Size
		end := r.Addr + r.Size
		if end > ramTop {
			ramTop = end
		}
		start := r.Addr
		if start < uint64(kend) {
			start = uint64(kend)
		}
		if end > 1<<39 {
			end = 1 << 39
		}
		if start < end {
			addFrameRange(uintptr(start), uintptr(end))
		}
	}
	if totalFrames == 0 {
		kprint("unikgo: no usable RAM in the boot memory map (boot loader without PVH memmap?)\n")
		powerOff(exitKernelFault)
	}
	if !setupPaging(ramTop) {
		kprint("unikgo: out of memory building page tables\n")
		powerOff(exitKernelFault)
	}

	s := &stacks[0]
	c.kstack = top(s.sysBuf[:])
	c.idleFX = align(uintptr(unsafe.Pointer(&s.idleFXBuf[0])), 16)
	c.idleFrm = top(s.idleBuf[:]) - trapFrameSize
	c.idleTop = c.idleFrm - 64
	c.setupTLS()
	// Until the first thread runs, a trap saves into and restores from the
	// idle CPU state.
	c.fx = c.idleFX
	c.ufs = c.kfs
	c.loadTables(s)
	c.setupSyscall()
	calibrateTSC(xenBase)
	tscBase = boot.EntryTSC()
	if xenBase == 0 {
		if rtc := readRTC(); rtc != 0 {
			wallBaseNS = rtc*1e9 - nanotime()
		}
	} else {
		xenWallClock()
	}
	// The vDSO reads the same clock in the program, without a trap.
	if xenClock {
		vdso.SetXen(xenpv.TimeInfo(), xenSysOff, wallBaseNS, 0)
	} else {
		vdso.SetTSC(tscBase, tscMult, wallBaseNS)
	}
	fdInit()
	fninit()
	fxsaveTo(c.idleFX)

	// The command line: from the loader, else the build's default.
	var line cmdline.Line
	if n := boot.Info.CmdlineLen; n > 0 {
		line.Parse(boot.Info.CmdlineBytes())
	} else {
		line.ParseString(buildCmdline)
	}
	verbose = line.Option("verbose")
	strace = line.Option("strace")
	quiet = line.Option("quiet")
	bootTime = line.Option("boottime")
	if line.Option("novdso") {
		vdso.Disable() // every clock read a system call, as before the vDSO
	} else {
		vdsoImage = vdso.Build()
	}
	// unikgo.xapic keeps the LAPIC in xAPIC (MMIO) mode, as before x2APIC
	// support, for comparisons.
	lapicInit(!line.Option("xapic"))
	if onXen {
		sleepSlack = xenSleepSlack
	}
	if ns, ok, bad := line.Duration("sleepslack"); bad {
		kprint("unikgo: unikgo.sleepslack: want a duration such as 2ms or 500us; the default is kept\n")
	} else if ok {
		sleepSlack = ns
	}
	if ns, ok, bad := line.Duration("timeslice"); bad || (ok && ns < minTimeSlice) {
		kprint("unikgo: unikgo.timeslice: want a duration of 100us or more, such as 5ms; the default is kept\n")
	} else if ok {
		timeSlice = ns
	}
	if line.Option("profile") {
		if onXen {
			profTick = 10_000_000
		}
		profiling = true
		profStart = x86.RDTSC()
	}
	if line.Option("straytest") {
		// Exercises strayInterrupt in the boot tests: the timer's and
		// the event upcall's vectors raised with interrupts off, as a
		// delivery against IF would be. Both must be noted and the
		// program run as usual.
		intTimerVector()
		intUpcallVector()
	}
	if line.Option("losttest") {
		// Exercises lostFrame in the boot tests: the first time the
		// kernel idles, an interrupt taken on IST1's top frame, as a
		// second delivery right after a wake-up from HLT would be. The
		// idle loop must resume and the program run as usual.
		lostTest = 1
	}
	if line.Option("lostfaulttest") {
		// The same from kernel code: the frame lost is not the idle
		// loop's, so this is a kernel fault (exit status 125).
		lostFrameTest()
	}
	if line.Option("faulttest") {
		// Exercises the kernel-fault report (registers, symbolized
		// backtrace, exit status 125) in the boot tests.
		faultTest()
	}

	i := newThread()
	t := &threads[i]
	fxsaveTo(t.fx)
	sp, ok := initialStack(&line)
	if !ok {
		kprint("unikgo: cannot build the initial stack\n")
		powerOff(exitKernelFault)
	}
	t.regs = TrapFrame{RIP: uint64(rt0Addr()), RSP: uint64(sp), RFLAGS: rflagsIF | 2, CS: selCode, SS: selData}
	if !quiet {
		bootLine()
	}
	f := (*TrapFrame)(ptr(c.kstack - trapFrameSize))
	load(c, i, f)
	c.nest = 0
	armTimer(c)
	enterFrame(uintptr(unsafe.Pointer(f)))
}

func detectXen() uint32 {
	for base := uint32(0x40000000); base < 0x40010000; base += 0x100 {
		a, b, c, d := x86.CPUID(base, 0)
		if b == 0x566e6558 && c == 0x65584d4d && d == 0x4d4d566e && a-base >= 2 {
			return base
		}
	}
	return 0
}

func bootLine() {
	kprint("unikgo: ")
	kprintDec(ramBytes >> 20)
	kprint(" MiB, ")
	kprintDec(uint64(ncpu))
	if ncpu == 1 {
		kprint(" vCPU, ")
	} else {
		kprint(" vCPUs, ")
	}
	kprint(platform)
	kprint(", kernel ready in ")
	kprintMilli(nanotime() / 1000)
	kprint(" ms\n")
}

func fninit()

//go:noinline
func faultTest() {
	*(*int)(ptr(uintptr(8))) = 1
}
