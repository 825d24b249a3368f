package pci

import (
	"errors"
	"fmt"
)

// Capability IDs (PCI Code and ID Assignment Specification).
const (
	CapPowerManagement = 0x01
	CapMSI             = 0x05
	CapVendor          = 0x09
	CapPCIe            = 0x10
	CapMSIX            = 0x11
)

// Capability is one entry of the capability list.
type Capability struct {
	ID     uint8
	Offset uint8 // of the capability's first byte (the ID) in config space
}

// ErrBadCapList is wrapped by errors about a malformed capability list.
var ErrBadCapList = errors.New("pci: malformed capability list")

// maxCaps bounds the walk: capabilities are at least a dword each and live
// in the 192 bytes after the header.
const maxCaps = (256 - 0x40) / 4

// Capabilities walks the capability list. Pointers have their two low
// bits masked off (they are reserved); a pointer into the 64-byte header,
// a pointer seen before (a loop) or a list longer than fits in
// configuration space is an error.
func (d *Device) Capabilities() ([]Capability, error) {
	if d.Read16(RegStatus)&StatusCapList == 0 {
		return nil, nil
	}
	var ptrReg uint8 = RegCapPtr
	if d.HeaderType == HeaderTypeCardBus {
		ptrReg = 0x14
	}
	var seen [256 / 4]bool
	var out []Capability
	for p := d.Read8(ptrReg) &^ 3; p != 0; {
		if p < 0x40 {
			return out, fmt.Errorf("%w: %v: pointer %#x into the header", ErrBadCapList, d, p)
		}
		if seen[p/4] {
			return out, fmt.Errorf("%w: %v: pointer %#x loops", ErrBadCapList, d, p)
		}
		if len(out) == maxCaps {
			return out, fmt.Errorf("%w: %v: more than %d capabilities", ErrBadCapList, d, maxCaps)
		}
		seen[p/4] = true
		w := d.Read16(p)
		out = append(out, Capability{ID: uint8(w), Offset: p})
		p = uint8(w>>8) &^ 3
	}
	return out, nil
}

// FindCapabilities returns the capabilities with the given ID, in list
// order.
func (d *Device) FindCapabilities(id uint8) ([]Capability, error) {
	all, err := d.Capabilities()
	if err != nil {
		return nil, err
	}
	var out []Capability
	for _, c := range all {
		if c.ID == id {
			out = append(out, c)
		}
	}
	return out, nil
}

// CapabilityBytes reads n bytes of configuration space from the start of
// c, or fails if they would run past its end (offset 255). Vendor
// capabilities are parsed from these bytes.
func (d *Device) CapabilityBytes(c Capability, n int) ([]byte, error) {
	if n < 0 || int(c.Offset)+n > 256 {
		return nil, fmt.Errorf("%w: %v: %d-byte capability at %#x runs past the configuration space", ErrBadCapList, d, n, c.Offset)
	}
	out := make([]byte, n)
	for i := 0; i < n; i += 4 {
		v := d.Read32(c.Offset + uint8(i))
		for j := 0; j < 4 && i+j < n; j++ {
			out[i+j] = byte(v >> (8 * j))
		}
	}
	return out, nil
}
