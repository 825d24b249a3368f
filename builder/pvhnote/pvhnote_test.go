package pvhnote

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// linkedStub returns the test stub as the Go linker writes it under the
// contract's flags, before any rewrite. It is built once per test run.
var linkedStub = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "pvhnote-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "stub")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-E main.stubEntry -buildid= -B 0x0000000000000000", "-o", out, "../testdata/pvhstub")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, errors.New(string(msg))
	}
	return os.ReadFile(out)
})

func stub(t *testing.T) []byte {
	t.Helper()
	b, err := linkedStub()
	if err != nil {
		t.Fatalf("building the stub: %v", err)
	}
	return bytes.Clone(b)
}

// noteProg returns the PT_NOTE program header of an image.
func noteProg(t *testing.T, b []byte) *elf.Prog {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			return p
		}
	}
	t.Fatal("no PT_NOTE")
	return nil
}

// wantNote is the PVH note exactly as QEMU and Xen must find it.
func wantNote(entry uint64) []byte {
	b := []byte{
		4, 0, 0, 0, // namesz: "Xen\0"
		8, 0, 0, 0, // descsz: QEMU reads 8 bytes from ELF64 images
		18, 0, 0, 0, // XEN_ELFNOTE_PHYS32_ENTRY
		'X', 'e', 'n', 0,
		0, 0, 0, 0, 0, 0, 0, 0,
	}
	binary.LittleEndian.PutUint64(b[16:], entry)
	return b
}

func TestRewriteGolden(t *testing.T) {
	linked := stub(t)
	img := bytes.Clone(linked)
	entry, err := Rewrite(img)
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("rewritten image is not ELF: %v", err)
	}
	if entry != f.Entry {
		t.Errorf("Rewrite returned entry %#x, ELF entry is %#x", entry, f.Entry)
	}
	p := noteProg(t, img)
	if diff := cmp.Diff(wantNote(f.Entry), img[p.Off:p.Off+p.Filesz]); diff != "" {
		t.Errorf("note bytes (-want +got):\n%s", diff)
	}
	if p.Align != 4 {
		t.Errorf("note p_align = %d, want 4", p.Align)
	}
	sec := f.Section(SectionName)
	if sec == nil || sec.Type != elf.SHT_NOTE || sec.Offset != p.Off {
		t.Errorf("section %s = %+v, want the SHT_NOTE section at the note's offset", SectionName, sec)
	}

	// Nothing but the note and the section name may change.
	shstr := f.Sections[binary.LittleEndian.Uint16(img[62:])] // e_shstrndx
	for i := range img {
		inNote := uint64(i) >= p.Off && uint64(i) < p.Off+p.Filesz
		inNames := uint64(i) >= shstr.Offset && uint64(i) < shstr.Offset+shstr.Size
		if img[i] != linked[i] && !inNote && !inNames {
			t.Fatalf("byte %#x changed outside the note and the section names", i)
		}
	}

	info, err := Read(img)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	wantNotes := []Note{{Name: "Xen", Type: 18, Desc: wantNote(f.Entry)[16:]}}
	if diff := cmp.Diff(wantNotes, info.Notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if info.Entry != f.Entry || info.PVHEntry != f.Entry || info.Flags != 0 {
		t.Errorf("Info entry %#x, PVH entry %#x, flags %#x; want %#x, %#x, 0", info.Entry, info.PVHEntry, info.Flags, f.Entry, f.Entry)
	}
	if info.LoadStart != 0x400000 || info.Entry >= info.LoadEnd {
		t.Errorf("load range %#x-%#x, want from 0x400000 past the entry", info.LoadStart, info.LoadEnd)
	}

	again := bytes.Clone(img)
	if _, err := Rewrite(again); err != nil {
		t.Fatalf("second Rewrite: %v", err)
	}
	if !bytes.Equal(again, img) {
		t.Error("Rewrite of a rewritten image changed it")
	}
}

func TestMinimal(t *testing.T) {
	code := []byte{0xfa, 0xf4, 0xeb, 0xfc}
	img := Minimal(code, 0x100000)
	info, err := Read(img)
	if err != nil {
		t.Fatalf("Read(Minimal): %v", err)
	}
	const entry = 0x100000 + minCodeOff
	want := &Info{
		Entry: entry, PVHEntry: entry,
		Notes: []Note{{Name: "Xen", Type: 18, Desc: wantNote(entry)[16:]}},
		Segments: []Segment{
			{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Paddr: 0x100000, Filesz: uint64(len(img)), Memsz: uint64(len(img)), Align: 0x1000},
			{Type: elf.PT_NOTE, Flags: elf.PF_R, Offset: minNoteOff, Paddr: 0x100000 + minNoteOff, Filesz: noteSize, Memsz: noteSize, Align: 4},
		},
		LoadStart: 0x100000, LoadEnd: 0x100000 + uint64(len(img)),
	}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Read(Minimal) (-want +got):\n%s", diff)
	}
	if !bytes.Equal(img[minCodeOff:], code) {
		t.Error("code not at the entry offset")
	}
}

// Header field offsets used to break images on purpose.
const (
	offMachine = 18
	offEntry   = 24
	offFlags   = 48
)

func TestRewriteRefuses(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name   string
		mutate func(t *testing.T, b []byte) []byte
		want   string
	}{
		{"not ELF", func(t *testing.T, b []byte) []byte { return []byte("#!/bin/sh\necho hi\n") }, "bad magic"},
		{"ELF32", func(t *testing.T, b []byte) []byte { b[elf.EI_CLASS] = byte(elf.ELFCLASS32); return b }, ""},
		{"i386", func(t *testing.T, b []byte) []byte { le.PutUint16(b[offMachine:], uint16(elf.EM_386)); return b }, "EM_X86_64"},
		{"shared object", func(t *testing.T, b []byte) []byte { le.PutUint16(b[16:], uint16(elf.ET_DYN)); return b }, "ET_EXEC"},
		{"flags 0x10000", func(t *testing.T, b []byte) []byte { le.PutUint32(b[offFlags:], 0x10000); return b }, "QEMU"},
		{"flags 0x4", func(t *testing.T, b []byte) []byte { le.PutUint32(b[offFlags:], 0x4); return b }, "QEMU"},
		{"no note", func(t *testing.T, b []byte) []byte { setProgType(t, b, elf.PT_NOTE, elf.PT_NULL); return b }, "no PT_NOTE"},
		{"two notes", func(t *testing.T, b []byte) []byte { setProgType(t, b, elf.PT_GNU_STACK, elf.PT_NOTE); return b }, "more than one"},
		{"note not a build ID", func(t *testing.T, b []byte) []byte {
			p := noteProg(t, b)
			le.PutUint32(b[p.Off+8:], 1)
			return b
		}, "GNU build ID"},
		{"note align 8", func(t *testing.T, b []byte) []byte { setNoteAlign(t, b, 8); return b }, "alignment"},
		{"entry above 4 GiB", func(t *testing.T, b []byte) []byte { le.PutUint64(b[offEntry:], 1<<32); return b }, "above 4 GiB"},
		{"entry mismatch", func(t *testing.T, b []byte) []byte {
			if _, err := Rewrite(b); err != nil {
				t.Fatal(err)
			}
			le.PutUint64(b[offEntry:], le.Uint64(b[offEntry:])+1)
			return b
		}, "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(t, stub(t))
			_, err := Rewrite(b)
			if !errors.Is(err, ErrNotPVHImage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Rewrite = %v, want ErrNotPVHImage mentioning %q", err, tt.want)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	le := binary.LittleEndian
	multiboot := make([]byte, 12)
	le.PutUint32(multiboot, multibootMagic)
	le.PutUint32(multiboot[8:], ^uint32(multibootMagic)+1) // checksum: magic+flags+checksum = 0
	tests := []struct {
		name  string
		image func(t *testing.T) []byte
		want  string
	}{
		{"empty file", func(t *testing.T) []byte { return nil }, ""},
		{"linker output without the PVH note", stub, "no Xen PHYS32_ENTRY note"},
		{"4-byte descriptor", func(t *testing.T) []byte {
			b := Minimal(nil, 0x100000)
			le.PutUint32(b[minNoteOff+4:], 4)                  // descsz
			le.PutUint64(b[ehdrSize+phdrSize+32:], noteSize-4) // p_filesz
			return b
		}, "descriptor is 4 bytes"},
		{"PVH entry differs from ELF entry", func(t *testing.T) []byte {
			b := Minimal(nil, 0x100000)
			le.PutUint64(b[minNoteOff+16:], 0x200000)
			return b
		}, "differs"},
		{"multiboot header", func(t *testing.T) []byte { return Minimal(multiboot, 0x100000) }, "multiboot"},
		{"entry outside the image", func(t *testing.T) []byte {
			b := Minimal(nil, 0x100000)
			le.PutUint64(b[offEntry:], 0x900000)
			le.PutUint64(b[minNoteOff+16:], 0x900000)
			return b
		}, "outside"},
		{"QEMU-rejected flags", func(t *testing.T) []byte {
			b := Minimal(nil, 0x100000)
			le.PutUint32(b[offFlags:], QEMURejectedFlags)
			return b
		}, "QEMU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(tt.image(t))
			if !errors.Is(err, ErrNotPVHImage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read = %v, want ErrNotPVHImage mentioning %q", err, tt.want)
			}
		})
	}
}

// setProgType changes the type of the first program header of type from.
func setProgType(t *testing.T, b []byte, from, to elf.ProgType) {
	t.Helper()
	phoff := binary.LittleEndian.Uint64(b[32:])
	phnum := int(binary.LittleEndian.Uint16(b[56:]))
	for i := range phnum {
		at := phoff + uint64(i)*phdrSize
		if elf.ProgType(binary.LittleEndian.Uint32(b[at:])) == from {
			binary.LittleEndian.PutUint32(b[at:], uint32(to))
			return
		}
	}
	t.Fatalf("no %v program header", from)
}

// setNoteAlign changes p_align of the PT_NOTE program header.
func setNoteAlign(t *testing.T, b []byte, align uint64) {
	t.Helper()
	phoff := binary.LittleEndian.Uint64(b[32:])
	phnum := int(binary.LittleEndian.Uint16(b[56:]))
	for i := range phnum {
		at := phoff + uint64(i)*phdrSize
		if elf.ProgType(binary.LittleEndian.Uint32(b[at:])) == elf.PT_NOTE {
			binary.LittleEndian.PutUint64(b[at+48:], align)
			return
		}
	}
	t.Fatal("no PT_NOTE")
}
