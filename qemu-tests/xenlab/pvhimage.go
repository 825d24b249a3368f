package xenlab

import "encoding/binary"

// MinimalPVHImage returns a tiny PVH kernel (an ELF32 executable of a few hundred bytes)
// that writes message to I/O port 0xE9 and executes "cli; hlt", which makes Xen power
// the domain off. It checks the lab's PVH path (domain builder, HAP, the 0xE9 console,
// shutdown reporting) independently of our own image builder. A trailing newline is added
// when missing because Xen prints a guest's 0xE9 output line by line.
func MinimalPVHImage(message string) []byte {
	if len(message) == 0 || message[len(message)-1] != '\n' {
		message += "\n"
	}
	const (
		loadAddr  = 0x100000 // physical load address of the whole file
		ehSize    = 52       // ELF32 header
		phSize    = 32       // ELF32 program header
		phNum     = 2        // PT_LOAD, PT_NOTE
		noteOff   = ehSize + phNum*phSize
		noteSize  = 12 + 4 + 4 // header, "Xen\0", 32-bit entry
		codeOff   = noteOff + noteSize
		xenNoteID = 18 // XEN_ELFNOTE_PHYS32_ENTRY
	)
	// 32-bit code, entered in flat protected mode with paging off (no stack needed):
	//   mov esi, msg; mov ecx, len; mov dx, 0xe9; rep outsb; cli; hlt; jmp hlt
	code := []byte{0xBE, 0, 0, 0, 0, 0xB9, 0, 0, 0, 0, 0x66, 0xBA, 0xE9, 0x00, 0xF3, 0x6E, 0xFA, 0xF4, 0xEB, 0xFD}
	msgOff := codeOff + len(code)
	binary.LittleEndian.PutUint32(code[1:], uint32(loadAddr+msgOff))
	binary.LittleEndian.PutUint32(code[6:], uint32(len(message)))
	total := msgOff + len(message)
	entry := uint32(loadAddr + codeOff)

	img := make([]byte, total)
	le := binary.LittleEndian
	copy(img, []byte{0x7F, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* LE */, 1 /* version */})
	le.PutUint16(img[16:], 2) // ET_EXEC
	le.PutUint16(img[18:], 3) // EM_386
	le.PutUint32(img[20:], 1) // EV_CURRENT
	le.PutUint32(img[24:], entry)
	le.PutUint32(img[28:], ehSize) // e_phoff
	le.PutUint16(img[40:], ehSize)
	le.PutUint16(img[42:], phSize)
	le.PutUint16(img[44:], phNum)
	le.PutUint16(img[46:], 40) // e_shentsize (no sections)

	ph := func(i int, typ, off, vaddr, size, flags, align uint32) {
		p := img[ehSize+i*phSize:]
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], off)
		le.PutUint32(p[8:], vaddr)
		le.PutUint32(p[12:], vaddr) // p_paddr
		le.PutUint32(p[16:], size)  // p_filesz
		le.PutUint32(p[20:], size)  // p_memsz
		le.PutUint32(p[24:], flags)
		le.PutUint32(p[28:], align)
	}
	ph(0, 1 /* PT_LOAD */, 0, loadAddr, uint32(total), 5 /* R+X */, 0x1000)
	ph(1, 4 /* PT_NOTE */, noteOff, loadAddr+noteOff, noteSize, 4 /* R */, 4)

	n := img[noteOff:]
	le.PutUint32(n[0:], 4) // namesz ("Xen\0")
	le.PutUint32(n[4:], 4) // descsz
	le.PutUint32(n[8:], xenNoteID)
	copy(n[12:], "Xen\x00")
	le.PutUint32(n[16:], entry)

	copy(img[codeOff:], code)
	copy(img[msgOff:], message)
	return img
}
