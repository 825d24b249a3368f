#include "textflag.h"

// The vDSO's functions. The C functions (vdsoClockGettime<>,
// vdsoGettimeofday<>) follow the System V ABI: arguments in DI and SI,
// result in AX; they use only AX, CX, DX, R8-R11 (and the caller's stack
// for one return address), never R14/X15/FS or Go code. The offsets below
// are the off* and pv* constants of data.go.

#define D_SEQ		0
#define D_MODE		4
#define D_TSCBASE	8
#define D_TSCMULT	16
#define D_WALLBASE	24
#define D_XENINFO	32
#define D_XENSYSOFF	40
#define D_XENLAST	64

#define PV_VERSION	0
#define PV_TSC		8
#define PV_SYSTEM	16
#define PV_MUL		24
#define PV_SHIFT	28

#define SYS_gettimeofday	96
#define SYS_clock_gettime	228

// vdsoNow reads the data block under its sequence lock and returns the
// monotonic time in AX, the wall base in DX and CX = 0; CX != 0 when the
// block is disabled. Clobbers R8-R11; DI and SI are kept.
TEXT vdsoNow<>(SB),NOSPLIT|NOFRAME,$0
	LEAQ	·clock(SB), R10
retry:
	MOVL	D_SEQ(R10), R8
	TESTL	$1, R8
	JNZ	spin
	MOVL	D_MODE(R10), CX
	CMPL	CX, $1
	JEQ	tsc
	CMPL	CX, $2
	JEQ	xen
	MOVL	$1, CX	// disabled (or unknown mode)
	RET
spin:
	PAUSE
	JMP	retry

tsc:
	LFENCE
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	SUBQ	D_TSCBASE(R10), AX
	MULQ	D_TSCMULT(R10)	// DX:AX = d * mult
	SHRQ	$32, AX
	SHLQ	$32, DX
	ORQ	DX, AX	// bits 32..95
	MOVQ	D_WALLBASE(R10), DX
	CMPL	D_SEQ(R10), R8
	JNE	retry
	XORL	CX, CX
	RET

xen:
	MOVQ	D_XENINFO(R10), R11
pv:
	MOVL	PV_VERSION(R11), R9
	TESTL	$1, R9
	JNZ	pvspin
	LFENCE
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	SUBQ	PV_TSC(R11), AX	// ticks since the stamp
	JPL	pvshift
	XORL	AX, AX	// a TSC before the stamp: the stamp's time
pvshift:
	MOVBQSX	PV_SHIFT(R11), CX
	TESTQ	CX, CX
	JMI	pvright
	SHLQ	CX, AX
	JMP	pvmul
pvright:
	NEGQ	CX
	SHRQ	CX, AX
pvmul:
	MOVL	PV_MUL(R11), CX
	MULQ	CX
	SHRQ	$32, AX
	SHLQ	$32, DX
	ORQ	DX, AX
	ADDQ	PV_SYSTEM(R11), AX
	CMPL	PV_VERSION(R11), R9
	JNE	pv
	SUBQ	D_XENSYSOFF(R10), AX
	MOVQ	D_WALLBASE(R10), R9
	CMPL	D_SEQ(R10), R8
	JNE	retry
	// Never below the last time handed out: t in DX, last in AX.
	MOVQ	AX, DX
	MOVQ	D_XENLAST(R10), AX
clamp:
	CMPQ	DX, AX
	JLS	clamped	// t <= last: last
	LOCK
	CMPXCHGQ	DX, D_XENLAST(R10)
	JNE	clamp	// AX = the newer last
	MOVQ	DX, AX
clamped:
	MOVQ	R9, DX
	XORL	CX, CX
	RET
pvspin:
	PAUSE
	JMP	pv

// int __vdso_clock_gettime(clockid_t id /* DI */, struct timespec *ts /* SI */)
TEXT vdsoClockGettime<>(SB),NOSPLIT|NOFRAME,$0
	CMPL	DI, $7
	JHI	fallback	// also the negative (CPU-time) clock ids
	MOVL	$0xf3, AX	// REALTIME, MONOTONIC, MONOTONIC_RAW, *_COARSE, BOOTTIME
	BTL	DI, AX
	JCC	fallback
	TESTQ	SI, SI
	JEQ	fallback	// the system call's EFAULT
	CALL	vdsoNow<>(SB)
	TESTL	CX, CX
	JNE	fallback
	MOVL	$0x21, CX	// REALTIME, REALTIME_COARSE
	BTL	DI, CX
	JCC	split
	ADDQ	DX, AX
split:
	XORL	DX, DX
	MOVQ	$1000000000, CX
	DIVQ	CX
	MOVQ	AX, 0(SI)	// tv_sec
	MOVQ	DX, 8(SI)	// tv_nsec
	XORL	AX, AX
	RET
fallback:
	MOVL	$SYS_clock_gettime, AX
	SYSCALL
	RET

// int __vdso_gettimeofday(struct timeval *tv /* DI */, struct timezone *tz /* SI */)
TEXT vdsoGettimeofday<>(SB),NOSPLIT|NOFRAME,$0
	CALL	vdsoNow<>(SB)
	TESTL	CX, CX
	JNE	fallback
	TESTQ	DI, DI
	JEQ	tz
	ADDQ	DX, AX
	XORL	DX, DX
	MOVQ	$1000000000, CX
	DIVQ	CX
	MOVQ	AX, 0(DI)	// tv_sec
	MOVQ	DX, AX
	XORL	DX, DX
	MOVL	$1000, CX
	DIVQ	CX
	MOVQ	AX, 8(DI)	// tv_usec
tz:
	TESTQ	SI, SI
	JEQ	done
	MOVQ	$0, 0(SI)	// UTC, no DST
done:
	XORL	AX, AX
	RET
fallback:
	MOVL	$SYS_gettimeofday, AX
	SYSCALL
	RET

// Go-callable (ABI0) functions.

// func now() (mono, wall uint64, ok bool)
TEXT ·now(SB),NOSPLIT,$0-17
	CALL	vdsoNow<>(SB)
	MOVQ	AX, mono+0(FP)
	MOVQ	DX, wall+8(FP)
	TESTL	CX, CX
	SETEQ	ok+16(FP)
	RET

// func clockGettimeAddr() uintptr
TEXT ·clockGettimeAddr(SB),NOSPLIT,$0-8
	LEAQ	vdsoClockGettime<>(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func gettimeofdayAddr() uintptr
TEXT ·gettimeofdayAddr(SB),NOSPLIT,$0-8
	LEAQ	vdsoGettimeofday<>(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

// func callClockGettime(id int32, ts unsafe.Pointer) int64
TEXT ·callClockGettime(SB),NOSPLIT,$0-24
	MOVL	id+0(FP), DI
	MOVQ	ts+8(FP), SI
	CALL	vdsoClockGettime<>(SB)
	MOVQ	AX, ret+16(FP)
	RET

// func callGettimeofday(tv, tz unsafe.Pointer) int64
TEXT ·callGettimeofday(SB),NOSPLIT,$0-24
	MOVQ	tv+0(FP), DI
	MOVQ	tz+8(FP), SI
	CALL	vdsoGettimeofday<>(SB)
	MOVQ	AX, ret+16(FP)
	RET

// func rdtsc() uint64
TEXT ·rdtsc(SB),NOSPLIT,$0-8
	LFENCE
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	MOVQ	AX, ret+0(FP)
	RET
