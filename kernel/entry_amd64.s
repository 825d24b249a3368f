// Kernel entry and exit paths. Everything runs at CPL 0 in one address
// space: a trap or a SYSCALL never changes privilege, so the CPU would push
// its frame on the interrupted goroutine's stack. Every IDT gate therefore
// uses an IST stack, and the SYSCALL entry switches to the per-CPU kernel
// stack itself. Both build the same TrapFrame (frame.go), save the SSE state
// into the current thread's FXSAVE area, point FS at the per-CPU kernel TLS
// (so Go's ABI wrappers load the kernel's stand-in g), and call trap(). On
// return the frame (possibly rewritten to another thread's context) is
// restored with IRETQ, which works at CPL 0 where SYSRET does not.

#include "textflag.h"

// Offsets in percpu (cpu.go); checked by TestPercpuLayout.
#define PC_KSTACK 8
#define PC_SCRATCH 16
#define PC_KFS 24
#define PC_UFS 32
#define PC_FX 40
#define PC_IDLETOP 48
#define PC_IDLING 56
#define PC_IDLEREQ 64
#define PC_CR2 72

#define MSR_FS_BASE $0xc0000100

// TrapFrame.Vector's offset (frame.go); checked by TestTrapFrameLayout.
#define TF_VECTOR 120

// Offsets of the words a stub and the CPU pushed, from SP at trapCommon.
#define ST_VECTOR 0
#define ST_RFLAGS 32
#define ST_RSP 40

// Set in a frame's vector when the interrupt came while the CPU ran on the
// interrupt stack (frame.go's vecFrameLost); checked by TestStrayVectors.
#define FRAME_LOST $0x200

// Vectors (xen.go's xenUpcallVector, time.go's spuriousVector); checked by
// TestStrayVectors.
#define XEN_UPCALL_VECTOR $0xf3
#define SPURIOUS_VECTOR $0xff

// func trapCommon()
// SP points at the stub's vector, the error code and the CPU's frame: on
// the kernel stack for SYSCALL, on an IST stack for a trap taken through
// the IDT.
TEXT ·trapCommon(SB),NOSPLIT|NOFRAME,$0
	CMPQ	ST_VECTOR(SP), $0x100
	JEQ	frame // SYSCALL: already on the kernel stack
	CMPQ	ST_VECTOR(SP), $32
	JB	move
	// An external interrupt that came while the CPU was still on the
	// interrupt stack (IST1: in a stub, before the move below, or in
	// strayInterrupt) was delivered against IF, and the CPU, starting
	// again at IST1's top, wrote its frame over the one the code it
	// interrupted was still using. Nested SVM under TCG does this when it
	// delivers an interrupt twice. trap() resumes what that frame had
	// interrupted if it can (lostFrame).
	PUSHQ	AX
	MOVQ	(ST_RSP+8)(SP), AX
	CMPQ	AX, ·ist1Lo(SB)
	JLS	notlost
	CMPQ	AX, ·ist1Hi(SB)
	JHI	notlost
	POPQ	AX
	ORQ	FRAME_LOST, ST_VECTOR(SP)
	JMP	move
notlost:
	POPQ	AX
	// An external interrupt that came while the interrupted code had
	// interrupts off (the kernel: threads always run with them on) was
	// delivered against IF, as nested SVM under TCG does now and then.
	// Handled here, it would run on top of the trap it interrupted; it is
	// noted instead (strayInterrupt).
	BTQ	$9, ST_RFLAGS(SP)
	JCS	move
	JMP	·strayInterrupt(SB)
move:
	// Move the stub's and the CPU's seven words to the kernel stack, as
	// the SYSCALL entry builds them, and handle the trap there. Every
	// interrupt shares one IST stack, so a stray interrupt would
	// otherwise overwrite this trap's frame at its top. Nothing else uses
	// the kernel stack meanwhile: system calls run with interrupts off,
	// and strays never leave their IST stack.
	PUSHQ	AX
	PUSHQ	BX
	MOVQ	PC_KSTACK(GS), AX
	SUBQ	$56, AX
	MOVQ	16(SP), BX
	MOVQ	BX, 0(AX)
	MOVQ	24(SP), BX
	MOVQ	BX, 8(AX)
	MOVQ	32(SP), BX
	MOVQ	BX, 16(AX)
	MOVQ	40(SP), BX
	MOVQ	BX, 24(AX)
	MOVQ	48(SP), BX
	MOVQ	BX, 32(AX)
	MOVQ	56(SP), BX
	MOVQ	BX, 40(AX)
	MOVQ	64(SP), BX
	MOVQ	BX, 48(AX)
	POPQ	BX
	XCHGQ	AX, 0(SP)
	MOVQ	0(SP), SP
frame:
	PUSHQ	AX
	PUSHQ	BX
	PUSHQ	CX
	PUSHQ	DX
	PUSHQ	SI
	PUSHQ	DI
	PUSHQ	BP
	PUSHQ	R8
	PUSHQ	R9
	PUSHQ	R10
	PUSHQ	R11
	PUSHQ	R12
	PUSHQ	R13
	PUSHQ	R14
	PUSHQ	R15
	// CR2 first, and only for a page fault (vecPageFault, in the frame
	// above the pushed registers). Anything below may exit to a hypervisor (WRMSR under
	// nested Xen), which has been seen to lose the guest's CR2; and
	// reading CR2 is itself an exit under the lab's Xen (~100 us), which
	// every system call and interrupt paid while it was read on each trap.
	MOVQ	TF_VECTOR(SP), AX
	CMPQ	AX, $14
	JNE	nocr2
	MOVQ	CR2, AX
	MOVQ	AX, PC_CR2(GS)
nocr2:
	MOVQ	PC_FX(GS), AX
	FXSAVE64	(AX)
	MOVQ	PC_KFS(GS), AX
	MOVQ	AX, DX
	SHRQ	$32, DX
	MOVL	MSR_FS_BASE, CX
	WRMSR
	MOVQ	SP, AX
	SUBQ	$16, SP
	MOVQ	AX, 0(SP)
	CALL	·trap(SB)
	ADDQ	$16, SP
	MOVQ	PC_IDLEREQ(GS), AX
	TESTQ	AX, AX
	JNE	idle
	JMP	·trapRestore(SB)
idle:
	MOVQ	$0, PC_IDLEREQ(GS)
	JMP	·idleLoop(SB)

// func trapRestore()
// SP points at a TrapFrame; PC_UFS and PC_FX describe the thread it belongs to.
TEXT ·trapRestore(SB),NOSPLIT|NOFRAME,$0
	MOVQ	PC_UFS(GS), AX
	MOVQ	AX, DX
	SHRQ	$32, DX
	MOVL	MSR_FS_BASE, CX
	WRMSR
	MOVQ	PC_FX(GS), AX
	FXRSTOR64	(AX)
	POPQ	R15
	POPQ	R14
	POPQ	R13
	POPQ	R12
	POPQ	R11
	POPQ	R10
	POPQ	R9
	POPQ	R8
	POPQ	BP
	POPQ	DI
	POPQ	SI
	POPQ	DX
	POPQ	CX
	POPQ	BX
	POPQ	AX
	ADDQ	$16, SP
	IRETQ

// func strayInterrupt()
// An external interrupt delivered while interrupts were off (trapCommon).
// SP points at its vector, error code and the CPU's frame on the IST
// stack. It touches nothing of the interrupted code's (FS, the SSE state,
// the kernel stack) and causes no VM exit, since an exit is where a
// nested setup may deliver yet another one. Xen's callback vector needs
// nothing: Xen delivers it for as long as evtchn_upcall_pending is set,
// so it comes again once interrupts are on. A LAPIC vector stays in
// service, unacknowledged, and is noted in strayVectors; runStrays
// acknowledges and handles it at the next trap or idle poll.
TEXT ·strayInterrupt(SB),NOSPLIT|NOFRAME,$0
	PUSHQ	AX
	PUSHQ	BX
	PUSHQ	DX
	LOCK
	INCQ	·strayCount(SB)
	MOVQ	24(SP), AX // the vector
	CMPQ	AX, SPURIOUS_VECTOR
	JEQ	strayDone // spurious: not in service, nothing to acknowledge
	CMPQ	AX, XEN_UPCALL_VECTOR
	JNE	strayNote
	CMPB	·xenUpcallNoEOI(SB), $0
	JNE	strayDone
strayNote:
	MOVQ	AX, BX
	SHRQ	$6, BX
	LEAQ	·strayVectors(SB), DX
	ANDQ	$63, AX
	LOCK
	BTSQ	AX, (DX)(BX*8)
	MOVQ	$1, ·strayPending(SB)
strayDone:
	POPQ	DX
	POPQ	BX
	POPQ	AX
	ADDQ	$16, SP
	IRETQ

// func idleLoop()
// Runs on the per-CPU idle stack with interrupts enabled only inside HLT's
// window (STI's one-instruction shadow makes STI;HLT atomic). An interrupt
// taken here is handled on an IST stack and returns here; idlePoll then
// decides whether a thread became runnable and, if so, returns a frame to
// restore.
TEXT ·idleLoop(SB),NOSPLIT|NOFRAME,$0
	MOVQ	PC_IDLETOP(GS), SP
	MOVQ	$0, PC_IDLING(GS)
	CMPQ	·idleResume(SB), $0
	JEQ	again
	// Resumed by lostFrame after an interrupt it handled: poll first.
	MOVQ	$0, ·idleResume(SB)
	JMP	poll
again:
	CMPQ	·strayPending(SB), $0
	JNE	poll // a stray interrupt was noted: see to it before halting
	CMPQ	·lostTest(SB), $0
	JNE	losttest
	MOVQ	$1, PC_IDLING(GS)
	STI
	HLT
	CLI
	MOVQ	$0, PC_IDLING(GS)
poll:
	SUBQ	$16, SP
	CALL	·idlePoll(SB)
	MOVQ	0(SP), AX
	ADDQ	$16, SP
	TESTQ	AX, AX
	JEQ	again
	MOVQ	AX, SP
	JMP	·trapRestore(SB)
losttest:
	// unikgo.losttest: an interrupt taken on IST1's top frame, as a
	// second delivery of one just taken from HLT would be. lostFrame
	// must resume the idle loop.
	MOVQ	$0, ·lostTest(SB)
	MOVQ	$1, PC_IDLING(GS)
	JMP	·lostFrameTest(SB)

// func lostFrameTest()
// Takes an interrupt (the timer's vector, by INT) on IST1's top frame, as
// a second delivery right after a first would be: for unikgo.losttest
// (from idleLoop, which lostFrame resumes) and unikgo.lostfaulttest (from
// kernel code, a kernel fault). It does not return.
TEXT ·lostFrameTest(SB),NOSPLIT|NOFRAME,$0-0
	MOVQ	·ist1Hi(SB), SP
	SUBQ	$40, SP
	BYTE	$0xcd; BYTE $0x20
	JMP	·haltForever(SB) // not reached

// func syscallEntry()
// SYSCALL at CPL 0: RCX = return RIP, R11 = RFLAGS, interrupts masked by
// SFMASK, RSP still the caller's.
TEXT ·syscallEntry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	SP, PC_SCRATCH(GS)
	MOVQ	PC_KSTACK(GS), SP
	PUSHQ	$0x10
	PUSHQ	PC_SCRATCH(GS)
	PUSHQ	R11
	PUSHQ	$0x08
	PUSHQ	CX
	PUSHQ	$0
	PUSHQ	$0x100
	JMP	·trapCommon(SB)

// func enterFrame(f uintptr)
// Switches to the frame f (on a kernel stack) and restores it.
TEXT ·enterFrame(SB),NOSPLIT|NOFRAME,$0-8
	MOVQ	f+0(FP), SP
	JMP	·trapRestore(SB)

// func rt0Addr() uintptr
TEXT ·rt0Addr(SB),NOSPLIT,$0-8
	LEAQ	_rt0_amd64_linux(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func kernelEnd() uintptr: first byte after the image's BSS.
TEXT ·kernelEnd(SB),NOSPLIT,$0-8
	LEAQ	runtime·end(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func textRange() (start, end uintptr)
TEXT ·textRange(SB),NOSPLIT,$0-16
	LEAQ	runtime·text(SB), AX
	MOVQ	AX, start+0(FP)
	LEAQ	runtime·etext(SB), AX
	MOVQ	AX, end+8(FP)
	RET

// func rdrand() (v uint64, ok bool)
TEXT ·rdrand(SB),NOSPLIT,$0-9
	RDRANDQ	AX
	SETCS	ok+8(FP)
	MOVQ	AX, v+0(FP)
	RET

// func readCR3() uintptr
TEXT ·readCR3(SB),NOSPLIT,$0-8
	MOVQ	CR3, AX
	MOVQ	AX, ret+0(FP)
	RET

// func writeCR3(v uintptr)
TEXT ·writeCR3(SB),NOSPLIT,$0-8
	MOVQ	v+0(FP), AX
	MOVQ	AX, CR3
	RET

// func readCR4() uintptr
TEXT ·readCR4(SB),NOSPLIT,$0-8
	MOVQ	CR4, AX
	MOVQ	AX, ret+0(FP)
	RET

// func writeCR4(v uintptr)
TEXT ·writeCR4(SB),NOSPLIT,$0-8
	MOVQ	v+0(FP), AX
	MOVQ	AX, CR4
	RET

// func invlpg(va uintptr)
TEXT ·invlpg(SB),NOSPLIT,$0-8
	MOVQ	va+0(FP), AX
	INVLPG	(AX)
	RET

// func lgdt(p uintptr)
TEXT ·lgdt(SB),NOSPLIT,$0-8
	MOVQ	p+0(FP), AX
	LGDT	0(AX)
	RET

// func lidt(p uintptr)
TEXT ·lidt(SB),NOSPLIT,$0-8
	MOVQ	p+0(FP), AX
	LIDT	0(AX)
	RET

// func ltr(sel uint16)
TEXT ·ltr(SB),NOSPLIT,$0-2
	MOVW	sel+0(FP), AX
	LTR	AX
	RET

// func reloadSegments()
// After lgdt: reload the data segments (CS keeps selector 0x08, whose
// descriptor is the same in every GDT we load).
TEXT ·reloadSegments(SB),NOSPLIT,$0-0
	MOVL	$0x10, AX
	BYTE	$0x8e; BYTE $0xd8 // DS
	BYTE	$0x8e; BYTE $0xc0 // ES
	BYTE	$0x8e; BYTE $0xd0 // SS
	RET

// func haltForever()
TEXT ·haltForever(SB),NOSPLIT,$0-0
loop:
	CLI
	HLT
	JMP	loop

// func fxsaveTo(p uintptr)
TEXT ·fxsaveTo(SB),NOSPLIT,$0-8
	MOVQ	p+0(FP), AX
	FXSAVE64	(AX)
	RET

// func idleLoopAddr() uintptr
TEXT ·idleLoopAddr(SB),NOSPLIT,$0-8
	LEAQ	·idleLoop(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func stubAddr(v uintptr) uintptr
TEXT ·stubAddr(SB),NOSPLIT,$0-16
	LEAQ	·stubTable(SB), AX
	MOVQ	v+0(FP), BX
	MOVQ	(AX)(BX*8), AX
	MOVQ	AX, ret+8(FP)
	RET

// func syscallEntryAddr() uintptr
TEXT ·syscallEntryAddr(SB),NOSPLIT,$0-8
	LEAQ	·syscallEntry(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func fninit()
TEXT ·fninit(SB),NOSPLIT,$0-0
	BYTE	$0xdb; BYTE $0xe3 // FNINIT: x87 control word 0x37f
	RET

// func pclntabAddr() uintptr: the runtime's pcHeader (start of the pclntab).
TEXT ·pclntabAddr(SB),NOSPLIT,$0-8
	LEAQ	runtime·pclntab(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func intTimerVector()
// INT to the timer's vector (0x20), for unikgo.straytest.
TEXT ·intTimerVector(SB),NOSPLIT,$0-0
	BYTE	$0xcd; BYTE $0x20
	RET

// func intUpcallVector()
// INT to the event upcall's vector (0xf3), for unikgo.straytest.
TEXT ·intUpcallVector(SB),NOSPLIT,$0-0
	BYTE	$0xcd; BYTE $0xf3
	RET
