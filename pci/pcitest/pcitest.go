// Package pcitest simulates a PCI host for host tests of drivers:
// functions with a configuration space in memory (with writable-bit
// masks), BARs that size like hardware and decode only while the command
// register says so, MSI-X tables, and an interrupt controller whose
// vectors are pci.Interrupt values that simulated devices raise through
// the MSI-X table.
package pcitest

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/pci"
)

// Host is a simulated PCI host. It implements pci.Host.
type Host struct {
	mu    sync.Mutex
	funcs map[pci.Addr]*Function

	// IRQs is the interrupt controller that MSI-X messages reach.
	IRQs *IRQs
	// ConfigReads counts configuration reads.
	ConfigReads atomic.Int64
}

var _ pci.Host = (*Host)(nil)

// NewHost returns an empty host.
func NewHost() *Host {
	return &Host{funcs: map[pci.Addr]*Function{}, IRQs: NewIRQs(0)}
}

// Add plugs f in at a.
func (h *Host) Add(a pci.Addr, f *Function) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f.host = h
	h.funcs[a] = f
}

// Remove unplugs the function at a: its configuration reads all ones and
// its BARs stop decoding.
func (h *Host) Remove(a pci.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.funcs[a]; f != nil {
		f.mu.Lock()
		f.removed = true
		f.mu.Unlock()
	}
	delete(h.funcs, a)
}

func (h *Host) get(a pci.Addr) *Function {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.funcs[a]
}

// ReadConfig implements pci.Config.
func (h *Host) ReadConfig(a pci.Addr, off uint8, width int) uint32 {
	h.ConfigReads.Add(1)
	checkAccess(off, width)
	f := h.get(a)
	if f == nil {
		return ones(width)
	}
	return f.readConfig(off, width)
}

// WriteConfig implements pci.Config.
func (h *Host) WriteConfig(a pci.Addr, off uint8, width int, v uint32) {
	checkAccess(off, width)
	if f := h.get(a); f != nil {
		f.writeConfig(off, width, v)
	}
}

func checkAccess(off uint8, width int) {
	if (width != 1 && width != 2 && width != 4) || int(off)%width != 0 {
		panic(fmt.Sprintf("pcitest: %d-byte configuration access at %#x", width, off))
	}
}

func ones(width int) uint32 {
	if width == 4 {
		return 0xffffffff
	}
	return 1<<(8*width) - 1
}

// Map implements pci.Host: it finds the function whose BAR decodes b.
func (h *Host) Map(b pci.BAR) (pci.Registers, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.funcs {
		f.mu.Lock()
		sb := &f.bars[b.Index]
		ok := sb.kind == b.Kind && sb.addr == b.Addr && sb.size == b.Size && sb.regs != nil
		f.mu.Unlock()
		if ok {
			return &decoded{f: f, bar: b.Index, regs: sb.regs, size: b.Size}, nil
		}
	}
	return nil, fmt.Errorf("pcitest: nothing decodes %v", b)
}

// decoded passes accesses to a BAR's registers while the function decodes
// it (command register and BAR address unchanged); otherwise reads return
// all ones and writes are dropped, as on a bus.
type decoded struct {
	f    *Function
	bar  int
	regs pci.Registers
	size uint64
}

func (d *decoded) on(off, width uint64) bool {
	if off > d.size || width > d.size-off {
		panic(fmt.Sprintf("pcitest: %d-byte access at %#x outside a %#x-byte BAR", width, off, d.size))
	}
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if d.f.removed {
		return false
	}
	cmd := binary.LittleEndian.Uint16(d.f.cfg[pci.RegCommand:])
	if d.f.bars[d.bar].kind == pci.BARIO {
		return cmd&pci.CmdIO != 0
	}
	return cmd&pci.CmdMemory != 0
}

func (d *decoded) Size() uint64 { return d.size }
func (d *decoded) Read8(off uint64) uint8 {
	if !d.on(off, 1) {
		return 0xff
	}
	return d.regs.Read8(off)
}
func (d *decoded) Read16(off uint64) uint16 {
	if !d.on(off, 2) {
		return 0xffff
	}
	return d.regs.Read16(off)
}
func (d *decoded) Read32(off uint64) uint32 {
	if !d.on(off, 4) {
		return 0xffffffff
	}
	return d.regs.Read32(off)
}
func (d *decoded) Write8(off uint64, v uint8) {
	if d.on(off, 1) {
		d.regs.Write8(off, v)
	}
}
func (d *decoded) Write16(off uint64, v uint16) {
	if d.on(off, 2) {
		d.regs.Write16(off, v)
	}
}
func (d *decoded) Write32(off uint64, v uint32) {
	if d.on(off, 4) {
		d.regs.Write32(off, v)
	}
}

// Function is one simulated PCI function with a type 0 header.
type Function struct {
	mu      sync.Mutex
	host    *Host
	cfg     [256]byte
	wmask   [256]byte // bits a driver may change
	bars    [6]simBAR
	capEnd  int   // where the next capability goes
	lastCap uint8 // offset of the last capability, 0 if none
	removed bool

	msixCap   uint8
	msix      *MSIXTable
	onControl func() // called after a write to the MSI-X control register
}

type simBAR struct {
	kind     pci.BARKind
	addr     uint64
	size     uint64
	prefetch bool
	regs     pci.Registers
	upper    bool // this slot is the upper half of the previous 64-bit BAR

	raw            bool // a register with a fixed writable mask (SetRawBAR)
	rawVal, rawMsk uint32
}

// SetRawBAR makes BAR slot i a bare register that starts as initial and
// keeps only the bits of mask from writes, for tests of malformed BARs.
func (f *Function) SetRawBAR(i int, initial, mask uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bars[i] = simBAR{raw: true, rawVal: initial, rawMsk: mask}
}

// NewFunction returns a function with the given IDs and class (class <<
// 16 | subclass << 8 | prog-if): no BARs and no capabilities; the command
// register's I/O, memory, bus master and INTx-disable bits are writable.
func NewFunction(vendor, device uint16, class uint32) *Function {
	f := &Function{capEnd: 0x40}
	binary.LittleEndian.PutUint16(f.cfg[pci.RegVendor:], vendor)
	binary.LittleEndian.PutUint16(f.cfg[pci.RegDevice:], device)
	binary.LittleEndian.PutUint32(f.cfg[pci.RegRevision:], class<<8|1)
	binary.LittleEndian.PutUint16(f.wmask[pci.RegCommand:], pci.CmdIO|pci.CmdMemory|pci.CmdBusMaster|pci.CmdInterruptOff)
	return f
}

// SetMultiFunction sets or clears bit 7 of the header type.
func (f *Function) SetMultiFunction(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.cfg[pci.RegHeaderType] |= 0x80
	} else {
		f.cfg[pci.RegHeaderType] &^= 0x80
	}
}

// SetBAR installs BAR i: kind, the address firmware assigned, a power of
// two size and the registers it decodes (nil for a BAR nothing maps). A
// 64-bit BAR also takes slot i+1.
func (f *Function) SetBAR(i int, kind pci.BARKind, addr, size uint64, regs pci.Registers) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bars[i] = simBAR{kind: kind, addr: addr &^ (size - 1), size: size, regs: regs}
	if kind == pci.BARMemory64 {
		f.bars[i+1] = simBAR{upper: true}
	}
}

// SetPrefetchable marks memory BAR i prefetchable.
func (f *Function) SetPrefetchable(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bars[i].prefetch = true
}

// barRead returns the dword of BAR slot i as hardware shows it.
func (f *Function) barRead(i int) uint32 {
	b := &f.bars[i]
	if b.raw {
		return b.rawVal
	}
	if b.upper {
		lo := &f.bars[i-1]
		return uint32(lo.addr >> 32)
	}
	switch b.kind {
	case pci.BARIO:
		return uint32(b.addr) | 1
	case pci.BARMemory32:
		v := uint32(b.addr)
		if b.prefetch {
			v |= 8
		}
		return v
	case pci.BARMemory64:
		v := uint32(b.addr) | 4
		if b.prefetch {
			v |= 8
		}
		return v
	}
	return 0
}

// barWrite stores an address into BAR slot i, keeping the bits the size
// hardwires to zero.
func (f *Function) barWrite(i int, v uint32) {
	b := &f.bars[i]
	if b.raw {
		b.rawVal = v&b.rawMsk | b.rawVal&^b.rawMsk
		return
	}
	if b.upper {
		lo := &f.bars[i-1]
		lo.addr = (uint64(v)<<32 | lo.addr&0xffffffff) &^ (lo.size - 1)
		return
	}
	switch b.kind {
	case pci.BARIO:
		b.addr = uint64(v&^3) & ^(b.size - 1) & 0xffff
	case pci.BARMemory32:
		b.addr = uint64(v&^0xf) &^ (b.size - 1)
	case pci.BARMemory64:
		b.addr = (b.addr&^0xffffffff | uint64(v&^0xf)) &^ (b.size - 1)
	}
}

func (f *Function) readConfig(off uint8, width int) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ones(width)
	}
	var dw [4]byte
	base := off &^ 3
	if base >= pci.RegBAR0 && base < pci.RegBAR0+24 {
		binary.LittleEndian.PutUint32(dw[:], f.barRead(int(base-pci.RegBAR0)/4))
	} else {
		copy(dw[:], f.cfg[base:int(base)+4])
	}
	v := binary.LittleEndian.Uint32(dw[:]) >> (8 * (off & 3))
	return v & ones(width)
}

func (f *Function) writeConfig(off uint8, width int, v uint32) {
	f.mu.Lock()
	if f.removed {
		f.mu.Unlock()
		return
	}
	base := off &^ 3
	if base >= pci.RegBAR0 && base < pci.RegBAR0+24 {
		i := int(base-pci.RegBAR0) / 4
		cur := f.barRead(i)
		sh := 8 * uint32(off&3)
		m := ones(width) << sh
		f.barWrite(i, cur&^m|(v<<sh)&m)
		f.mu.Unlock()
		return
	}
	for k := 0; k < width; k++ {
		o := int(off) + k
		b := byte(v >> (8 * k))
		f.cfg[o] = f.cfg[o]&^f.wmask[o] | b&f.wmask[o]
	}
	hook := f.onControl
	touched := f.msixCap != 0 && int(off) <= int(f.msixCap)+3 && int(off)+width > int(f.msixCap)+2
	f.mu.Unlock()
	if touched && hook != nil {
		hook()
	}
}

// AddCapability appends a capability with the given ID and body (the
// bytes after the ID and next pointer) to the list, dword aligned, sets
// the status register's capability bit and returns its offset. writable
// is the mask of bits in the body a driver may change (nil: none).
func (f *Function) AddCapability(id uint8, body, writable []byte) uint8 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addCapLocked(id, body, writable)
}

func (f *Function) addCapLocked(id uint8, body, writable []byte) uint8 {
	n := 2 + len(body)
	if f.capEnd+n > 256 {
		panic("pcitest: capabilities overflow configuration space")
	}
	off := uint8(f.capEnd)
	f.cfg[off] = id
	f.cfg[off+1] = 0
	copy(f.cfg[int(off)+2:], body)
	copy(f.wmask[int(off)+2:], writable)
	if f.lastCap == 0 {
		f.cfg[pci.RegCapPtr] = off
	} else {
		f.cfg[f.lastCap+1] = off
	}
	f.lastCap = off
	f.cfg[pci.RegStatus] |= pci.StatusCapList
	f.capEnd = (int(off) + n + 3) &^ 3
	return off
}

// Poke writes raw bytes into configuration space, whatever the writable
// mask, for tests that plant hostile values.
func (f *Function) Poke(off uint8, b ...byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.cfg[off:], b)
}

// Peek returns a copy of configuration byte off.
func (f *Function) Peek(off uint8) byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg[off]
}

// Command is the command register.
func (f *Function) Command() uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return binary.LittleEndian.Uint16(f.cfg[pci.RegCommand:])
}

// BARAddr is the address BAR i currently holds.
func (f *Function) BARAddr(i int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bars[i].addr
}

// IRQs is a simulated interrupt controller: it hands out vectors as
// pci.Interrupt values, each with a distinct MSI message, and delivers
// messages that devices write.
type IRQs struct {
	mu    sync.Mutex
	next  uint32
	limit int
	lines map[uint32]*Line
}

// NewIRQs returns a controller that allows limit live vectors (0: no
// limit).
func NewIRQs(limit int) *IRQs {
	return &IRQs{next: 0x30, limit: limit, lines: map[uint32]*Line{}}
}

// msiAddr is the x86 MSI address window every message uses.
const msiAddr = 0xfee00000

// SetLimit changes how many live vectors Alloc allows (0: no limit).
func (c *IRQs) SetLimit(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = n
}

// Alloc allocates a vector. It has the signature drivers take for
// allocating interrupts.
func (c *IRQs) Alloc() (pci.Interrupt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && len(c.lines) >= c.limit {
		return nil, fmt.Errorf("pcitest: no free interrupt vectors (%d live)", len(c.lines))
	}
	l := &Line{c: c, data: c.next, ch: make(chan struct{}, 1)}
	c.next++
	c.lines[l.data] = l
	return l, nil
}

// Live returns the number of vectors not closed.
func (c *IRQs) Live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Deliver raises the vector that owns the message; it reports whether
// one did.
func (c *IRQs) Deliver(addr uint64, data uint32) bool {
	c.mu.Lock()
	l := c.lines[data]
	c.mu.Unlock()
	if l == nil || addr != msiAddr {
		return false
	}
	l.Fire()
	return true
}

// Line is a simulated vector.
type Line struct {
	c     *IRQs
	data  uint32
	ch    chan struct{}
	Fired atomic.Int64
}

// Message implements pci.Interrupt.
func (l *Line) Message() (uint64, uint32) { return msiAddr, l.data }

// C implements pci.Interrupt.
func (l *Line) C() <-chan struct{} { return l.ch }

// Fire raises the line (wake-ups coalesce).
func (l *Line) Fire() {
	l.Fired.Add(1)
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

// Wait waits for the line or ctx.
func (l *Line) Wait(ctx context.Context) error {
	select {
	case <-l.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements pci.Interrupt.
func (l *Line) Close() error {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.c.lines[l.data] != l {
		return fmt.Errorf("pcitest: vector %#x closed twice", l.data)
	}
	delete(l.c.lines, l.data)
	return nil
}
