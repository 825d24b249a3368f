// Package pvhnote turns a Go-linked ELF executable into a PVH-bootable image
// and recognises such images afterwards.
//
// The stock Go linker cannot emit the Xen ELF note that announces a 32-bit
// physical entry point (XEN_ELFNOTE_PHYS32_ENTRY), but with
// `-ldflags "-buildid= -B 0x0000000000000000"` it emits exactly one small
// PT_NOTE segment holding an 8-byte GNU build ID. That note has the same size
// as the PVH note (12-byte header, 4-byte name, 8-byte descriptor), so Rewrite
// replaces it in place without moving anything else in the file.
//
// Two loaders read the note and both must accept it:
//   - QEMU's -kernel loader (hw/i386/x86.c, read_pvh_start_addr) matches the
//     note type only, skips the name rounded up to the segment's p_align and,
//     for an ELF64 file, reads a full 8-byte word as the address. The
//     descriptor is therefore 8 bytes (upper half zero) and p_align must be 4.
//     It also refuses e_flags with any bit of 0x00010004 set, and prefers a
//     multiboot header in the first 8 KiB over the note.
//   - Xen's libelf (xen/common/libelf/libelf-dominfo.c) checks the name
//     "Xen", walks notes in 4-byte steps and reads numeric descriptors of 1,
//     2, 4 or 8 bytes.
package pvhnote

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The PVH note as written by Rewrite.
const (
	// NoteName is the owner of Xen's ELF notes (NUL-terminated in the file).
	NoteName = "Xen"
	// NoteTypePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY from Xen's
	// public/elfnote.h.
	NoteTypePhys32Entry = 18
	// SectionName replaces ".note.gnu.build-id" in the section name table
	// when it fits, so that readelf shows what the section now holds.
	SectionName = ".note.Xen"

	// descSize is the descriptor size: 8 bytes because QEMU reads a full
	// size_t from ELF64 images.
	descSize = 8
	// noteAlign is the only p_align for which QEMU finds the descriptor
	// where Xen (and the ELF spec) put it.
	noteAlign = 4
	// noteSize is the whole note: header, padded name and descriptor.
	noteSize = noteHeaderSize + 4 + descSize
	// noteHeaderSize is namesz, descsz and type, 4 bytes each.
	noteHeaderSize = 12
)

// The GNU build ID note that the Go linker emits with -B and Rewrite replaces.
const (
	gnuNoteName        = "GNU"
	gnuNoteTypeBuildID = 3
	gnuSectionName     = ".note.gnu.build-id"
)

// QEMU's loader limits (hw/i386/x86.c, hw/i386/multiboot.c).
const (
	// QEMURejectedFlags are the e_flags bits for which QEMU's PVH loader
	// refuses the image ("elfboot unsupported flags").
	QEMURejectedFlags = 0x00010004
	// multibootMagic is the multiboot v1 header magic; a valid header in the
	// first multibootSearch bytes makes QEMU boot the image as multiboot and
	// ignore the PVH note.
	multibootMagic  = 0x1BADB002
	multibootSearch = 8192
)

// ErrNotPVHImage is wrapped by every error that means "this file is not a
// unikgo PVH image".
var ErrNotPVHImage = errors.New("not a unikgo PVH image")

// Note is one ELF note of an image.
type Note struct {
	Name string // owner, without the terminating NUL
	Type uint32
	Desc []byte
}

// Segment is one program header of an image.
type Segment struct {
	Type   elf.ProgType
	Flags  elf.ProgFlag
	Offset uint64
	Paddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

// Info describes a PVH image.
type Info struct {
	// Entry is the ELF entry point (e_entry); PVHEntry is the physical
	// entry from the PVH note. In a unikgo image they are equal because the
	// image is linked at its physical load addresses.
	Entry    uint64
	PVHEntry uint64
	Flags    uint32 // e_flags
	Notes    []Note
	Segments []Segment
	// LoadStart and LoadEnd bound the memory the loadable segments occupy.
	LoadStart, LoadEnd uint64
}

// Rewrite replaces the GNU build ID note of the Go-linked ELF executable in
// image with the PVH entry note pointing at e_entry, in place. An image that
// already carries the PVH note for its entry is left unchanged, so Rewrite is
// idempotent. It returns the entry address.
func Rewrite(image []byte) (uint64, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotPVHImage, err)
	}
	if err := checkHeader(f, image); err != nil {
		return 0, err
	}
	ph, err := singleNote(f)
	if err != nil {
		return 0, err
	}
	if f.Entry > math.MaxUint32 {
		return 0, fmt.Errorf("%w: entry point %#x is above 4 GiB; a PVH entry is a 32-bit physical address", ErrNotPVHImage, f.Entry)
	}
	if ph.Filesz != noteSize || ph.Off+noteSize > uint64(len(image)) {
		return 0, fmt.Errorf("%w: the note segment is %d bytes, want the %d-byte build ID note from -ldflags \"-B 0x0000000000000000\"", ErrNotPVHImage, ph.Filesz, noteSize)
	}
	raw := image[ph.Off : ph.Off+noteSize]
	notes, err := parseNotes(raw, f.ByteOrder)
	if err != nil {
		return 0, err
	}
	n := notes[0]
	switch {
	case len(notes) == 1 && n.Name == NoteName && n.Type == NoteTypePhys32Entry && len(n.Desc) == descSize:
		if got := binary.LittleEndian.Uint64(n.Desc); got != f.Entry {
			return 0, fmt.Errorf("%w: PVH note entry %#x differs from ELF entry %#x", ErrNotPVHImage, got, f.Entry)
		}
		return f.Entry, nil
	case len(notes) == 1 && n.Name == gnuNoteName && n.Type == gnuNoteTypeBuildID && len(n.Desc) == descSize:
	default:
		return 0, fmt.Errorf("%w: the note segment does not hold an 8-byte GNU build ID (link with -ldflags \"-buildid= -B 0x0000000000000000\")", ErrNotPVHImage)
	}
	if ph.Align != noteAlign {
		return 0, fmt.Errorf("%w: note segment alignment is %d, QEMU needs %d", ErrNotPVHImage, ph.Align, noteAlign)
	}
	putNote(raw, f.Entry)
	renameSection(image, f)
	return f.Entry, nil
}

// putNote writes the PVH note into the noteSize bytes of dst.
func putNote(dst []byte, entry uint64) {
	le := binary.LittleEndian
	le.PutUint32(dst[0:], uint32(len(NoteName)+1))
	le.PutUint32(dst[4:], descSize)
	le.PutUint32(dst[8:], NoteTypePhys32Entry)
	copy(dst[12:16], NoteName+"\x00")
	le.PutUint64(dst[16:], entry)
}

// renameSection renames the build ID section to SectionName when its name is
// not shared with another section (a linker may share string suffixes). The
// rename is cosmetic: loaders use the program headers.
func renameSection(image []byte, f *elf.File) {
	shstrndx := int(binary.LittleEndian.Uint16(image[62:]))
	if shstrndx <= 0 || shstrndx >= len(f.Sections) {
		return
	}
	strtab := f.Sections[shstrndx]
	shoff := binary.LittleEndian.Uint64(image[40:])
	shentsize := uint64(binary.LittleEndian.Uint16(image[58:]))
	var target = -1
	nameOff := make([]uint32, len(f.Sections))
	for i := range f.Sections {
		at := shoff + uint64(i)*shentsize
		if at+4 > uint64(len(image)) {
			return
		}
		nameOff[i] = binary.LittleEndian.Uint32(image[at:])
		if f.Sections[i].Name == gnuSectionName && f.Sections[i].Type == elf.SHT_NOTE {
			target = i
		}
	}
	if target < 0 {
		return
	}
	start := uint64(nameOff[target])
	end := start + uint64(len(gnuSectionName))
	for i, off := range nameOff {
		if i != target && uint64(off) >= start && uint64(off) <= end {
			return // another name lives inside ours
		}
	}
	if strtab.Offset+end >= uint64(len(image)) || end >= strtab.Size {
		return
	}
	name := image[strtab.Offset+start : strtab.Offset+end]
	clear(name)
	copy(name, SectionName)
}

// Read parses and validates a PVH image: an ELF64 x86-64 executable whose
// only note segment is the PVH note pointing at its entry point, loadable by
// both QEMU and Xen. Errors wrap ErrNotPVHImage.
func Read(image []byte) (*Info, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPVHImage, err)
	}
	if err := checkHeader(f, image); err != nil {
		return nil, err
	}
	ph, err := singleNote(f)
	if err != nil {
		return nil, err
	}
	if ph.Off+ph.Filesz > uint64(len(image)) {
		return nil, fmt.Errorf("%w: note segment extends past the end of the file", ErrNotPVHImage)
	}
	notes, err := parseNotes(image[ph.Off:ph.Off+ph.Filesz], f.ByteOrder)
	if err != nil {
		return nil, err
	}
	info := &Info{Entry: f.Entry, Flags: eflags(image), Notes: notes}
	found := false
	for _, n := range notes {
		if n.Name == NoteName && n.Type == NoteTypePhys32Entry {
			if len(n.Desc) != descSize {
				return nil, fmt.Errorf("%w: PVH note descriptor is %d bytes, QEMU needs %d", ErrNotPVHImage, len(n.Desc), descSize)
			}
			info.PVHEntry = binary.LittleEndian.Uint64(n.Desc)
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no Xen PHYS32_ENTRY note", ErrNotPVHImage)
	}
	if ph.Align != noteAlign {
		return nil, fmt.Errorf("%w: note segment alignment is %d, QEMU needs %d", ErrNotPVHImage, ph.Align, noteAlign)
	}
	if info.PVHEntry != f.Entry {
		return nil, fmt.Errorf("%w: PVH note entry %#x differs from ELF entry %#x", ErrNotPVHImage, info.PVHEntry, f.Entry)
	}
	if off, ok := multibootHeader(image); ok {
		return nil, fmt.Errorf("%w: a multiboot header at offset %#x would make QEMU ignore the PVH note", ErrNotPVHImage, off)
	}
	info.LoadStart = math.MaxUint64
	for _, p := range f.Progs {
		info.Segments = append(info.Segments, Segment{
			Type: p.Type, Flags: p.Flags, Offset: p.Off, Paddr: p.Paddr,
			Filesz: p.Filesz, Memsz: p.Memsz, Align: p.Align,
		})
		if p.Type == elf.PT_LOAD && p.Memsz > 0 {
			info.LoadStart = min(info.LoadStart, p.Paddr)
			info.LoadEnd = max(info.LoadEnd, p.Paddr+p.Memsz)
		}
	}
	if info.LoadEnd == 0 {
		return nil, fmt.Errorf("%w: no loadable segment", ErrNotPVHImage)
	}
	if info.Entry < info.LoadStart || info.Entry >= info.LoadEnd {
		return nil, fmt.Errorf("%w: entry %#x lies outside the loaded range %#x-%#x", ErrNotPVHImage, info.Entry, info.LoadStart, info.LoadEnd)
	}
	return info, nil
}

// checkHeader refuses anything but a little-endian ELF64 x86-64 executable
// whose flags QEMU accepts. debug/elf has already checked that image holds a
// whole ELF header.
func checkHeader(f *elf.File, image []byte) error {
	switch {
	case f.Class != elf.ELFCLASS64:
		return fmt.Errorf("%w: ELF class is %v, want ELFCLASS64", ErrNotPVHImage, f.Class)
	case f.Data != elf.ELFDATA2LSB:
		return fmt.Errorf("%w: ELF data encoding is %v, want little endian", ErrNotPVHImage, f.Data)
	case f.Machine != elf.EM_X86_64:
		return fmt.Errorf("%w: ELF machine is %v, want EM_X86_64", ErrNotPVHImage, f.Machine)
	case f.Type != elf.ET_EXEC:
		return fmt.Errorf("%w: ELF type is %v, want ET_EXEC (a statically linked executable)", ErrNotPVHImage, f.Type)
	case eflags(image)&QEMURejectedFlags != 0:
		return fmt.Errorf("%w: ELF flags %#x include bits %#x that QEMU's PVH loader refuses", ErrNotPVHImage, eflags(image), QEMURejectedFlags)
	}
	return nil
}

// singleNote returns the one PT_NOTE program header.
func singleNote(f *elf.File) (*elf.Prog, error) {
	var note *elf.Prog
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if note != nil {
			return nil, fmt.Errorf("%w: more than one PT_NOTE segment", ErrNotPVHImage)
		}
		note = p
	}
	if note == nil {
		return nil, fmt.Errorf("%w: no PT_NOTE segment", ErrNotPVHImage)
	}
	return note, nil
}

// parseNotes splits a note segment into notes (4-byte aligned fields, as
// both the ELF spec and Xen's libelf read them).
func parseNotes(b []byte, bo binary.ByteOrder) ([]Note, error) {
	var notes []Note
	for len(b) > 0 {
		if len(b) < noteHeaderSize {
			return nil, fmt.Errorf("%w: truncated note header", ErrNotPVHImage)
		}
		namesz, descsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
		nameEnd := noteHeaderSize + uint64(namesz)
		descStart := noteHeaderSize + align4(uint64(namesz))
		descEnd := descStart + uint64(descsz)
		if descEnd > uint64(len(b)) {
			return nil, fmt.Errorf("%w: note of %d+%d bytes overruns its segment", ErrNotPVHImage, namesz, descsz)
		}
		name := b[noteHeaderSize:nameEnd]
		name = bytes.TrimSuffix(name, []byte{0})
		notes = append(notes, Note{Name: string(name), Type: typ, Desc: bytes.Clone(b[descStart:descEnd])})
		b = b[min(align4(descEnd), uint64(len(b))):]
	}
	if len(notes) == 0 {
		return nil, fmt.Errorf("%w: empty note segment", ErrNotPVHImage)
	}
	return notes, nil
}

// eflags reads e_flags, which debug/elf does not expose.
func eflags(image []byte) uint32 { return binary.LittleEndian.Uint32(image[48:]) }

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// multibootHeader finds a valid multiboot v1 header where QEMU looks for one.
func multibootHeader(image []byte) (int, bool) {
	le := binary.LittleEndian
	for i := 0; i+12 <= min(len(image), multibootSearch); i += 4 {
		if le.Uint32(image[i:]) == multibootMagic && le.Uint32(image[i:])+le.Uint32(image[i+4:])+le.Uint32(image[i+8:]) == 0 {
			return i, true
		}
	}
	return 0, false
}
