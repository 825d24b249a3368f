package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Vendor capability types (4.1.4, struct virtio_pci_cap cfg_type).
const (
	CapCommonCfg = 1
	CapNotifyCfg = 2
	CapISRCfg    = 3
	CapDeviceCfg = 4
	CapPCICfg    = 5
)

// Cap is one parsed virtio_pci_cap (4.1.4): a structure of Length bytes at
// Offset in BAR. NotifyMultiplier is set for CapNotifyCfg
// (virtio_pci_notify_cap, 4.1.4.4).
type Cap struct {
	Type             uint8
	BAR              uint8
	Offset, Length   uint32
	NotifyMultiplier uint32
}

// capLen is the size of struct virtio_pci_cap; the notify capability adds
// a 32-bit multiplier.
const (
	capLen       = 16
	notifyCapLen = 20
)

// ErrBadCap is wrapped by errors about malformed virtio capabilities.
var ErrBadCap = errors.New("virtio: malformed virtio PCI capability")

// ParseCap parses a vendor capability from its bytes in configuration
// space, starting at its ID byte (b may run on past it). It checks the
// cap_len byte against the structure's size and the BAR number, and that
// Offset+Length does not overflow; whether the range fits the BAR is for
// the caller, who knows the BAR.
func ParseCap(b []byte) (Cap, error) {
	if len(b) < capLen {
		return Cap{}, fmt.Errorf("%w: %d bytes, need %d", ErrBadCap, len(b), capLen)
	}
	c := Cap{
		Type:   b[3],
		BAR:    b[4],
		Offset: binary.LittleEndian.Uint32(b[8:]),
		Length: binary.LittleEndian.Uint32(b[12:]),
	}
	need := capLen
	if c.Type == CapNotifyCfg {
		need = notifyCapLen
	}
	if int(b[2]) < need || len(b) < need {
		return Cap{}, fmt.Errorf("%w: type %d with cap_len %d, need %d", ErrBadCap, c.Type, b[2], need)
	}
	if c.BAR > 5 {
		return Cap{}, fmt.Errorf("%w: type %d in BAR %d", ErrBadCap, c.Type, c.BAR)
	}
	if uint64(c.Offset)+uint64(c.Length) > 1<<32 {
		return Cap{}, fmt.Errorf("%w: type %d at %#x+%#x wraps", ErrBadCap, c.Type, c.Offset, c.Length)
	}
	if c.Type == CapNotifyCfg {
		c.NotifyMultiplier = binary.LittleEndian.Uint32(b[16:])
	}
	return c, nil
}
