package pci

import (
	"errors"
	"fmt"
)

// BARKind is what a base address register decodes.
type BARKind uint8

const (
	BARNone     BARKind = iota // not implemented (reads back zero)
	BARMemory32                // 32-bit memory
	BARMemory64                // 64-bit memory (uses this BAR and the next)
	BARIO                      // I/O ports
)

func (k BARKind) String() string {
	switch k {
	case BARNone:
		return "none"
	case BARMemory32:
		return "mem32"
	case BARMemory64:
		return "mem64"
	case BARIO:
		return "io"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// BAR is one decoded base address register.
type BAR struct {
	Index        int // 0-5
	Kind         BARKind
	Addr         uint64 // bus address (physical for memory, port for I/O)
	Size         uint64
	Prefetchable bool
}

// Memory reports whether the BAR decodes memory.
func (b BAR) Memory() bool { return b.Kind == BARMemory32 || b.Kind == BARMemory64 }

func (b BAR) String() string {
	return fmt.Sprintf("BAR%d %v %#x+%#x", b.Index, b.Kind, b.Addr, b.Size)
}

// ErrBadBAR is wrapped by errors about BARs whose registers make no sense.
var ErrBadBAR = errors.New("pci: malformed BAR")

// NumBARs is how many BARs the function's header type has: 6 for a
// normal function, 2 for a bridge, none otherwise.
func (d *Device) NumBARs() int {
	switch d.HeaderType {
	case HeaderTypeNormal:
		return 6
	case HeaderTypeBridge:
		return 2
	}
	return 0
}

// BARs decodes and sizes every BAR of the function. The upper half of a
// 64-bit BAR is not listed. Decoding is turned off while sizing and the
// command register restored afterwards, so call this before the device
// is in use.
func (d *Device) BARs() ([]BAR, error) {
	var out []BAR
	n := d.NumBARs()
	for i := 0; i < n; i++ {
		b, err := d.BAR(i)
		if err != nil {
			return nil, err
		}
		if b.Kind != BARNone {
			out = append(out, b)
		}
		if b.Kind == BARMemory64 {
			i++
		}
	}
	return out, nil
}

// BAR decodes and sizes BAR i (see BARs). An unimplemented BAR has Kind
// BARNone. For the upper half of a 64-bit BAR, BAR returns what that
// register looks like on its own, which is meaningless; use BARs.
func (d *Device) BAR(i int) (BAR, error) {
	if i < 0 || i >= d.NumBARs() {
		return BAR{}, fmt.Errorf("pci: %v has no BAR%d", d, i)
	}
	off := uint8(RegBAR0 + 4*i)
	cmd := d.Read16(RegCommand)
	d.Write16(RegCommand, cmd&^(CmdIO|CmdMemory))
	defer d.Write16(RegCommand, cmd)

	lo := d.Read32(off)
	d.Write32(off, 0xffffffff)
	mlo := d.Read32(off)
	d.Write32(off, lo)

	b := BAR{Index: i}
	if lo&1 == 1 {
		// I/O: bits 31:2 are the address; devices may hardwire the upper
		// 16 bits to zero.
		mask := mlo &^ 3
		if mask == 0 {
			return b, nil
		}
		if mask&0xffff0000 == 0 {
			mask |= 0xffff0000
		}
		size := uint64(^mask) + 1
		b.Kind, b.Addr, b.Size = BARIO, uint64(lo&mask), size
		if size&(size-1) != 0 {
			return BAR{}, fmt.Errorf("%w: %v BAR%d: I/O size mask %#x is not contiguous", ErrBadBAR, d, i, mlo)
		}
		if b.Addr+b.Size > 0x10000 {
			return BAR{}, fmt.Errorf("%w: %v BAR%d: I/O range %#x+%#x past port 0xffff", ErrBadBAR, d, i, b.Addr, b.Size)
		}
		return b, nil
	}

	b.Prefetchable = lo&8 != 0
	switch (lo >> 1) & 3 {
	case 0:
		mask := mlo &^ 0xf
		if mask == 0 {
			return BAR{}, nil
		}
		size := uint64(^mask) + 1
		b.Kind, b.Addr, b.Size = BARMemory32, uint64(lo&mask), size
	case 2:
		if i+1 >= d.NumBARs() {
			return BAR{}, fmt.Errorf("%w: %v BAR%d: 64-bit BAR in the last slot", ErrBadBAR, d, i)
		}
		hoff := off + 4
		hi := d.Read32(hoff)
		d.Write32(hoff, 0xffffffff)
		mhi := d.Read32(hoff)
		d.Write32(hoff, hi)
		mask := uint64(mhi)<<32 | uint64(mlo&^0xf)
		if mask == 0 {
			return BAR{}, nil
		}
		b.Kind, b.Addr, b.Size = BARMemory64, (uint64(hi)<<32|uint64(lo))&mask, ^mask+1
	default:
		return BAR{}, fmt.Errorf("%w: %v BAR%d: reserved memory type in %#x", ErrBadBAR, d, i, lo)
	}
	if b.Size&(b.Size-1) != 0 || b.Size == 0 {
		return BAR{}, fmt.Errorf("%w: %v BAR%d: size mask %#x is not contiguous", ErrBadBAR, d, i, ^(b.Size - 1))
	}
	if b.Addr+b.Size < b.Addr {
		return BAR{}, fmt.Errorf("%w: %v BAR%d: range %#x+%#x wraps", ErrBadBAR, d, i, b.Addr, b.Size)
	}
	return b, nil
}

// Map decodes BAR i, turns on the decoding it needs (memory or I/O, and
// bus mastering for memory) and returns its registers.
func (d *Device) Map(i int) (Registers, BAR, error) {
	b, err := d.BAR(i)
	if err != nil {
		return nil, BAR{}, err
	}
	if b.Kind == BARNone {
		return nil, BAR{}, fmt.Errorf("pci: %v BAR%d is not implemented", d, i)
	}
	r, err := d.Host.Map(b)
	if err != nil {
		return nil, BAR{}, err
	}
	if b.Kind == BARIO {
		d.EnableIO()
	} else {
		d.EnableMemory()
	}
	return r, b, nil
}

// Slice returns the n registers at off in r, or an error if they are not
// all inside it.
func Slice(r Registers, off, n uint64) (Registers, error) {
	if off > r.Size() || n > r.Size()-off {
		return nil, fmt.Errorf("pci: %#x bytes at %#x outside a %#x-byte register window", n, off, r.Size())
	}
	if s, ok := r.(*window); ok {
		return &window{r: s.r, off: s.off + off, size: n}, nil
	}
	return &window{r: r, off: off, size: n}, nil
}

// window is a bounds-checked part of a Registers.
type window struct {
	r         Registers
	off, size uint64
}

func (w *window) at(off uint64, width uint64) uint64 {
	if off > w.size || width > w.size-off {
		panic(fmt.Sprintf("pci: %d-byte register access at %#x outside a %#x-byte window", width, off, w.size))
	}
	return w.off + off
}

func (w *window) Size() uint64                 { return w.size }
func (w *window) Read8(off uint64) uint8       { return w.r.Read8(w.at(off, 1)) }
func (w *window) Read16(off uint64) uint16     { return w.r.Read16(w.at(off, 2)) }
func (w *window) Read32(off uint64) uint32     { return w.r.Read32(w.at(off, 4)) }
func (w *window) Write8(off uint64, v uint8)   { w.r.Write8(w.at(off, 1), v) }
func (w *window) Write16(off uint64, v uint16) { w.r.Write16(w.at(off, 2), v) }
func (w *window) Write32(off uint64, v uint32) { w.r.Write32(w.at(off, 4), v) }
