package pvh

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// memory simulates guest-physical memory for Copy.
type memory map[uintptr][]byte

func (m memory) read(pa uintptr, n int) []byte {
	for base, b := range m {
		if pa >= base && pa < base+uintptr(len(b)) {
			off := int(pa - base)
			if off+n > len(b) {
				n = len(b) - off
			}
			return b[off : off+n]
		}
	}
	return nil
}

func startInfo(version uint32, cmdline, memmap uint64, entries uint32) []byte {
	b := make([]byte, StartInfoSize)
	binary.LittleEndian.PutUint32(b[offMagic:], StartInfoMagic)
	binary.LittleEndian.PutUint32(b[offVersion:], version)
	binary.LittleEndian.PutUint32(b[offFlags:], FlagPrivileged)
	binary.LittleEndian.PutUint64(b[offCmdlinePaddr:], cmdline)
	binary.LittleEndian.PutUint64(b[offRsdpPaddr:], 0xe0000)
	binary.LittleEndian.PutUint64(b[offMemmapPaddr:], memmap)
	binary.LittleEndian.PutUint32(b[offMemmapEntries:], entries)
	return b
}

func memmap(rs ...MemRegion) []byte {
	b := make([]byte, len(rs)*MemmapEntrySize)
	for i, r := range rs {
		e := b[i*MemmapEntrySize:]
		binary.LittleEndian.PutUint64(e[offMemAddr:], r.Addr)
		binary.LittleEndian.PutUint64(e[offMemSize:], r.Size)
		binary.LittleEndian.PutUint32(e[offMemType:], r.Type)
	}
	return b
}

func TestLayout(t *testing.T) {
	got := []int{StartInfoSize, offMagic, offVersion, offFlags, offNrModules, offModlistPaddr, offCmdlinePaddr,
		offRsdpPaddr, offMemmapPaddr, offMemmapEntries, MemmapEntrySize, offMemAddr, offMemSize, offMemType}
	want := []int{56, 0, 4, 8, 12, 16, 24, 32, 40, 48, 24, 0, 8, 16} // xen-abi.md, PVH entry
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
	if StartInfoMagic != 0x336ec578 {
		t.Errorf("magic %#x", StartInfoMagic)
	}
}

func TestCopy(t *testing.T) {
	ram := []MemRegion{{0, 0x9fc00, MemRAM}, {0xf0000, 0x10000, MemReserved}, {0x100000, 0x7f00000, MemRAM}}
	long := make([]byte, MaxCmdline+10)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name        string
		mem         memory
		pa          uintptr
		wantValid   bool
		wantCmdline string
		wantCut     bool
		wantRegions []MemRegion
	}{
		{name: "absent", mem: memory{}, pa: 0},
		{name: "bad magic", mem: memory{0x6000: make([]byte, StartInfoSize)}, pa: 0x6000},
		{name: "v1 with cmdline and memmap", mem: memory{
			0x6000: startInfo(1, 0x7000, 0x8000, 3),
			0x7000: []byte("unikgo.verbose hello a b\x00junk"),
			0x8000: memmap(ram...),
		}, pa: 0x6000, wantValid: true, wantCmdline: "unikgo.verbose hello a b", wantRegions: ram},
		{name: "v0 ignores the memmap fields", mem: memory{
			0x6000: startInfo(0, 0, 0x8000, 3),
			0x8000: memmap(ram...),
		}, pa: 0x6000, wantValid: true},
		{name: "overlong cmdline is cut", mem: memory{
			0x6000: startInfo(1, 0x7000, 0, 0),
			0x7000: append(long, 0),
		}, pa: 0x6000, wantValid: true, wantCmdline: string(long[:MaxCmdline]), wantCut: true},
		{name: "cmdline running off memory", mem: memory{
			0x6000: startInfo(1, 0x7000, 0, 0),
			0x7000: []byte("no terminator"),
		}, pa: 0x6000, wantValid: true, wantCmdline: "no terminator"},
		{name: "empty and wrapping regions dropped", mem: memory{
			0x6000: startInfo(1, 0, 0x8000, 3),
			0x8000: memmap(MemRegion{0x1000, 0, MemRAM}, MemRegion{^uint64(0) - 10, 100, MemRAM}, MemRegion{0x100000, 0x1000, MemRAM}),
		}, pa: 0x6000, wantValid: true, wantRegions: []MemRegion{{0x100000, 0x1000, MemRAM}}},
		{name: "memmap entries past memory", mem: memory{
			0x6000: startInfo(1, 0, 0x8000, 1000),
			0x8000: memmap(ram[:2]...),
		}, pa: 0x6000, wantValid: true, wantRegions: ram[:2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b BootInfo
			Copy(&b, tt.pa, tt.mem.read)
			if b.Valid != tt.wantValid {
				t.Fatalf("Valid = %v, want %v", b.Valid, tt.wantValid)
			}
			if got := string(b.CmdlineBytes()); got != tt.wantCmdline || b.CmdlineCut != tt.wantCut {
				t.Errorf("cmdline %q cut %v, want %q cut %v", got, b.CmdlineCut, tt.wantCmdline, tt.wantCut)
			}
			if diff := cmp.Diff(tt.wantRegions, b.Regions(), cmp.Comparer(func(a, b []MemRegion) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); diff != "" {
				t.Errorf("regions (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzCopy feeds arbitrary bytes as start info, command line and memory
// map: Copy must never panic, and its results stay within its bounds.
func FuzzCopy(f *testing.F) {
	f.Add(startInfo(1, 0x7000, 0x8000, 2), []byte("hello\x00"), memmap(MemRegion{0x100000, 0x1000, MemRAM}))
	f.Add(startInfo(0, 0, 0, 0), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, si, cmd, mm []byte) {
		m := memory{0x6000: si, 0x7000: cmd, 0x8000: mm}
		var b BootInfo
		Copy(&b, 0x6000, m.read)
		if b.CmdlineLen > MaxCmdline || b.NMemmap > MaxMemmap {
			t.Fatalf("bounds exceeded: cmdline %d, memmap %d", b.CmdlineLen, b.NMemmap)
		}
	})
}
