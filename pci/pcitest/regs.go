package pcitest

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/unikgo/unikgo/pci"
)

// Mem is plain register memory: what is written reads back.
type Mem struct {
	mu sync.Mutex
	b  []byte
}

// NewMem returns n bytes of zeroed registers.
func NewMem(n int) *Mem { return &Mem{b: make([]byte, n)} }

func (m *Mem) at(off uint64, w int) []byte {
	if off > uint64(len(m.b)) || uint64(w) > uint64(len(m.b))-off {
		panic(fmt.Sprintf("pcitest: %d-byte access at %#x outside %#x bytes of registers", w, off, len(m.b)))
	}
	return m.b[off : off+uint64(w)]
}

func (m *Mem) Size() uint64 { return uint64(len(m.b)) }
func (m *Mem) Read8(off uint64) uint8 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.at(off, 1)[0]
}
func (m *Mem) Read16(off uint64) uint16 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return binary.LittleEndian.Uint16(m.at(off, 2))
}
func (m *Mem) Read32(off uint64) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return binary.LittleEndian.Uint32(m.at(off, 4))
}
func (m *Mem) Write8(off uint64, v uint8) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.at(off, 1)[0] = v
}
func (m *Mem) Write16(off uint64, v uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	binary.LittleEndian.PutUint16(m.at(off, 2), v)
}
func (m *Mem) Write32(off uint64, v uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	binary.LittleEndian.PutUint32(m.at(off, 4), v)
}

// Mux lays register blocks out in one BAR. Accesses outside every block
// read zero and are dropped, like reserved space.
type Mux struct {
	size   uint64
	blocks []block
}

type block struct {
	off  uint64
	regs pci.Registers
}

// NewMux returns an empty BAR of size bytes.
func NewMux(size uint64) *Mux { return &Mux{size: size} }

// Add places regs at off. Blocks must not overlap.
func (x *Mux) Add(off uint64, regs pci.Registers) *Mux {
	x.blocks = append(x.blocks, block{off, regs})
	sort.Slice(x.blocks, func(i, j int) bool { return x.blocks[i].off < x.blocks[j].off })
	return x
}

func (x *Mux) find(off uint64, w uint64) (pci.Registers, uint64) {
	for _, b := range x.blocks {
		if off >= b.off && off-b.off+w <= b.regs.Size() {
			return b.regs, off - b.off
		}
	}
	return nil, 0
}

func (x *Mux) Size() uint64 { return x.size }
func (x *Mux) Read8(off uint64) uint8 {
	if r, o := x.find(off, 1); r != nil {
		return r.Read8(o)
	}
	return 0
}
func (x *Mux) Read16(off uint64) uint16 {
	if r, o := x.find(off, 2); r != nil {
		return r.Read16(o)
	}
	return 0
}
func (x *Mux) Read32(off uint64) uint32 {
	if r, o := x.find(off, 4); r != nil {
		return r.Read32(o)
	}
	return 0
}
func (x *Mux) Write8(off uint64, v uint8) {
	if r, o := x.find(off, 1); r != nil {
		r.Write8(o, v)
	}
}
func (x *Mux) Write16(off uint64, v uint16) {
	if r, o := x.find(off, 2); r != nil {
		r.Write16(o, v)
	}
}
func (x *Mux) Write32(off uint64, v uint32) {
	if r, o := x.find(off, 4); r != nil {
		r.Write32(o, v)
	}
}
