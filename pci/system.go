package pci

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/unikgo/unikgo/kernel/irq"
	"github.com/unikgo/unikgo/x86"
)

// Configuration mechanism #1 ports.
const (
	portConfigAddr = 0xcf8
	portConfigData = 0xcfc
)

// identityTop is the end of the memory below which a unikgo image maps
// MMIO at its physical address.
const identityTop = 4 << 30

// ErrUnavailable means the program is not running in a unikgo image, where
// port I/O and MMIO are reachable from Go code.
var ErrUnavailable = errors.New("pci: port I/O and MMIO exist only inside a unikgo image")

type system struct {
	mu sync.Mutex // orders the address and data cycles of config accesses
}

var sys system

// System returns the machine's PCI host: configuration mechanism #1 and
// identity-mapped BARs. It is available only in a unikgo image (it checks
// for the kernel's /dev/unikgo directory, since port I/O from a Linux
// process would fault).
func System() (Host, error) {
	if _, err := os.Stat("/dev/unikgo"); err != nil {
		return nil, ErrUnavailable
	}
	return &sys, nil
}

func cf8(a Addr, off uint8) uint32 {
	return 1<<31 | uint32(a.Bus)<<16 | uint32(a.Device&31)<<11 | uint32(a.Function&7)<<8 | uint32(off&0xfc)
}

func (s *system) ReadConfig(a Addr, off uint8, width int) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	x86.OutL(portConfigAddr, cf8(a, off))
	port := uint16(portConfigData) + uint16(off&3)
	switch width {
	case 1:
		return uint32(x86.InB(port))
	case 2:
		return uint32(x86.InW(port))
	default:
		return x86.InL(port)
	}
}

func (s *system) WriteConfig(a Addr, off uint8, width int, v uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x86.OutL(portConfigAddr, cf8(a, off))
	port := uint16(portConfigData) + uint16(off&3)
	switch width {
	case 1:
		x86.OutB(port, uint8(v))
	case 2:
		x86.OutW(port, uint16(v))
	default:
		x86.OutL(port, v)
	}
}

func (s *system) Map(b BAR) (Registers, error) {
	switch b.Kind {
	case BARIO:
		if b.Addr == 0 {
			return nil, fmt.Errorf("pci: %v was not assigned ports by the firmware", b)
		}
		return &ports{base: uint16(b.Addr), size: b.Size}, nil
	case BARMemory32, BARMemory64:
		if b.Addr == 0 {
			return nil, fmt.Errorf("pci: %v was not assigned an address by the firmware", b)
		}
		if b.Addr >= identityTop || b.Size > identityTop-b.Addr {
			return nil, fmt.Errorf("pci: %v lies above 4 GiB, outside the identity map", b)
		}
		return &mmio{base: uintptr(b.Addr), size: b.Size}, nil
	}
	return nil, fmt.Errorf("pci: %v decodes nothing", b)
}

// ports is an I/O BAR.
type ports struct {
	base uint16
	size uint64
}

func (p *ports) port(off, width uint64) uint16 {
	if off > p.size || width > p.size-off {
		panic(fmt.Sprintf("pci: %d-byte port access at %#x outside a %#x-byte BAR", width, off, p.size))
	}
	return p.base + uint16(off)
}

func (p *ports) Size() uint64                 { return p.size }
func (p *ports) Read8(off uint64) uint8       { return x86.InB(p.port(off, 1)) }
func (p *ports) Read16(off uint64) uint16     { return x86.InW(p.port(off, 2)) }
func (p *ports) Read32(off uint64) uint32     { return x86.InL(p.port(off, 4)) }
func (p *ports) Write8(off uint64, v uint8)   { x86.OutB(p.port(off, 1), v) }
func (p *ports) Write16(off uint64, v uint16) { x86.OutW(p.port(off, 2), v) }
func (p *ports) Write32(off uint64, v uint32) { x86.OutL(p.port(off, 4), v) }

// mmio is a memory BAR at its identity-mapped address. Accesses go
// through assembly so each is exactly one load or store of its width,
// never merged, split or reordered by the compiler.
type mmio struct {
	base uintptr
	size uint64
}

func (m *mmio) at(off, width uint64) uintptr {
	if off > m.size || width > m.size-off {
		panic(fmt.Sprintf("pci: %d-byte MMIO access at %#x outside a %#x-byte BAR", width, off, m.size))
	}
	return m.base + uintptr(off)
}

func (m *mmio) Size() uint64                 { return m.size }
func (m *mmio) Read8(off uint64) uint8       { return mmioRead8(m.at(off, 1)) }
func (m *mmio) Read16(off uint64) uint16     { return mmioRead16(m.at(off, 2)) }
func (m *mmio) Read32(off uint64) uint32     { return mmioRead32(m.at(off, 4)) }
func (m *mmio) Write8(off uint64, v uint8)   { mmioWrite8(m.at(off, 1), v) }
func (m *mmio) Write16(off uint64, v uint16) { mmioWrite16(m.at(off, 2), v) }
func (m *mmio) Write32(off uint64, v uint32) { mmioWrite32(m.at(off, 4), v) }

// Implemented in mmio_amd64.s.
func mmioRead8(p uintptr) uint8
func mmioRead16(p uintptr) uint16
func mmioRead32(p uintptr) uint32
func mmioWrite8(p uintptr, v uint8)
func mmioWrite16(p uintptr, v uint16)
func mmioWrite32(p uintptr, v uint32)

// line adapts *irq.Line to Interrupt.
type line struct{ *irq.Line }

func (l line) Message() (uint64, uint32) { return l.MSI.Addr, l.MSI.Data }

// SystemInterrupt allocates a kernel interrupt vector (kernel/irq) as an
// Interrupt.
func SystemInterrupt() (Interrupt, error) {
	l, err := irq.Alloc()
	if err != nil {
		return nil, err
	}
	return line{l}, nil
}
