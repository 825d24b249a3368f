// The PVH entry of the test stub. Every instruction here must decode the
// same in 32-bit protected mode (how PVH enters) as in 64-bit mode (how the Go
// assembler encodes it): MOVL/MOVB of immediates to registers, OUTB, CLI, HLT
// and a short JMP qualify; no memory operands (sym(SB) would be RIP-relative),
// no stack (ESP is undefined under Xen).

#include "textflag.h"

// Ports the stub talks to.
#define COM1 0x3f8        // first serial port: QEMU -serial stdio
#define XEN_DEBUG 0xe9    // Xen's (and QEMU's, if enabled) debug console port
#define DEBUG_EXIT 0xf4   // QEMU isa-debug-exit: exit status (N<<1)|1

// PUTC writes one byte to both consoles.
#define PUTC(c) MOVB $c, AX; MOVL $COM1, DX; OUTB; MOVL $XEN_DEBUG, DX; OUTB

TEXT ·stubEntry(SB), NOSPLIT|NOFRAME, $0
	PUTC(0x75) // u
	PUTC(0x6e) // n
	PUTC(0x69) // i
	PUTC(0x6b) // k
	PUTC(0x67) // g
	PUTC(0x6f) // o
	PUTC(0x20) // space
	PUTC(0x70) // p
	PUTC(0x76) // v
	PUTC(0x68) // h
	PUTC(0x20) // space
	PUTC(0x73) // s
	PUTC(0x74) // t
	PUTC(0x75) // u
	PUTC(0x62) // b
	PUTC(0x0a) // newline

	// Status 7: QEMU exits with (7<<1)|1 = 15. Xen has no device here and
	// ignores the write.
	MOVB $7, AX
	MOVL $DEBUG_EXIT, DX
	OUTB

	// Interrupts off and halted: under Xen, all vCPUs in this state means
	// poweroff.
halt:
	CLI
	HLT
	JMP halt
