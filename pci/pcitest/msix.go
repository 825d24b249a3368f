package pcitest

import (
	"encoding/binary"

	"github.com/unikgo/unikgo/pci"
)

// MSIXTable is a simulated MSI-X table (16 bytes an entry). Entries start
// masked. Place it in a BAR with a Mux at the offset given to AddMSIX.
type MSIXTable struct {
	*Mem
	f       *Function
	n       int
	pending []bool
}

// AddMSIX adds an MSI-X capability with n entries whose table is at
// offset tableOff of BAR bir (and the PBA right after it), and returns
// the table.
func (f *Function) AddMSIX(n int, bir int, tableOff uint32) *MSIXTable {
	t := &MSIXTable{Mem: NewMem(n * 16), f: f, n: n, pending: make([]bool, n)}
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(t.b[i*16+12:], 1)
	}
	var body [10]byte
	binary.LittleEndian.PutUint16(body[0:], uint16(n-1))
	binary.LittleEndian.PutUint32(body[2:], tableOff|uint32(bir))
	binary.LittleEndian.PutUint32(body[6:], (tableOff+uint32(n*16)+7)&^7|uint32(bir))
	writable := []byte{0, 0xc0}
	f.mu.Lock()
	f.msixCap = f.addCapLocked(pci.CapMSIX, body[:], writable)
	f.msix = t
	f.onControl = t.flush
	f.mu.Unlock()
	return t
}

// Write32 passes the write on and delivers a pending message that an
// unmask releases.
func (t *MSIXTable) Write32(off uint64, v uint32) {
	t.Mem.Write32(off, v)
	if off%16 == 12 && v&1 == 0 {
		t.flush()
	}
}

// Entry returns entry i's message and mask bit.
func (t *MSIXTable) Entry(i int) (addr uint64, data uint32, masked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.b[i*16:]
	return uint64(binary.LittleEndian.Uint32(e[4:]))<<32 | uint64(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])&1 != 0
}

// control returns whether MSI-X is enabled and whether the function mask
// is set.
func (t *MSIXTable) control() (enabled, funcMasked bool) {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	c := binary.LittleEndian.Uint16(t.f.cfg[t.f.msixCap+2:])
	return c&0x8000 != 0, c&0x4000 != 0
}

// Enabled reports whether the driver turned MSI-X on.
func (t *MSIXTable) Enabled() bool {
	e, _ := t.control()
	return e
}

// Raise has the device signal entry i: the message goes out if MSI-X is
// on and neither the function nor the entry is masked, and is held
// pending otherwise (as the PBA does) until unmasked. It reports whether
// a vector received it.
func (t *MSIXTable) Raise(i int) bool {
	if i < 0 || i >= t.n {
		return false
	}
	en, fm := t.control()
	addr, data, masked := t.Entry(i)
	if !en {
		return false
	}
	if fm || masked {
		t.mu.Lock()
		t.pending[i] = true
		t.mu.Unlock()
		return false
	}
	return t.f.host.IRQs.Deliver(addr, data)
}

// flush delivers pending messages that are no longer masked.
func (t *MSIXTable) flush() {
	for i := 0; i < t.n; i++ {
		t.mu.Lock()
		p := t.pending[i]
		t.pending[i] = false
		t.mu.Unlock()
		if p {
			t.Raise(i)
		}
	}
}
