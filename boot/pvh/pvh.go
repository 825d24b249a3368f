// Package pvh describes the boot information a PVH loader hands to the guest
// (Xen's public/arch-x86/hvm/start_info.h, version 1) and copies it out of the
// loader's memory into fixed-size Go values. It allocates nothing, so the boot
// code can call it before the Go runtime exists, and it validates everything:
// the loader's data is read through a caller-supplied accessor and every
// length is bounded.
package pvh

// Layout of struct hvm_start_info (56 bytes).
const (
	StartInfoMagic = 0x336ec578
	StartInfoSize  = 56

	offMagic         = 0
	offVersion       = 4
	offFlags         = 8
	offNrModules     = 12
	offModlistPaddr  = 16
	offCmdlinePaddr  = 24
	offRsdpPaddr     = 32
	offMemmapPaddr   = 40
	offMemmapEntries = 48
)

// Layout of struct hvm_memmap_table_entry (24 bytes).
const (
	MemmapEntrySize = 24
	offMemAddr      = 0
	offMemSize      = 8
	offMemType      = 16
)

// Memory map entry types (E820 numbering).
const (
	MemRAM      = 1
	MemReserved = 2
	MemACPI     = 3
	MemNVS      = 4
	MemUnusable = 5
	MemDisabled = 6
	MemPMEM     = 7
)

// Start info flags.
const (
	FlagPrivileged = 1 << 0
	FlagInitDomain = 1 << 1
)

// Limits of what is copied; longer data is truncated and flagged.
const (
	MaxCmdline = 2048
	MaxMemmap  = 64
)

// MemRegion is one entry of the physical memory map.
type MemRegion struct {
	Addr, Size uint64
	Type       uint32
}

// BootInfo is the copied boot information.
type BootInfo struct {
	Valid      bool // magic matched
	Version    uint32
	Flags      uint32
	RSDP       uint64
	Cmdline    [MaxCmdline]byte
	CmdlineLen int
	CmdlineCut bool // the loader's command line was longer than MaxCmdline
	Memmap     [MaxMemmap]MemRegion
	NMemmap    int
	MemmapCut  bool
}

// CmdlineString returns the command line as a string backed by b's array.
func (b *BootInfo) CmdlineBytes() []byte { return b.Cmdline[:b.CmdlineLen] }

// Regions returns the valid part of the memory map.
func (b *BootInfo) Regions() []MemRegion { return b.Memmap[:b.NMemmap] }

// Reader returns n bytes of physical memory at pa.
type Reader func(pa uintptr, n int) []byte

// Copy fills b from the start info at physical address pa. A zero pa or a
// wrong magic leaves b.Valid false.
func Copy(b *BootInfo, pa uintptr, read Reader) {
	*b = BootInfo{}
	if pa == 0 {
		return
	}
	si := read(pa, StartInfoSize)
	if len(si) < StartInfoSize || le32(si[offMagic:]) != StartInfoMagic {
		return
	}
	b.Valid = true
	b.Version = le32(si[offVersion:])
	b.Flags = le32(si[offFlags:])
	b.RSDP = le64(si[offRsdpPaddr:])
	if cp := le64(si[offCmdlinePaddr:]); cp != 0 {
		copyCmdline(b, uintptr(cp), read)
	}
	if b.Version >= 1 {
		mp := le64(si[offMemmapPaddr:])
		n := le32(si[offMemmapEntries:])
		if mp != 0 && n != 0 {
			copyMemmap(b, uintptr(mp), n, read)
		}
	}
}

func copyCmdline(b *BootInfo, pa uintptr, read Reader) {
	// Read up to MaxCmdline+1 bytes in page-bounded pieces so that a command
	// line near the end of RAM is not read past.
	n := 0
	for n <= MaxCmdline {
		chunk := 256 - int((pa+uintptr(n))%256)
		s := read(pa+uintptr(n), chunk)
		for _, c := range s {
			if c == 0 {
				b.CmdlineLen = n
				return
			}
			if n == MaxCmdline {
				b.CmdlineLen = n
				b.CmdlineCut = true
				return
			}
			b.Cmdline[n] = c
			n++
		}
		if len(s) == 0 {
			break
		}
	}
	b.CmdlineLen = n
}

func copyMemmap(b *BootInfo, pa uintptr, n uint32, read Reader) {
	if n > MaxMemmap {
		n = MaxMemmap
		b.MemmapCut = true
	}
	for i := uint32(0); i < n; i++ {
		e := read(pa+uintptr(i)*MemmapEntrySize, MemmapEntrySize)
		if len(e) < MemmapEntrySize {
			break
		}
		r := MemRegion{
			Addr: le64(e[offMemAddr:]),
			Size: le64(e[offMemSize:]),
			Type: le32(e[offMemType:]),
		}
		if r.Size == 0 || r.Addr+r.Size < r.Addr {
			continue // empty or wrapping: ignore
		}
		b.Memmap[b.NMemmap] = r
		b.NMemmap++
	}
}

// le32 and le64 decode little-endian values; encoding/binary is avoided to
// keep every image's dependency set minimal.
func le32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(le32(b)) | uint64(le32(b[4:]))<<32
}
