package insn

import "testing"

func TestAddress(t *testing.T) {
	var r Regs
	for i := range r.GPR {
		r.GPR[i] = uint64(i) * 0x1000
	}
	r.FSBase = 0x7000_0000
	tests := []struct {
		name  string
		code  []byte
		write bool
		want  uint64
		ok    bool
	}{
		// MOVQ AX, 0(CX): 48 89 01
		{"mov store [rcx]", []byte{0x48, 0x89, 0x01}, true, 0x1000, true},
		// MOVQ 8(DX), CX: 48 8b 4a 08
		{"mov load disp8", []byte{0x48, 0x8b, 0x4a, 0x08}, false, 0x2008, true},
		// MOVQ AX, -8(BX)(SI*8): 48 89 44 f3 f8
		{"sib scale 8 disp8 neg", []byte{0x48, 0x89, 0x44, 0xf3, 0xf8}, true, 0x3000 + 0x6000*8 - 8, true},
		// MOVL $1, 0x100(R12): 41 c7 84 24 00 01 00 00 01 00 00 00
		{"r12 base via sib", []byte{0x41, 0xc7, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00, 1, 0, 0, 0}, true, 0xc000 + 0x100, true},
		// MOVQ AX, (R13): 49 89 45 00 (mod=1 disp8 0, since rm=5 mod=0 means RIP)
		{"r13 base", []byte{0x49, 0x89, 0x45, 0x00}, true, 0xd000, true},
		// MOVUPS X0, (DI): 0f 11 07
		{"movups store", []byte{0x0f, 0x11, 0x07}, true, 0x7000, true},
		// MOVDQU X1, 16(SI): f3 0f 7f 4e 10
		{"movdqu prefix f3", []byte{0xf3, 0x0f, 0x7f, 0x4e, 0x10}, true, 0x6010, true},
		// REP STOSQ: f3 48 ab
		{"rep stosq", []byte{0xf3, 0x48, 0xab}, true, 0x7000, true},
		// REP MOVSB source/dest
		{"movsb dst", []byte{0xf3, 0xa4}, true, 0x7000, true},
		{"movsb src", []byte{0xf3, 0xa4}, false, 0x6000, true},
		// PUSHQ BP: 55
		{"push", []byte{0x55}, true, 0x4000 - 8, true},
		// CALL CX: ff d1 (a fresh goroutine stack page faulted here with
		// CR2 = 0 in the Xen lab, and went to the program as a nil
		// dereference)
		{"call register", []byte{0xff, 0xd1}, true, 0x4000 - 8, true},
		// CALL 0x18(AX): ff 50 18, the push and the pointer load
		{"call memory push", []byte{0xff, 0x50, 0x18}, true, 0x4000 - 8, true},
		{"call memory load", []byte{0xff, 0x50, 0x18}, false, 0x18, true},
		// PUSHQ 8(BX): ff 73 08
		{"push memory", []byte{0xff, 0x73, 0x08}, true, 0x4000 - 8, true},
		{"push memory load", []byte{0xff, 0x73, 0x08}, false, 0x3008, true},
		// JMP CX: ff e1 touches no memory
		{"jmp register", []byte{0xff, 0xe1}, false, 0, false},
		// INCQ (CX): 48 ff 01 is group 5 too, an ordinary operand
		{"inc memory", []byte{0x48, 0xff, 0x01}, true, 0x1000, true},
		// POPQ 0x10(DX): 8f 42 10
		{"pop memory store", []byte{0x8f, 0x42, 0x10}, true, 0x2010, true},
		{"pop memory load", []byte{0x8f, 0x42, 0x10}, false, 0x4000, true},
		// LEAVE: c9
		{"leave", []byte{0xc9}, false, 0x5000, true},
		// MOVQ -8(FS), R14: 64 4c 8b 34 25 f8 ff ff ff
		{"fs absolute", []byte{0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff}, false, 0x7000_0000 - 8, true},
		// RIP-relative load: 48 8b 05 xx xx xx xx -> not determined
		{"rip relative", []byte{0x48, 0x8b, 0x05, 1, 2, 3, 4}, false, 0, false},
		// register-register: 48 89 c8
		{"register operand", []byte{0x48, 0x89, 0xc8}, true, 0, false},
		// truncated
		{"truncated sib", []byte{0x48, 0x89, 0x44}, true, 0, false},
		{"empty", nil, true, 0, false},
		// CMPXCHG 0(BX), CX with LOCK: f0 48 0f b1 0b
		{"lock cmpxchg", []byte{0xf0, 0x48, 0x0f, 0xb1, 0x0b}, true, 0x3000, true},
	}
	for _, tt := range tests {
		got, ok := Address(tt.code, &r, tt.write)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: Address(% x) = %#x, %v; want %#x, %v", tt.name, tt.code, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzAddress(f *testing.F) {
	f.Add([]byte{0x48, 0x89, 0x44, 0xf3, 0xf8}, true)
	f.Add([]byte{0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff}, false)
	f.Add([]byte{0xf3, 0x0f, 0x38, 0x00, 0x04, 0x24}, false)
	f.Add([]byte{0xff, 0xd1}, true)        // CALL CX
	f.Add([]byte{0x8f, 0x42, 0x10}, false) // POPQ 0x10(DX)
	f.Fuzz(func(t *testing.T, code []byte, write bool) {
		var r Regs
		Address(code, &r, write) // must not panic on any bytes
	})
}
