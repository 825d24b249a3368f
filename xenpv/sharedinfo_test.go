package xenpv

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// simPage points the package at a simulated shared_info page.
func simPage(t *testing.T) []byte {
	t.Helper()
	buf := make([]byte, 2*4096)
	p := (uintptr(unsafe.Pointer(&buf[0])) + 4095) &^ 4095
	old := shared
	shared = p
	t.Cleanup(func() { shared = old })
	return unsafe.Slice((*byte)(unsafe.Add(nil, p)), 4096)
}

func setBit(page []byte, off int, port uint32) {
	w := off + int(port/64)*8
	binary.LittleEndian.PutUint64(page[w:], binary.LittleEndian.Uint64(page[w:])|1<<(port%64))
}

func bit(page []byte, off int, port uint32) bool {
	return binary.LittleEndian.Uint64(page[off+int(port/64)*8:])&(1<<(port%64)) != 0
}

func TestSharedInfoLayout(t *testing.T) {
	// Offsets from xen-abi.md (struct shared_info, x86-64).
	got := []int{VCPUInfoSize, vcpuUpcallPending, vcpuUpcallMask, vcpuPendingSel, vcpuTime,
		sharedPending, sharedMask, sharedWCVer, sharedWCSec, sharedWCNsec, sharedWCSecHi, NumPorts}
	want := []int{64, 0, 1, 8, 32, 2048, 2560, 3072, 3076, 3080, 3084, 4096}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
}

func TestScanEvents(t *testing.T) {
	tests := []struct {
		name    string
		pending []uint32
		masked  []uint32
		sel     uint64 // 0: derived from pending
		want    []uint32
	}{
		{name: "none"},
		{name: "one", pending: []uint32{3}, want: []uint32{3}},
		{name: "ascending across words", pending: []uint32{700, 1, 64, 63, 4095}, want: []uint32{1, 63, 64, 700, 4095}},
		{name: "masked stay pending", pending: []uint32{5, 6, 130}, masked: []uint32{6, 130}, want: []uint32{5}},
		{name: "selector limits the words scanned", pending: []uint32{2, 200}, sel: 1, want: []uint32{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := simPage(t)
			sel := tt.sel
			for _, p := range tt.pending {
				setBit(page, sharedPending, p)
				if tt.sel == 0 {
					sel |= 1 << (p / 64)
				}
			}
			for _, p := range tt.masked {
				setBit(page, sharedMask, p)
			}
			binary.LittleEndian.PutUint64(page[vcpuPendingSel:], sel)
			page[vcpuUpcallPending] = 1
			var got []uint32
			ScanEvents(func(p uint32) { got = append(got, p) })
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if page[vcpuUpcallPending] != 0 || binary.LittleEndian.Uint64(page[vcpuPendingSel:]) != 0 {
				t.Error("upcall_pending or pending_sel not cleared")
			}
			for _, p := range got {
				if bit(page, sharedPending, p) || !bit(page, sharedMask, p) {
					t.Errorf("port %d delivered but not masked and cleared", p)
				}
			}
			for _, p := range tt.masked {
				if !bit(page, sharedPending, p) {
					t.Errorf("masked port %d lost its pending bit", p)
				}
			}
		})
	}
}

// TestUnmask covers Mask/Unmask for a port with no event pending. The
// pending case ends in EVTCHNOP_unmask, a hypercall, so it is covered in
// the Xen lab (qemu-tests/xen TestXenstoreAndShutdownPVH, which lost
// xenstore replies before Unmask re-masked a pending port first).
func TestUnmask(t *testing.T) {
	page := simPage(t)
	setBit(page, sharedMask, 9)
	Unmask(9)
	if bit(page, sharedMask, 9) {
		t.Error("Unmask left a non-pending port masked")
	}
	Mask(9)
	if !bit(page, sharedMask, 9) {
		t.Error("Mask did not mask")
	}
	Unmask(NumPorts) // out of range: ignored, no panic
}

func TestHypercallArgLayout(t *testing.T) {
	// Sizes and offsets from xen-abi.md, public/version.h, public/event_channel.h
	// (evtchn_bind_virq) and public/vcpu.h (vcpu_set_singleshot_timer).
	var p hvmParam
	var f xenFeatureInfo
	var v bindVIRQ
	var s singleshotTimer
	got := []uintptr{unsafe.Sizeof(p), unsafe.Offsetof(p.index), unsafe.Offsetof(p.value), unsafe.Sizeof(f), unsafe.Offsetof(f.submap),
		unsafe.Sizeof(v), unsafe.Offsetof(v.vcpu), unsafe.Offsetof(v.port), unsafe.Sizeof(s), unsafe.Offsetof(s.flags)}
	want := []uintptr{16, 4, 8, 8, 4, 12, 4, 8, 16, 8}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
	if v := CallbackVector(0xf3); v != 0x02000000000000f3 {
		t.Errorf("CallbackVector(0xf3) = %#x, want type 2 (vector) in bits 56-63", v)
	}
}
