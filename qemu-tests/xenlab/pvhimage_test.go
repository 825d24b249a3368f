package xenlab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"
)

func TestMinimalPVHImageIsWellFormed(t *testing.T) {
	img := MinimalPVHImage("hello pvh")
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC {
		t.Fatalf("class %v machine %v type %v, want ELF32 i386 executable", f.Class, f.Machine, f.Type)
	}
	var load, note *elf.Prog
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			load = p
		case elf.PT_NOTE:
			note = p
		}
	}
	if load == nil || note == nil {
		t.Fatalf("want a PT_LOAD and a PT_NOTE, have %v", f.Progs)
	}
	if load.Paddr != 0x100000 || load.Filesz != uint64(len(img)) {
		t.Errorf("PT_LOAD paddr %#x filesz %d, want 0x100000 and the whole file (%d)", load.Paddr, load.Filesz, len(img))
	}
	data := make([]byte, note.Filesz)
	if _, err := note.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(data[0:]) != 4 || le.Uint32(data[4:]) != 4 || le.Uint32(data[8:]) != 18 || string(data[12:16]) != "Xen\x00" {
		t.Fatalf("note header % x, want Xen note type 18 (PHYS32_ENTRY)", data[:16])
	}
	entry := le.Uint32(data[16:])
	if uint64(entry) != f.Entry {
		t.Errorf("PVH entry %#x differs from e_entry %#x", entry, f.Entry)
	}
	// The code at the entry loads ESI with the message address; the message must be there.
	off := entry - 0x100000
	if img[off] != 0xBE {
		t.Fatalf("entry does not start with mov esi, imm32: % x", img[off:off+5])
	}
	msgAddr := le.Uint32(img[off+1:]) - 0x100000
	msgLen := le.Uint32(img[off+6:])
	if got := string(img[msgAddr : msgAddr+msgLen]); got != "hello pvh\n" {
		t.Errorf("message %q, want %q", got, "hello pvh\n")
	}
}
