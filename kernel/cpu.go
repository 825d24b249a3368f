package kernel

import (
	"unsafe"

	"github.com/unikgo/unikgo/x86"
)

// maxCPUs bounds the per-CPU tables.
const maxCPUs = 16

// percpu is one CPU's kernel state. The first fields are read by the entry
// code through GS (offsets in entry_amd64.s, checked by TestPercpuLayout);
// the struct holds no Go pointers so that trap-context code never needs a
// write barrier.
type percpu struct {
	self     uintptr // 0
	kstack   uintptr // 8: top of the SYSCALL stack
	scratch  uintptr // 16: caller's RSP during syscallEntry
	kfs      uintptr // 24: FS base while in the kernel (points at kernel TLS)
	ufs      uintptr // 32: FS base to restore on exit
	fx       uintptr // 40: FXSAVE area to save into / restore from
	idleTop  uintptr // 48: idle stack top (below the frame slot)
	idling   uintptr // 56: set while halted in idleLoop
	idleReq  uintptr // 64: set by trap() to go idle instead of returning
	cr2      uintptr // 72: CR2 saved at the entry of a page fault (only)
	id       uintptr
	cur      int32 // index of the running thread, or -1
	nest     int32 // trap nesting depth (>0: in kernel)
	idleFX   uintptr
	idleFrm  uintptr // frame slot on the idle stack
	tlsG     [32]uint64
	tls      [8]uint64
	gdt      [7]uint64
	tss      [13]uint64 // 104 bytes
	idt      [512]uint64
	sliceEnd uint64
}

var cpus [maxCPUs]percpu

// Stacks. Each CPU has a SYSCALL stack, an idle stack and three IST stacks
// (interrupts, page faults, double fault/NMI/machine check).
const (
	kstackSize = 64 << 10
	istSize    = 32 << 10
)

type cpuStacks struct {
	sysBuf    [kstackSize]byte
	idleBuf   [kstackSize]byte
	ist1Buf   [istSize]byte
	ist2Buf   [istSize]byte
	ist3Buf   [istSize]byte
	idleFXBuf [512 + 64]byte
}

var stacks [1]cpuStacks // only the boot CPU for now

// IST1's bounds, for trapCommon's check that an interrupt did not come
// while the CPU was still on IST1 (lostFrame): ist1Lo < RSP <= ist1Hi.
var ist1Lo, ist1Hi uint64

func top(b []byte) uintptr { return (uintptr(unsafe.Pointer(&b[0])) + uintptr(len(b))) &^ 15 }

func align(p, a uintptr) uintptr { return (p + a - 1) &^ (a - 1) }

// Stand-in g for kernel code: all zero, so the stack guard never trips.
// Kernel TLS: tls[0] = &tlsG, FS base = &tls[1].
func (c *percpu) setupTLS() {
	c.tls[0] = uint64(uintptr(unsafe.Pointer(&c.tlsG)))
	c.kfs = uintptr(unsafe.Pointer(&c.tls[1]))
}

// Descriptor bits.
const (
	gdtCode64 = 0x00af9a000000ffff
	gdtData   = 0x00cf92000000ffff
)

func (c *percpu) loadTables(s *cpuStacks) {
	c.gdt[0] = 0
	c.gdt[1] = gdtCode64
	c.gdt[2] = gdtData
	// 64-bit TSS descriptor (16 bytes, type 9 = available TSS).
	base := uint64(uintptr(unsafe.Pointer(&c.tss)))
	limit := uint64(104 - 1)
	c.gdt[3] = limit&0xffff | (base&0xffffff)<<16 | 0x89<<40 | (limit>>16&0xf)<<48 | (base>>24&0xff)<<56
	c.gdt[4] = base >> 32

	// TSS: IST1 @36, IST2 @44, IST3 @52, I/O map base beyond the limit.
	tb := (*[104]byte)(unsafe.Pointer(&c.tss))
	put64 := func(off int, v uint64) {
		for i := 0; i < 8; i++ {
			tb[off+i] = byte(v >> (8 * i))
		}
	}
	put64(4, uint64(top(s.sysBuf[:])))
	ist1Lo, ist1Hi = uint64(uintptr(unsafe.Pointer(&s.ist1Buf[0]))), uint64(top(s.ist1Buf[:]))
	put64(36, ist1Hi)
	put64(44, uint64(top(s.ist2Buf[:])))
	put64(52, uint64(top(s.ist3Buf[:])))
	tb[102], tb[103] = 104, 0

	var gdtr [2]uint64
	gp := (*[10]byte)(unsafe.Pointer(&gdtr))
	gp[0], gp[1] = byte(len(c.gdt)*8-1), 0
	ga := uint64(uintptr(unsafe.Pointer(&c.gdt)))
	for i := 0; i < 8; i++ {
		gp[2+i] = byte(ga >> (8 * i))
	}
	lgdt(uintptr(unsafe.Pointer(&gdtr)))
	reloadSegments()
	ltr(selTSS)

	// IDT: 256 interrupt gates, each on an IST stack.
	for v := 0; v < 256; v++ {
		ist := uint64(1)
		switch v {
		case vecPageFault:
			ist = 2
		case 2, 8, 18:
			ist = 3
		}
		h := uint64(stubAddr(uintptr(v)))
		c.idt[2*v] = h&0xffff | uint64(selCode)<<16 | ist<<32 | 0x8e<<40 | (h>>16&0xffff)<<48
		c.idt[2*v+1] = h >> 32
	}
	var idtr [2]uint64
	ip := (*[10]byte)(unsafe.Pointer(&idtr))
	ip[0], ip[1] = 0xff, 0x0f // 4096-1
	ia := uint64(uintptr(unsafe.Pointer(&c.idt)))
	for i := 0; i < 8; i++ {
		ip[2+i] = byte(ia >> (8 * i))
	}
	lidt(uintptr(unsafe.Pointer(&idtr)))
}

// MSRs.
const (
	msrEFER         = 0xc0000080
	msrSTAR         = 0xc0000081
	msrLSTAR        = 0xc0000082
	msrSFMASK       = 0xc0000084
	msrFSBase       = 0xc0000100
	msrGSBase       = 0xc0000101
	msrAPICBase     = 0x1b
	msrTSCDeadline  = 0x6e0
	eferSCE         = 1 << 0
	eferNXE         = 1 << 11
	cr4OSFXSR       = 1 << 9
	cr4OSXMMEXCPT   = 1 << 10
	cr4FSGSBASE     = 1 << 16
	cpuidNX         = 1 << 20 // 0x80000001 EDX
	cpuidRDRAND     = 1 << 30 // 1 ECX
	cpuidHypervisor = 1 << 31 // 1 ECX
)

var (
	haveNX     bool
	haveRDRAND bool
)

func (c *percpu) setupSyscall() {
	x86.WRMSR(msrSTAR, uint64(selCode)<<32)
	x86.WRMSR(msrLSTAR, uint64(syscallEntryAddr()))
	// Mask IF, TF, DF, AC on entry.
	x86.WRMSR(msrSFMASK, 1<<9|1<<8|1<<10|1<<18)
	efer := x86.RDMSR(msrEFER) | eferSCE
	if haveNX {
		efer |= eferNXE
	}
	x86.WRMSR(msrEFER, efer)
	x86.WRMSR(msrGSBase, uint64(uintptr(unsafe.Pointer(c))))
}

func detectFeatures() {
	_, _, c1, _ := x86.CPUID(1, 0)
	haveRDRAND = c1&cpuidRDRAND != 0
	if a, _, _, _ := x86.CPUID(0x80000000, 0); a >= 0x80000001 {
		_, _, _, d := x86.CPUID(0x80000001, 0)
		haveNX = d&cpuidNX != 0
	}
}

// Functions implemented in assembly.
func trapCommon()
func trapRestore()
func strayInterrupt()
func idleLoop()
func idleLoopAddr() uintptr
func syscallEntry()
func enterFrame(f uintptr)
func rt0Addr() uintptr
func kernelEnd() uintptr
func textRange() (start, end uintptr)
func rdrand() (v uint64, ok bool)
func readCR3() uintptr
func writeCR3(v uintptr)
func readCR4() uintptr
func writeCR4(v uintptr)
func invlpg(va uintptr)
func lgdt(p uintptr)
func lidt(p uintptr)
func ltr(sel uint16)
func reloadSegments()
func haltForever()
func fxsaveTo(p uintptr)
func intTimerVector()
func intUpcallVector()
func lostFrameTest()

// stubAddr returns the entry stub address of IDT vector v (stubs_amd64.s).
func stubAddr(v uintptr) uintptr

// syscallEntryAddr returns the ABI0 address of syscallEntry (a Go func value
// would point at an ABI wrapper instead).
func syscallEntryAddr() uintptr
