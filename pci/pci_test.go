package pci_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
)

func TestEnumerate(t *testing.T) {
	h := pcitest.NewHost()
	h.Add(pci.Addr{0, 0, 0}, pcitest.NewFunction(0x8086, 0x1237, 0x060000))
	mf := pcitest.NewFunction(0x8086, 0x7000, 0x060100)
	mf.SetMultiFunction(true)
	h.Add(pci.Addr{0, 1, 0}, mf)
	h.Add(pci.Addr{0, 1, 3}, pcitest.NewFunction(0x8086, 0x7113, 0x068000))
	h.Add(pci.Addr{0, 1, 7}, pcitest.NewFunction(0x8086, 0x7114, 0x068000))
	// Function 2 of a single-function device is never looked at.
	h.Add(pci.Addr{0, 2, 0}, pcitest.NewFunction(0x1af4, 0x1042, 0x010000))
	h.Add(pci.Addr{0, 2, 2}, pcitest.NewFunction(0x1af4, 0x1041, 0x020000))
	h.Add(pci.Addr{7, 31, 0}, pcitest.NewFunction(0x1af4, 0x1041, 0x020000))
	h.Add(pci.Addr{255, 0, 0}, pcitest.NewFunction(0x1234, 0x1111, 0x030000))

	var got []string
	for _, d := range pci.Enumerate(h) {
		got = append(got, d.String())
	}
	want := []string{
		"pci 00:00.0 [8086:1237]",
		"pci 00:01.0 [8086:7000]",
		"pci 00:01.3 [8086:7113]",
		"pci 00:01.7 [8086:7114]",
		"pci 00:02.0 [1af4:1042]",
		"pci 07:1f.0 [1af4:1041]",
		"pci ff:00.0 [1234:1111]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Enumerate (-want +got):\n%s", diff)
	}
	if n := len(pci.Find(h, 0x1af4, 0x1041, 0x1000)); n != 1 {
		t.Errorf("Find virtio-net: %d functions, want 1", n)
	}
	if n := len(pci.Find(h, 0x8086)); n != 4 {
		t.Errorf("Find any Intel: %d functions, want 4", n)
	}
	d, err := pci.Open(h, pci.Addr{0, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !d.MultiFunction || d.Class != 0x060100 || d.Revision != 1 || d.HeaderType != 0 {
		t.Errorf("Open = %+v", d)
	}
	if _, err := pci.Open(h, pci.Addr{0, 9, 0}); !errors.Is(err, pci.ErrNoDevice) {
		t.Errorf("Open of an empty slot: %v, want ErrNoDevice", err)
	}
	if _, err := pci.Open(h, pci.Addr{0, 32, 0}); err == nil {
		t.Error("Open of device 32 succeeded")
	}
}

func TestBARs(t *testing.T) {
	io := pcitest.NewMem(0x40)
	mem := pcitest.NewMem(0x1000)
	f := pcitest.NewFunction(0x1af4, 0x1042, 0x010000)
	f.SetBAR(0, pci.BARIO, 0xc040, 0x40, io)
	f.SetBAR(1, pci.BARMemory32, 0xfebd1000, 0x1000, mem)
	f.SetBAR(4, pci.BARMemory64, 0xfe000000, 0x4000, nil)
	f.SetPrefetchable(4)
	f.Poke(pci.RegCommand, pci.CmdIO|pci.CmdMemory)
	h := pcitest.NewHost()
	h.Add(pci.Addr{0, 3, 0}, f)
	d, err := pci.Open(h, pci.Addr{0, 3, 0})
	if err != nil {
		t.Fatal(err)
	}
	bars, err := d.BARs()
	if err != nil {
		t.Fatal(err)
	}
	want := []pci.BAR{
		{Index: 0, Kind: pci.BARIO, Addr: 0xc040, Size: 0x40},
		{Index: 1, Kind: pci.BARMemory32, Addr: 0xfebd1000, Size: 0x1000},
		{Index: 4, Kind: pci.BARMemory64, Addr: 0xfe000000, Size: 0x4000, Prefetchable: true},
	}
	if diff := cmp.Diff(want, bars); diff != "" {
		t.Errorf("BARs (-want +got):\n%s", diff)
	}
	// Sizing put every address back and restored the command register.
	for i, a := range map[int]uint64{0: 0xc040, 1: 0xfebd1000, 4: 0xfe000000} {
		if got := f.BARAddr(i); got != a {
			t.Errorf("BAR%d holds %#x after sizing, want %#x", i, got, a)
		}
	}
	if c := f.Command(); c != pci.CmdIO|pci.CmdMemory {
		t.Errorf("command %#x after sizing, want %#x", c, pci.CmdIO|pci.CmdMemory)
	}

	r, b, err := d.Map(1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size != 0x1000 || r.Size() != 0x1000 {
		t.Fatalf("Map(1) = %v, size %#x", b, r.Size())
	}
	r.Write32(8, 0xdeadbeef)
	if v := mem.Read32(8); v != 0xdeadbeef {
		t.Errorf("write through the BAR reached %#x", v)
	}
	if f.Command()&(pci.CmdMemory|pci.CmdBusMaster) != pci.CmdMemory|pci.CmdBusMaster {
		t.Errorf("Map of a memory BAR left command %#x", f.Command())
	}
	d.SetCommand(0, pci.CmdMemory)
	if v := r.Read32(8); v != 0xffffffff {
		t.Errorf("read with decoding off = %#x, want all ones", v)
	}
	if _, _, err := d.Map(4); err == nil {
		t.Error("Map of a BAR nothing decodes succeeded")
	}
	if _, _, err := d.Map(2); err == nil {
		t.Error("Map of an unimplemented BAR succeeded")
	}
	if _, err := d.BAR(6); err == nil {
		t.Error("BAR(6) succeeded")
	}
	sub, err := pci.Slice(r, 0x10, 0x20)
	if err != nil {
		t.Fatal(err)
	}
	d.EnableMemory()
	sub.Write16(0x1e, 0x1234)
	if v := mem.Read16(0x2e); v != 0x1234 {
		t.Errorf("write through a slice reached %#x", v)
	}
	if _, err := pci.Slice(sub, 0x10, 0x11); err == nil {
		t.Error("Slice past the end succeeded")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("access past a slice did not panic")
			}
		}()
		sub.Read32(0x1e)
	}()
}

func TestBadBARs(t *testing.T) {
	for _, tc := range []struct {
		name          string
		initial, mask uint32
		upper         *[2]uint32 // slot 1, for 64-bit
		slot          int
		want          string // "" for no error
		kind          pci.BARKind
		size          uint64
	}{
		{name: "unimplemented", initial: 0, mask: 0, kind: pci.BARNone},
		{name: "io hardwired upper half", initial: 0xc001, mask: 0xffc0, kind: pci.BARIO, size: 0x40},
		{name: "io non-contiguous", initial: 0xc001, mask: 0xff0c, want: "not contiguous"},
		{name: "io at the top of the port space", initial: 0xfff1, mask: 0xfffffff0, kind: pci.BARIO, size: 0x10},
		{name: "mem non-contiguous", initial: 0xfe000000, mask: 0xff0ff000, want: "not contiguous"},
		{name: "mem mask without top bits", initial: 0x0, mask: 0x0000f000, want: "not contiguous"},
		{name: "reserved type", initial: 0x2, mask: 0xfffff000, want: "reserved memory type"},
		{name: "64-bit in last slot", slot: 5, initial: 0x4, mask: 0xfffff000, want: "last slot"},
		{name: "64-bit ok", initial: 0x4, mask: 0xfffff000, upper: &[2]uint32{1, 0xffffffff}, kind: pci.BARMemory64, size: 0x1000},
		{name: "64-bit over 4G", initial: 0x4, mask: 0, upper: &[2]uint32{0, 0xfffffffe}, kind: pci.BARMemory64, size: 0x200000000},
		{name: "64-bit hole in mask", initial: 0x4, mask: 0xfffff000, upper: &[2]uint32{0, 0x7fffffff}, want: "not contiguous"},
		{name: "64-bit mask only low", initial: 0x4, mask: 0xfffff000, upper: &[2]uint32{0, 0}, want: "not contiguous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := pcitest.NewFunction(1, 2, 0)
			f.SetRawBAR(tc.slot, tc.initial, tc.mask)
			if tc.upper != nil {
				f.SetRawBAR(tc.slot+1, tc.upper[0], tc.upper[1])
			}
			h := pcitest.NewHost()
			h.Add(pci.Addr{}, f)
			d, err := pci.Open(h, pci.Addr{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := d.BAR(tc.slot)
			if tc.want != "" {
				if err == nil || !errors.Is(err, pci.ErrBadBAR) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("BAR = %v, %v; want an ErrBadBAR about %q", b, err, tc.want)
				}
				if _, err := d.BARs(); err == nil {
					t.Error("BARs succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Kind != tc.kind || b.Size != tc.size {
				t.Errorf("BAR = %v, want kind %v size %#x", b, tc.kind, tc.size)
			}
		})
	}
}

// capSpace builds a function whose configuration space has the capability
// pointer ptr and the (offset, id, next) triples of caps.
func capSpace(status bool, ptr uint8, caps ...[3]uint8) *pci.Device {
	f := pcitest.NewFunction(1, 2, 0)
	if status {
		f.Poke(pci.RegStatus, pci.StatusCapList)
	}
	f.Poke(pci.RegCapPtr, ptr)
	for _, c := range caps {
		f.Poke(c[0], c[1], c[2])
	}
	h := pcitest.NewHost()
	h.Add(pci.Addr{}, f)
	d, err := pci.Open(h, pci.Addr{})
	if err != nil {
		panic(err)
	}
	return d
}

func TestCapabilities(t *testing.T) {
	long := make([][3]uint8, 0, 48)
	for p := 0x40; p < 0x100; p += 4 {
		long = append(long, [3]uint8{uint8(p), 9, uint8(p + 4)}) // the last wraps to 0
	}
	for _, tc := range []struct {
		name   string
		status bool
		ptr    uint8
		caps   [][3]uint8
		want   []pci.Capability
		err    string
	}{
		{name: "none: status bit clear", ptr: 0x40, caps: [][3]uint8{{0x40, 5, 0}}},
		{name: "empty list", status: true},
		{name: "two", status: true, ptr: 0x50, caps: [][3]uint8{{0x50, 0x11, 0x40}, {0x40, 0x09, 0}},
			want: []pci.Capability{{0x11, 0x50}, {0x09, 0x40}}},
		{name: "reserved low bits masked", status: true, ptr: 0x53, caps: [][3]uint8{{0x50, 0x11, 0x43}, {0x40, 0x09, 0x02}},
			want: []pci.Capability{{0x11, 0x50}, {0x09, 0x40}}},
		{name: "self loop", status: true, ptr: 0x40, caps: [][3]uint8{{0x40, 5, 0x40}}, err: "loops"},
		{name: "long loop", status: true, ptr: 0x40, caps: [][3]uint8{{0x40, 5, 0x80}, {0x80, 6, 0xfc}, {0xfc, 7, 0x40}}, err: "loops"},
		{name: "into the header", status: true, ptr: 0x40, caps: [][3]uint8{{0x40, 5, 0x3c}}, err: "into the header"},
		{name: "first pointer into the header", status: true, ptr: 0x10, err: "into the header"},
		{name: "all 48", status: true, ptr: 0x40, caps: long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := capSpace(tc.status, tc.ptr, tc.caps...)
			got, err := d.Capabilities()
			if tc.err != "" {
				if !errors.Is(err, pci.ErrBadCapList) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Capabilities = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "all 48" {
				if len(got) != 48 {
					t.Fatalf("%d capabilities, want 48", len(got))
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapabilityBytes(t *testing.T) {
	f := pcitest.NewFunction(1, 2, 0)
	off := f.AddCapability(pci.CapVendor, []byte{7, 8, 9, 10, 11}, nil)
	h := pcitest.NewHost()
	h.Add(pci.Addr{}, f)
	d, _ := pci.Open(h, pci.Addr{})
	caps, err := d.FindCapabilities(pci.CapVendor)
	if err != nil || len(caps) != 1 || caps[0].Offset != off {
		t.Fatalf("FindCapabilities = %v, %v", caps, err)
	}
	b, err := d.CapabilityBytes(caps[0], 7)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{pci.CapVendor, 0, 7, 8, 9, 10, 11}, b); diff != "" {
		t.Error(diff)
	}
	if _, err := d.CapabilityBytes(pci.Capability{ID: 9, Offset: 0xf8}, 16); err == nil {
		t.Error("CapabilityBytes past offset 255 succeeded")
	}
	if b, err := d.CapabilityBytes(pci.Capability{ID: 9, Offset: 0xf8}, 8); err != nil || len(b) != 8 {
		t.Errorf("CapabilityBytes up to offset 255 = %v, %v", b, err)
	}
}

func TestMSIX(t *testing.T) {
	h := pcitest.NewHost()
	f := pcitest.NewFunction(0x1af4, 0x1041, 0x020000)
	tbl := f.AddMSIX(3, 1, 0x800)
	f.SetBAR(1, pci.BARMemory32, 0xfebd0000, 0x1000, pcitest.NewMux(0x1000).Add(0x800, tbl))
	h.Add(pci.Addr{0, 4, 0}, f)
	d, _ := pci.Open(h, pci.Addr{0, 4, 0})
	m, err := d.MSIX()
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != 3 {
		t.Fatalf("Size = %d", m.Size())
	}
	a, _ := h.IRQs.Alloc()
	b, _ := h.IRQs.Alloc()
	if err := m.Route(0, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Route(2, b); err != nil {
		t.Fatal(err)
	}
	if err := m.Route(3, b); err == nil {
		t.Error("Route of entry 3 of 3 succeeded")
	}
	if tbl.Raise(0) {
		t.Error("raised before Enable")
	}
	m.Enable()
	if !m.Enabled() || f.Command()&pci.CmdInterruptOff == 0 {
		t.Errorf("Enable: enabled %v, command %#x", m.Enabled(), f.Command())
	}
	if !tbl.Raise(2) {
		t.Fatal("entry 2 not delivered")
	}
	select {
	case <-b.C():
	default:
		t.Fatal("vector b did not fire")
	}
	if tbl.Raise(1) {
		t.Error("masked entry 1 delivered")
	}
	m.Mask(0, true)
	tbl.Raise(0)
	select {
	case <-a.C():
		t.Fatal("masked vector fired")
	default:
	}
	m.Mask(0, false) // the pending message goes out now
	select {
	case <-a.C():
	default:
		t.Fatal("pending message not delivered on unmask")
	}
	m.Disable()
	if m.Enabled() || tbl.Raise(2) {
		t.Error("Disable left MSI-X on")
	}
}

func TestMSIXBad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *pcitest.Function)
		err   error
	}{
		{name: "no capability", setup: func(f *pcitest.Function) {}, err: pci.ErrNoMSIX},
		{name: "table past the BAR", setup: func(f *pcitest.Function) {
			tbl := f.AddMSIX(2048, 0, 0)
			f.SetBAR(0, pci.BARMemory32, 0xfe000000, 0x1000, tbl)
		}, err: pci.ErrBadCapList},
		{name: "table in an I/O BAR", setup: func(f *pcitest.Function) {
			tbl := f.AddMSIX(1, 0, 0)
			f.SetBAR(0, pci.BARIO, 0xc000, 0x10, tbl)
		}, err: pci.ErrBadCapList},
		{name: "BIR 7", setup: func(f *pcitest.Function) {
			off := f.AddCapability(pci.CapMSIX, []byte{0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, nil)
			_ = off
		}, err: pci.ErrBadCapList},
		{name: "table offset wraps", setup: func(f *pcitest.Function) {
			f.AddCapability(pci.CapMSIX, []byte{0xff, 0x07, 0xf8, 0xff, 0xff, 0xff, 0, 0, 0, 0}, nil)
			f.SetBAR(0, pci.BARMemory32, 0xfe000000, 0x1000, pcitest.NewMem(0x1000))
		}, err: pci.ErrBadCapList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := pcitest.NewFunction(1, 2, 0)
			tc.setup(f)
			h := pcitest.NewHost()
			h.Add(pci.Addr{}, f)
			d, _ := pci.Open(h, pci.Addr{})
			if _, err := d.MSIX(); !errors.Is(err, tc.err) {
				t.Fatalf("MSIX: %v, want %v", err, tc.err)
			}
		})
	}
}

// BenchmarkEnumerate scans a host with QEMU's q35-like handful of
// functions: the boot path of every image with a PCI NIC or disk.
func BenchmarkEnumerate(b *testing.B) {
	h := pcitest.NewHost()
	h.Add(pci.Addr{0, 0, 0}, pcitest.NewFunction(0x8086, 0x1237, 0x060000))
	h.Add(pci.Addr{0, 1, 0}, pcitest.NewFunction(0x8086, 0x7000, 0x060100))
	h.Add(pci.Addr{0, 2, 0}, pcitest.NewFunction(0x1af4, 0x1041, 0x020000))
	b.ReportAllocs()
	for b.Loop() {
		if n := len(pci.Enumerate(h)); n != 3 {
			b.Fatalf("%d functions, want 3", n)
		}
	}
}
