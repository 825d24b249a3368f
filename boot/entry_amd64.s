// PVH entry: 32-bit protected mode, paging off, EBX = physical address of
// hvm_start_info (Xen docs/misc/pvh.pandoc). Everything up to long64 runs in
// 32-bit mode although this file is assembled as amd64, so every instruction
// here is one whose encoding means the same in both modes (checked with
// objdump -M i386 in boot_test.go). Memory operands on symbols assemble
// RIP-relative, which 32-bit mode reads as absolute: symbol addresses are
// computed with CALL/POP (ADDR32) instead.

#include "textflag.h"

#define BOOTSTACK 65536

// ADDR32 loads the run-time address of sym into reg (32-bit mode only).
// CALL pushes the address of the LEA; the LEA, read in 32-bit mode, yields
// sym - (that address + 6). Clobbers DX; needs a stack.
#define ADDR32(sym, reg) \
	BYTE $0xE8; LONG $0; \
	LEAL sym(SB), reg; \
	POPQ DX; \
	LEAL 6(DX)(reg*1), reg

GLOBL ·bootStack(SB), NOPTR, $BOOTSTACK
// Six page-table pages (PML4, PDPT, 4 PDs) identity-mapping 4 GiB with 2 MiB
// pages, plus one page of slack for alignment.
GLOBL ·earlyPT(SB), NOPTR, $(7*4096)
// 64-bit GDT used until the kernel loads its own: null, code64 (0x08), data (0x10).
DATA ·earlyGDT+0(SB)/8, $0
DATA ·earlyGDT+8(SB)/8, $0x00af9a000000ffff
DATA ·earlyGDT+16(SB)/8, $0x00cf92000000ffff
GLOBL ·earlyGDT(SB), NOPTR, $24
// Pseudo-descriptor: limit u16, base u64 (base filled in at run time).
GLOBL ·earlyGDTR(SB), NOPTR, $16
// Boot TLS: FS points at earlyTLS+8 so that -8(FS), where Go's ABI wrappers
// load g, reads a pointer to earlyG: an all-zero g whose stack guard never
// trips, so Go code can run before the runtime exists.
GLOBL ·earlyTLS(SB), NOPTR, $64
GLOBL ·earlyG(SB), NOPTR, $256

// func pvhEntry()
TEXT ·pvhEntry(SB),NOSPLIT|NOFRAME,$0
	CLI
	CLD
	// ESP is undefined (0 under Xen). Borrow the 4 bytes below start_info for
	// one CALL to learn where we are, then move to bootStack.
	MOVL	-4(BX), DI
	MOVL	BX, SP
	BYTE	$0xE8; LONG $0
	LEAL	·bootStack+BOOTSTACK(SB), CX
	POPQ	AX
	MOVL	DI, -4(BX)
	LEAL	6(AX)(CX*1), SP

	// Entry TSC, for the boot-time line.
	ADDR32(·entryTSC, DI)
	BYTE	$0x0F; BYTE $0x31 // RDTSC
	MOVL	AX, 0(DI)
	MOVL	DX, 4(DI)
	ADDR32(·startInfoPA, DI)
	MOVL	BX, 0(DI)

	// Page tables: SI = 4 KiB-aligned PML4.
	ADDR32(·earlyPT, SI)
	ADDL	$4095, SI
	ANDL	$0xfffff000, SI
	MOVL	SI, DI
	XORL	AX, AX
	MOVL	$(6*1024), CX
	REP;	STOSL
	LEAL	0x1003(SI), AX // PML4[0] = PDPT | present | writable
	MOVL	AX, 0(SI)
	LEAL	0x2003(SI), AX // PDPT[0..3] = PD0..PD3
	MOVL	AX, 0x1000(SI)
	LEAL	0x3003(SI), AX
	MOVL	AX, 0x1008(SI)
	LEAL	0x4003(SI), AX
	MOVL	AX, 0x1010(SI)
	LEAL	0x5003(SI), AX
	MOVL	AX, 0x1018(SI)
	LEAL	0x2000(SI), DI
	MOVL	$0x83, AX // present | writable | 2 MiB page
	MOVL	$2048, CX
pdloop:
	MOVL	AX, 0(DI)
	ADDL	$0x200000, AX
	ADDL	$8, DI
	DECL	CX
	JNE	pdloop

	// CR4: PAE | OSFXSR | OSXMMEXCPT. CR3: PML4. EFER: LME.
	MOVQ	CR4, AX
	ORL	$0x620, AX
	MOVQ	AX, CR4
	MOVQ	SI, CR3
	MOVL	$0xc0000080, CX
	RDMSR
	ORL	$0x100, AX
	WRMSR
	// CR0: PG | WP | NE | MP, EM clear: paging on, x87/SSE usable.
	MOVQ	CR0, AX
	ANDL	$0xfffffffb, AX
	ORL	$0x80010022, AX
	MOVQ	AX, CR0

	// Load the 64-bit GDT and far-return into long64.
	ADDR32(·earlyGDT, AX)
	ADDR32(·earlyGDTR, DI)
	MOVL	AX, 2(DI)
	MOVL	$0, 6(DI)
	MOVW	$23, AX
	MOVW	AX, 0(DI)
	LGDT	0(DI)
	ADDR32(·long64, AX)
	PUSHQ	$0x08
	PUSHQ	AX
	BYTE	$0xCB // LRET: pops EIP, then CS

// long64 runs in 64-bit mode on bootStack with the early identity map.
TEXT ·long64(SB),NOSPLIT|NOFRAME,$0
	MOVL	$0x10, AX
	BYTE	$0x8e; BYTE $0xd8 // MOVW AX, DS
	BYTE	$0x8e; BYTE $0xc0 // MOVW AX, ES
	BYTE	$0x8e; BYTE $0xd0 // MOVW AX, SS
	BYTE	$0x8e; BYTE $0xe0 // MOVW AX, FS
	BYTE	$0x8e; BYTE $0xe8 // MOVW AX, GS
	LEAQ	·bootStack+BOOTSTACK(SB), SP
	// earlyTLS slot 0 holds &earlyG; FS base = &earlyTLS + 8.
	LEAQ	·earlyG(SB), AX
	LEAQ	·earlyTLS(SB), BX
	MOVQ	AX, 0(BX)
	ADDQ	$8, BX
	MOVQ	BX, AX
	MOVQ	BX, DX
	SHRQ	$32, DX
	MOVL	$0xc0000100, CX
	WRMSR
	XORPS	X15, X15
	CALL	·start64(SB)
hang:
	CLI
	HLT
	JMP	hang
