package pci

import (
	"errors"
	"fmt"
)

// MSI-X capability registers (PCI 3.0 section 6.8.2).
const (
	msixControl = 2 // message control, 16 bits
	msixTable   = 4 // table offset | BIR
	msixPBA     = 8 // pending bit array offset | BIR

	msixEnable   = 1 << 15
	msixFuncMask = 1 << 14
	msixSizeMask = 0x7ff

	msixEntrySize = 16
	msixAddrLo    = 0
	msixAddrHi    = 4
	msixData      = 8
	msixVecCtrl   = 12
	msixMasked    = 1
)

// ErrNoMSIX is returned by MSIX for a function without the capability.
var ErrNoMSIX = errors.New("pci: no MSI-X capability")

// Interrupt is a vector a device raises with an MSI message, delivered to
// Go code: *irq.Line through SystemInterrupt in an image, a fake in tests.
type Interrupt interface {
	// Message is the MSI address and data that raise the vector.
	Message() (addr uint64, data uint32)
	// C receives after the vector fired; wake-ups coalesce, so the driver
	// checks its device after each one.
	C() <-chan struct{}
	// Close frees the vector; the device must not raise it any more.
	Close() error
}

// MSIX is a function's MSI-X capability and table.
type MSIX struct {
	dev   *Device
	cap   uint8
	table Registers
	n     int
}

// MSIX finds the MSI-X capability, checks that its table lies inside a
// memory BAR and maps the table. It turns on memory decoding. Every
// entry is left masked until Route.
func (d *Device) MSIX() (*MSIX, error) {
	caps, err := d.FindCapabilities(CapMSIX)
	if err != nil {
		return nil, err
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("%w: %v", ErrNoMSIX, d)
	}
	c := caps[0].Offset
	if int(c)+12 > 256 {
		return nil, fmt.Errorf("%w: %v: MSI-X capability at %#x runs past the configuration space", ErrBadCapList, d, c)
	}
	ctrl := d.Read16(c + msixControl)
	n := int(ctrl&msixSizeMask) + 1
	t := d.Read32(c + msixTable)
	bir, off := int(t&7), uint64(t&^7)
	if bir >= d.NumBARs() {
		return nil, fmt.Errorf("%w: %v: MSI-X table in BAR%d", ErrBadCapList, d, bir)
	}
	regs, b, err := d.Map(bir)
	if err != nil {
		return nil, fmt.Errorf("pci: %v: MSI-X table: %w", d, err)
	}
	if !b.Memory() {
		return nil, fmt.Errorf("%w: %v: MSI-X table in I/O BAR%d", ErrBadCapList, d, bir)
	}
	table, err := Slice(regs, off, uint64(n)*msixEntrySize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: MSI-X table of %d entries at %#x: %v", ErrBadCapList, d, n, off, err)
	}
	m := &MSIX{dev: d, cap: c, table: table, n: n}
	for i := 0; i < n; i++ {
		m.Mask(i, true)
	}
	return m, nil
}

// Size is the number of table entries.
func (m *MSIX) Size() int { return m.n }

// Route points entry i at intr and unmasks it.
func (m *MSIX) Route(i int, intr Interrupt) error {
	if i < 0 || i >= m.n {
		return fmt.Errorf("pci: %v: MSI-X entry %d of %d", m.dev, i, m.n)
	}
	addr, data := intr.Message()
	e := uint64(i) * msixEntrySize
	m.table.Write32(e+msixVecCtrl, m.table.Read32(e+msixVecCtrl)|msixMasked)
	m.table.Write32(e+msixAddrLo, uint32(addr))
	m.table.Write32(e+msixAddrHi, uint32(addr>>32))
	m.table.Write32(e+msixData, data)
	m.table.Write32(e+msixVecCtrl, m.table.Read32(e+msixVecCtrl)&^msixMasked)
	return nil
}

// Mask masks or unmasks entry i.
func (m *MSIX) Mask(i int, masked bool) {
	if i < 0 || i >= m.n {
		return
	}
	e := uint64(i)*msixEntrySize + msixVecCtrl
	v := m.table.Read32(e)
	if masked {
		v |= msixMasked
	} else {
		v &^= msixMasked
	}
	m.table.Write32(e, v)
}

// Enable turns MSI-X on (and INTx off); Disable turns it off.
func (m *MSIX) Enable() {
	m.dev.SetCommand(CmdInterruptOff, 0)
	c := m.dev.Read16(m.cap + msixControl)
	m.dev.Write16(m.cap+msixControl, (c|msixEnable)&^msixFuncMask)
}

// Disable turns MSI-X off and masks every entry.
func (m *MSIX) Disable() {
	for i := 0; i < m.n; i++ {
		m.Mask(i, true)
	}
	c := m.dev.Read16(m.cap + msixControl)
	m.dev.Write16(m.cap+msixControl, c&^msixEnable)
}

// Enabled reports whether the enable bit is set.
func (m *MSIX) Enabled() bool { return m.dev.Read16(m.cap+msixControl)&msixEnable != 0 }
