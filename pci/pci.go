package pci

import (
	"errors"
	"fmt"
	"sort"
)

// Addr names one PCI function: bus 0-255, device 0-31, function 0-7.
type Addr struct {
	Bus, Device, Function uint8
}

func (a Addr) String() string { return fmt.Sprintf("%02x:%02x.%x", a.Bus, a.Device, a.Function) }

func (a Addr) valid() bool { return a.Device < 32 && a.Function < 8 }

// Config reads and writes the 256-byte configuration space of functions.
// width is 1, 2 or 4 and off a multiple of it; callers in this package
// never do otherwise. Reading a function that does not exist returns all
// ones, as the hardware does.
type Config interface {
	ReadConfig(a Addr, off uint8, width int) uint32
	WriteConfig(a Addr, off uint8, width int, v uint32)
}

// Registers is a window of device registers: part of a memory BAR (MMIO)
// or of an I/O BAR (ports). Offsets are relative to the window; accesses
// are little-endian, at most 32 bits wide, and must lie inside Size. A
// driver checks offsets that come from the device before using them, so
// an access outside the window is a bug of the driver and panics.
type Registers interface {
	Size() uint64
	Read8(off uint64) uint8
	Read16(off uint64) uint16
	Read32(off uint64) uint32
	Write8(off uint64, v uint8)
	Write16(off uint64, v uint16)
	Write32(off uint64, v uint32)
}

// Host is a PCI host: configuration space plus a way to reach BARs.
type Host interface {
	Config
	// Map returns the registers a BAR decodes (memory or I/O). It fails for
	// a BAR the host cannot reach, such as one not assigned by firmware.
	Map(b BAR) (Registers, error)
}

// Header offsets and bits (PCI Local Bus 3.0, section 6.1).
const (
	RegVendor     = 0x00
	RegDevice     = 0x02
	RegCommand    = 0x04
	RegStatus     = 0x06
	RegRevision   = 0x08
	RegClass      = 0x09 // prog-if at 0x09, subclass 0x0a, class 0x0b
	RegHeaderType = 0x0e
	RegBAR0       = 0x10
	RegSubVendor  = 0x2c
	RegSubsystem  = 0x2e
	RegCapPtr     = 0x34

	CmdIO             = 1 << 0
	CmdMemory         = 1 << 1
	CmdBusMaster      = 1 << 2
	CmdInterruptOff   = 1 << 10 // INTx disable
	StatusCapList     = 1 << 4
	headerMultiFunc   = 0x80
	HeaderTypeNormal  = 0
	HeaderTypeBridge  = 1
	HeaderTypeCardBus = 2
)

// Device is one function found by Enumerate or Open. The identification
// fields are read once, when it is found.
type Device struct {
	Host Host
	Addr Addr

	Vendor, ID      uint16
	Revision        uint8
	Class           uint32 // class << 16 | subclass << 8 | prog-if
	HeaderType      uint8  // low 7 bits of the header type register
	MultiFunction   bool
	SubsystemVendor uint16 // header type 0 only
	Subsystem       uint16 // header type 0 only
}

func (d *Device) String() string {
	return fmt.Sprintf("pci %v [%04x:%04x]", d.Addr, d.Vendor, d.ID)
}

// ErrNoDevice is returned by Open when no function answers at an address.
var ErrNoDevice = errors.New("pci: no function at that address")

// Open reads the header of the function at a.
func Open(h Host, a Addr) (*Device, error) {
	if !a.valid() {
		return nil, fmt.Errorf("pci: address %v out of range", a)
	}
	d := probe(h, a)
	if d == nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDevice, a)
	}
	return d, nil
}

// probe reads the identification of the function at a (a valid address),
// or returns nil if none answers there. Enumerate calls it for each of
// the 8192 slots, most of them empty: no error is built for those.
func probe(h Host, a Addr) *Device {
	v := h.ReadConfig(a, RegVendor, 4)
	if uint16(v) == 0xffff || uint16(v) == 0 {
		return nil
	}
	d := &Device{Host: h, Addr: a, Vendor: uint16(v), ID: uint16(v >> 16)}
	rc := h.ReadConfig(a, RegRevision, 4)
	d.Revision = uint8(rc)
	d.Class = rc >> 8
	ht := uint8(h.ReadConfig(a, RegHeaderType, 1))
	d.HeaderType = ht &^ headerMultiFunc
	d.MultiFunction = ht&headerMultiFunc != 0
	if d.HeaderType == HeaderTypeNormal {
		s := h.ReadConfig(a, RegSubVendor, 4)
		d.SubsystemVendor, d.Subsystem = uint16(s), uint16(s>>16)
	}
	return d
}

// Enumerate scans every bus for functions: buses 0-255, devices 0-31, and
// functions 1-7 of devices whose function 0 says it is multi-function.
// The result is sorted by address.
func Enumerate(h Host) []*Device {
	var out []*Device
	for bus := 0; bus < 256; bus++ {
		for dev := uint8(0); dev < 32; dev++ {
			d0 := probe(h, Addr{uint8(bus), dev, 0})
			if d0 == nil {
				continue
			}
			out = append(out, d0)
			if !d0.MultiFunction {
				continue
			}
			for fn := uint8(1); fn < 8; fn++ {
				if d := probe(h, Addr{uint8(bus), dev, fn}); d != nil {
					out = append(out, d)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.less(out[j].Addr) })
	return out
}

func (a Addr) less(b Addr) bool {
	if a.Bus != b.Bus {
		return a.Bus < b.Bus
	}
	if a.Device != b.Device {
		return a.Device < b.Device
	}
	return a.Function < b.Function
}

// Find returns the functions of Enumerate with the given vendor and one of
// the given device IDs (any device ID if none are given).
func Find(h Host, vendor uint16, ids ...uint16) []*Device {
	var out []*Device
	for _, d := range Enumerate(h) {
		if d.Vendor != vendor {
			continue
		}
		ok := len(ids) == 0
		for _, id := range ids {
			ok = ok || d.ID == id
		}
		if ok {
			out = append(out, d)
		}
	}
	return out
}

// Read8, Read16 and Read32 read configuration space at off, which must be
// aligned to the width.
func (d *Device) Read8(off uint8) uint8 { return uint8(d.Host.ReadConfig(d.Addr, off, 1)) }
func (d *Device) Read16(off uint8) uint16 {
	return uint16(d.Host.ReadConfig(d.Addr, aligned(off, 2), 2))
}
func (d *Device) Read32(off uint8) uint32 { return d.Host.ReadConfig(d.Addr, aligned(off, 4), 4) }

// Write8, Write16 and Write32 write configuration space at off, which must
// be aligned to the width.
func (d *Device) Write8(off uint8, v uint8) { d.Host.WriteConfig(d.Addr, off, 1, uint32(v)) }
func (d *Device) Write16(off uint8, v uint16) {
	d.Host.WriteConfig(d.Addr, aligned(off, 2), 2, uint32(v))
}
func (d *Device) Write32(off uint8, v uint32) { d.Host.WriteConfig(d.Addr, aligned(off, 4), 4, v) }

func aligned(off uint8, w uint8) uint8 {
	if off%w != 0 {
		panic(fmt.Sprintf("pci: %d-byte configuration access at unaligned offset %#x", w, off))
	}
	return off
}

// Command returns the command register.
func (d *Device) Command() uint16 { return d.Read16(RegCommand) }

// SetCommand sets the bits of set and clears those of clear in the command
// register, leaving the others as they are.
func (d *Device) SetCommand(set, clear uint16) {
	c := d.Read16(RegCommand)
	d.Write16(RegCommand, (c&^clear)|set)
}

// EnableMemory turns on memory decoding and bus mastering (DMA), which a
// driver of an MMIO device needs both of.
func (d *Device) EnableMemory() { d.SetCommand(CmdMemory|CmdBusMaster, 0) }

// EnableIO turns on I/O decoding.
func (d *Device) EnableIO() { d.SetCommand(CmdIO, 0) }

// DisableBusMaster stops the function's DMA.
func (d *Device) DisableBusMaster() { d.SetCommand(0, CmdBusMaster) }
