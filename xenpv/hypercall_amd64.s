#include "textflag.h"

// Two pages of BSS: the 4 KiB-aligned page inside becomes the hypercall
// page (Xen writes the call stubs there), see InitHypercalls.
GLOBL ·hcBuf(SB), NOPTR, $8192

// func call(nr, a1, a2, a3, a4, a5 uintptr) uintptr
// Hypercall ABI (x86-64): call hypercall_page + 32*nr with arguments in
// RDI, RSI, RDX, R10, R8; result in RAX.
TEXT ·call(SB),NOSPLIT,$0-56
	MOVQ	nr+0(FP), AX
	SHLQ	$5, AX
	ADDQ	·hcPage(SB), AX
	MOVQ	a1+8(FP), DI
	MOVQ	a2+16(FP), SI
	MOVQ	a3+24(FP), DX
	MOVQ	a4+32(FP), R10
	MOVQ	a5+40(FP), R8
	CALL	AX
	MOVQ	AX, ret+48(FP)
	RET

// func hcBufAddr() uintptr
TEXT ·hcBufAddr(SB),NOSPLIT,$0-8
	LEAQ	·hcBuf(SB), AX
	MOVQ	AX, ret+0(FP)
	RET

