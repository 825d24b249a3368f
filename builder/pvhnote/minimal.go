package pvhnote

import (
	"debug/elf"
	"encoding/binary"
)

// Layout of the images Minimal writes: ELF header, two program headers
// (PT_LOAD for the whole file, PT_NOTE), the PVH note, then the code.
const (
	ehdrSize   = 64
	phdrSize   = 56
	minPhnum   = 2
	minNoteOff = ehdrSize + minPhnum*phdrSize
	minCodeOff = minNoteOff + noteSize
)

// Minimal returns a complete PVH image, without Go, that loads at physical
// address load and enters at the first byte of code in 32-bit protected mode.
// unikbuild uses it to probe whether KVM really runs a guest, which must not
// depend on a Go toolchain or on the kernel; tests use it as a known-good
// reference for Read.
func Minimal(code []byte, load uint64) []byte {
	img := make([]byte, minCodeOff+len(code))
	le := binary.LittleEndian
	copy(img, elf.ELFMAG)
	img[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	img[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	img[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(img[16:], uint16(elf.ET_EXEC))
	le.PutUint16(img[18:], uint16(elf.EM_X86_64))
	le.PutUint32(img[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(img[24:], load+minCodeOff) // e_entry
	le.PutUint64(img[32:], ehdrSize)        // e_phoff
	le.PutUint16(img[52:], ehdrSize)        // e_ehsize
	le.PutUint16(img[54:], phdrSize)        // e_phentsize
	le.PutUint16(img[56:], minPhnum)        // e_phnum
	le.PutUint16(img[58:], 64)              // e_shentsize (no sections)

	putPhdr := func(at int, typ elf.ProgType, flags elf.ProgFlag, off, size, align uint64) {
		p := img[at:]
		le.PutUint32(p[0:], uint32(typ))
		le.PutUint32(p[4:], uint32(flags))
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], load+off) // p_vaddr
		le.PutUint64(p[24:], load+off) // p_paddr
		le.PutUint64(p[32:], size)     // p_filesz
		le.PutUint64(p[40:], size)     // p_memsz
		le.PutUint64(p[48:], align)
	}
	putPhdr(ehdrSize, elf.PT_LOAD, elf.PF_R|elf.PF_X, 0, uint64(len(img)), 0x1000)
	putPhdr(ehdrSize+phdrSize, elf.PT_NOTE, elf.PF_R, minNoteOff, noteSize, noteAlign)
	putNote(img[minNoteOff:], load+minCodeOff)
	copy(img[minCodeOff:], code)
	return img
}
