// Package insn computes the memory address an x86-64 instruction accesses,
// from its bytes and the register state. The kernel uses it when a page
// fault arrives with CR2 = 0 although the faulting access was elsewhere:
// seen under QEMU's TCG emulation of nested SVM (Xen in QEMU), where guest
// page faults are delivered without CR2. It covers the instructions Go
// code uses to touch memory (ModRM memory operands, string operations,
// PUSH/CALL/RET, also through ModRM, and MOV moffs; no VEX, which needs AVX, left off by the
// kernel). It allocates nothing and never reads past the 15-byte window.
package insn

// Register numbers in ModRM/SIB encoding order.
const (
	RAX = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
)

// Regs is the register file the address is computed from.
type Regs struct {
	GPR    [16]uint64
	RIP    uint64
	FSBase uint64
	GSBase uint64
}

// MaxLen is the longest x86 instruction.
const MaxLen = 15

// modrm1 marks one-byte opcodes that take a ModRM byte. The tables are
// literals, not built in init: the first page faults happen while the
// runtime starts, before any package is initialised.
var modrm1 = [256]bool{
	0x00: true, 0x01: true, 0x02: true, 0x03: true, 0x08: true, 0x09: true,
	0x0a: true, 0x0b: true, 0x10: true, 0x11: true, 0x12: true, 0x13: true,
	0x18: true, 0x19: true, 0x1a: true, 0x1b: true, 0x20: true, 0x21: true,
	0x22: true, 0x23: true, 0x28: true, 0x29: true, 0x2a: true, 0x2b: true,
	0x30: true, 0x31: true, 0x32: true, 0x33: true, 0x38: true, 0x39: true,
	0x3a: true, 0x3b: true, 0x62: true, 0x63: true, 0x69: true, 0x6b: true,
	0x80: true, 0x81: true, 0x82: true, 0x83: true, 0x84: true, 0x85: true,
	0x86: true, 0x87: true, 0x88: true, 0x89: true, 0x8a: true, 0x8b: true,
	0x8c: true, 0x8d: true, 0x8e: true, 0x8f: true, 0xc0: true, 0xc1: true,
	0xc4: true, 0xc5: true, 0xc6: true, 0xc7: true, 0xd0: true, 0xd1: true,
	0xd2: true, 0xd3: true, 0xd8: true, 0xd9: true, 0xda: true, 0xdb: true,
	0xdc: true, 0xdd: true, 0xde: true, 0xdf: true, 0xf6: true, 0xf7: true,
	0xfe: true, 0xff: true,
}

// noModrm2 marks two-byte (0F xx) opcodes that take no ModRM byte.
var noModrm2 = [256]bool{
	0x05: true, 0x06: true, 0x07: true, 0x08: true, 0x09: true, 0x0b: true,
	0x0e: true, 0x30: true, 0x31: true, 0x32: true, 0x33: true, 0x34: true,
	0x35: true, 0x36: true, 0x37: true, 0x77: true, 0x80: true, 0x81: true,
	0x82: true, 0x83: true, 0x84: true, 0x85: true, 0x86: true, 0x87: true,
	0x88: true, 0x89: true, 0x8a: true, 0x8b: true, 0x8c: true, 0x8d: true,
	0x8e: true, 0x8f: true, 0xa0: true, 0xa1: true, 0xa2: true, 0xa8: true,
	0xa9: true, 0xaa: true, 0xc8: true, 0xc9: true, 0xca: true, 0xcb: true,
	0xcc: true, 0xcd: true, 0xce: true, 0xcf: true,
}

// Address returns the address the instruction in code (its first bytes at
// r.RIP) reads or writes, and whether one could be determined. For
// instructions touching two locations (MOVS) it returns the destination
// when write is set and the source otherwise.
func Address(code []byte, r *Regs, write bool) (uint64, bool) {
	if len(code) > MaxLen {
		code = code[:MaxLen]
	}
	i := 0
	var rex byte
	var seg uint64
	addr32 := false
prefixes:
	for i < len(code) {
		switch b := code[i]; {
		case b == 0x66 || b == 0xf2 || b == 0xf3 || b == 0xf0 || b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36:
		case b == 0x67:
			addr32 = true
		case b == 0x64:
			seg = r.FSBase
		case b == 0x65:
			seg = r.GSBase
		case b&0xf0 == 0x40:
			rex = b
			i++
			break prefixes
		default:
			break prefixes
		}
		i++
	}
	if i >= len(code) {
		return 0, false
	}
	op := code[i]
	i++
	hasModrm := false
	if op == 0x0f {
		if i >= len(code) {
			return 0, false
		}
		op2 := code[i]
		i++
		if op2 == 0x38 || op2 == 0x3a {
			i++ // three-byte opcode: always ModRM
			hasModrm = true
		} else {
			hasModrm = !noModrm2[op2]
		}
	} else {
		hasModrm = modrm1[op]
		if !hasModrm {
			return implicit(op, code[i:], r, write, seg)
		}
	}
	if !hasModrm || i >= len(code) {
		return 0, false
	}
	modrm := code[i]
	i++
	mod, rm := modrm>>6, modrm&7
	if op != 0x0f {
		// Group 5's CALL and PUSH (FF /2, /3, /6) write the stack besides
		// reading their operand; POP r/m (8F /0) reads it besides writing.
		// Go calls through registers (CALL CX), which have no memory
		// operand at all: the push is the only access that can fault.
		switch reg := modrm >> 3 & 7; {
		case op == 0xff && (reg == 2 || reg == 3 || reg == 6) && (write || mod == 3):
			return r.GPR[RSP] - 8, true
		case op == 0x8f && reg == 0 && (!write || mod == 3):
			return r.GPR[RSP], true
		}
	}
	if mod == 3 {
		return 0, false // register operand
	}
	var a uint64
	if rm == 4 { // SIB
		if i >= len(code) {
			return 0, false
		}
		sib := code[i]
		i++
		scale, index, base := sib>>6, (sib>>3)&7|(rex>>1&1)<<3, sib&7
		if index != RSP {
			a += r.GPR[index] << scale
		}
		if base == 5 && mod == 0 {
			d, ok := disp(code, i, 4)
			if !ok {
				return 0, false
			}
			return fix(a+d, seg, addr32), true
		}
		a += r.GPR[base|(rex&1)<<3]
	} else if rm == 5 && mod == 0 {
		return 0, false // RIP-relative: image data, never demand-paged
	} else {
		a = r.GPR[rm|(rex&1)<<3]
	}
	switch mod {
	case 1:
		d, ok := disp(code, i, 1)
		if !ok {
			return 0, false
		}
		a += d
	case 2:
		d, ok := disp(code, i, 4)
		if !ok {
			return 0, false
		}
		a += d
	}
	return fix(a, seg, addr32), true
}

func fix(a, seg uint64, addr32 bool) uint64 {
	if addr32 {
		a &= 0xffffffff
	}
	return a + seg
}

// disp reads a sign-extended displacement of n bytes at code[i:].
func disp(code []byte, i, n int) (uint64, bool) {
	if i+n > len(code) {
		return 0, false
	}
	if n == 1 {
		return uint64(int64(int8(code[i]))), true
	}
	v := uint32(code[i]) | uint32(code[i+1])<<8 | uint32(code[i+2])<<16 | uint32(code[i+3])<<24
	return uint64(int64(int32(v))), true
}

// implicit handles one-byte opcodes without ModRM that touch memory.
func implicit(op byte, rest []byte, r *Regs, write bool, seg uint64) (uint64, bool) {
	switch {
	case op == 0xa4 || op == 0xa5 || op == 0xa6 || op == 0xa7: // MOVS, CMPS
		if write || op >= 0xa6 {
			return r.GPR[RDI], true
		}
		return r.GPR[RSI] + seg, true
	case op >= 0xaa && op <= 0xab, op >= 0xae && op <= 0xaf: // STOS, SCAS
		return r.GPR[RDI], true
	case op == 0xac || op == 0xad: // LODS
		return r.GPR[RSI] + seg, true
	case op >= 0x50 && op <= 0x57, op == 0x68, op == 0x6a, op == 0xe8, op == 0x9c: // PUSH, CALL, PUSHF
		return r.GPR[RSP] - 8, true
	case op >= 0x58 && op <= 0x5f, op == 0xc3, op == 0xc2, op == 0x9d: // POP, RET, POPF
		return r.GPR[RSP], true
	case op == 0xc8: // ENTER pushes RBP
		return r.GPR[RSP] - 8, true
	case op == 0xc9: // LEAVE pops from the frame pointer
		return r.GPR[RBP], true
	case op >= 0xa0 && op <= 0xa3: // MOV moffs64
		if len(rest) < 8 {
			return 0, false
		}
		var v uint64
		for k := 7; k >= 0; k-- {
			v = v<<8 | uint64(rest[k])
		}
		return v + seg, true
	}
	return 0, false
}
