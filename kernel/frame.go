package kernel

// TrapFrame is the register state saved on every kernel entry, in the order
// trapCommon pushes it (lowest address first) followed by what the CPU (or
// syscallEntry, imitating it) pushes. Its layout is shared with
// entry_amd64.s and checked by TestTrapFrameLayout.
type TrapFrame struct {
	R15, R14, R13, R12, R11, R10, R9, R8 uint64
	RBP, RDI, RSI, RDX, RCX, RBX, RAX    uint64
	Vector, ErrCode                      uint64
	RIP, CS, RFLAGS, RSP, SS             uint64
}

const (
	trapFrameSize = 22 * 8
	vecSyscall    = 0x100 // Vector of a frame built by syscallEntry
	vecPageFault  = 14    // #PF, the one vector whose entry saves CR2 (entry_amd64.s)
	// vecFrameLost is set in Vector by trapCommon when the interrupt came
	// while the CPU was on IST1 and so overwrote the frame at its top
	// (lostFrame).
	vecFrameLost = 0x200

	selCode = 0x08
	selData = 0x10
	selTSS  = 0x18

	rflagsIF = 1 << 9
)
