package pci_test

import (
	"testing"

	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
)

// fromImage builds a function whose whole configuration space (from
// offset 4 on) is img, with one memory BAR decoding 64 KiB.
func fromImage(img []byte) (*pci.Device, *pcitest.Function) {
	f := pcitest.NewFunction(0x1af4, 0x1041, 0)
	if len(img) > 252 {
		img = img[:252]
	}
	f.Poke(4, img...)
	f.Poke(pci.RegHeaderType, 0)
	f.SetBAR(0, pci.BARMemory32, 0xfe000000, 0x10000, pcitest.NewMem(0x10000))
	h := pcitest.NewHost()
	h.Add(pci.Addr{}, f)
	d, err := pci.Open(h, pci.Addr{})
	if err != nil {
		panic(err)
	}
	return d, f
}

// FuzzCapabilities walks capability lists from arbitrary configuration
// spaces: it must end, list only dword-aligned entries after the header,
// each once, and MSI-X parsing must fail cleanly or give a usable table.
func FuzzCapabilities(f *testing.F) {
	seed := make([]byte, 252)
	seed[pci.RegStatus-4] = pci.StatusCapList
	seed[pci.RegCapPtr-4] = 0x40
	copy(seed[0x40-4:], []byte{pci.CapMSIX, 0x50, 0x02, 0x00, 0x00, 0x08, 0, 0, 0x00, 0x0c, 0, 0})
	copy(seed[0x50-4:], []byte{pci.CapVendor, 0x40, 16})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, img []byte) {
		d, _ := fromImage(img)
		caps, err := d.Capabilities()
		if len(caps) > 48 {
			t.Fatalf("%d capabilities", len(caps))
		}
		seen := map[uint8]bool{}
		for _, c := range caps {
			if c.Offset < 0x40 || c.Offset%4 != 0 || seen[c.Offset] {
				t.Fatalf("bad capability %+v in %v (err %v)", c, caps, err)
			}
			seen[c.Offset] = true
			if _, err := d.CapabilityBytes(c, 20); err != nil && int(c.Offset)+20 <= 256 {
				t.Fatalf("CapabilityBytes(%v): %v", c, err)
			}
		}
		m, err := d.MSIX()
		if err == nil {
			if m.Size() < 1 || m.Size() > 2048 {
				t.Fatalf("MSI-X size %d", m.Size())
			}
			m.Mask(m.Size()-1, false)
			m.Enable()
			m.Disable()
		}
	})
}

// FuzzBAR sizes BARs whose registers keep arbitrary bits: decoding must
// fail cleanly or give a power-of-two size with an aligned address that
// does not wrap.
func FuzzBAR(f *testing.F) {
	f.Add(uint32(0xfe000000), uint32(0xfffff000), uint32(0), uint32(0))
	f.Add(uint32(0xc001), uint32(0xffc0), uint32(0), uint32(0))
	f.Add(uint32(0x4), uint32(0), uint32(0x1), uint32(0xfffffffe))
	f.Fuzz(func(t *testing.T, lo, mlo, hi, mhi uint32) {
		fn := pcitest.NewFunction(1, 2, 0)
		fn.SetRawBAR(0, lo, mlo)
		fn.SetRawBAR(1, hi, mhi)
		h := pcitest.NewHost()
		h.Add(pci.Addr{}, fn)
		d, _ := pci.Open(h, pci.Addr{})
		bars, err := d.BARs()
		if err != nil {
			return
		}
		for _, b := range bars {
			if b.Size == 0 || b.Size&(b.Size-1) != 0 || b.Addr&(b.Size-1) != 0 || b.Addr+b.Size < b.Addr && b.Addr+b.Size != 0 {
				t.Fatalf("bad BAR %v", b)
			}
			if b.Kind == pci.BARIO && b.Addr+b.Size > 0x10000 {
				t.Fatalf("I/O BAR past 64K: %v", b)
			}
		}
	})
}
