package vchan

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// The numbers in these tests are the ones in docs/qubes.md ("vchan"), taken
// from struct vchan_interface in Xen's io/libxenvchan.h.

func TestHeaderLayout(t *testing.T) {
	var h sharedHeader
	got := map[string]uintptr{
		"left.cons":   unsafe.Offsetof(h.left) + unsafe.Offsetof(h.left.cons),
		"left.prod":   unsafe.Offsetof(h.left) + unsafe.Offsetof(h.left.prod),
		"right.cons":  unsafe.Offsetof(h.right) + unsafe.Offsetof(h.right.cons),
		"right.prod":  unsafe.Offsetof(h.right) + unsafe.Offsetof(h.right.prod),
		"left_order":  unsafe.Offsetof(h.leftOrder),
		"right_order": unsafe.Offsetof(h.rightOrder),
		"status":      unsafe.Offsetof(h.status),
		"size":        unsafe.Sizeof(h),
	}
	want := map[string]uintptr{
		"left.cons": 0, "left.prod": 4, "right.cons": 8, "right.prod": 12,
		"left_order": 16, "right_order": 18, "status": 20, "size": 24,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sharedHeader layout (-doc +Go):\n%s", diff)
	}
	consts := map[string]int{
		"left.cons": OffsetLeftCons, "left.prod": OffsetLeftProd, "right.cons": OffsetRightCons,
		"right.prod": OffsetRightProd, "left_order": OffsetLeftOrder, "right_order": OffsetRightOrder,
		"cli_live": OffsetCliLive, "srv_live": OffsetSrvLive, "cli_notify": OffsetCliNotify,
		"srv_notify": OffsetSrvNotify, "grants": OffsetGrants, "size": HeaderSize,
	}
	wantConsts := map[string]int{
		"left.cons": 0, "left.prod": 4, "right.cons": 8, "right.prod": 12, "left_order": 16,
		"right_order": 18, "cli_live": 20, "srv_live": 21, "cli_notify": 22, "srv_notify": 23,
		"grants": 24, "size": 24,
	}
	if diff := cmp.Diff(wantConsts, consts); diff != "" {
		t.Errorf("offset constants (-doc +Go):\n%s", diff)
	}
}

// TestHeaderBytes writes every field through the Go type and checks the
// bytes a C peer would see at the documented offsets.
func TestHeaderBytes(t *testing.T) {
	page := make([]byte, PageSize)
	h, err := headerOf(page)
	if err != nil {
		t.Fatal(err)
	}
	h.left.cons.Store(0x11111111)
	h.left.prod.Store(0x22222222)
	h.right.cons.Store(0x33333333)
	h.right.prod.Store(0x44444444)
	h.leftOrder = 10
	h.rightOrder = 0x1234
	h.store(cliLive, 2)
	h.store(srvLive, 1)
	h.or(cliNotify, NotifyWrite)
	h.or(srvNotify, NotifyRead|NotifyWrite)
	got := struct {
		LeftCons, LeftProd, RightCons, RightProd uint32
		LeftOrder, RightOrder                    uint16
		CliLive, SrvLive, CliNotify, SrvNotify   uint8
	}{
		binary.LittleEndian.Uint32(page[OffsetLeftCons:]), binary.LittleEndian.Uint32(page[OffsetLeftProd:]),
		binary.LittleEndian.Uint32(page[OffsetRightCons:]), binary.LittleEndian.Uint32(page[OffsetRightProd:]),
		binary.LittleEndian.Uint16(page[OffsetLeftOrder:]), binary.LittleEndian.Uint16(page[OffsetRightOrder:]),
		page[OffsetCliLive], page[OffsetSrvLive], page[OffsetCliNotify], page[OffsetSrvNotify],
	}
	want := got
	want.LeftCons, want.LeftProd, want.RightCons, want.RightProd = 0x11111111, 0x22222222, 0x33333333, 0x44444444
	want.LeftOrder, want.RightOrder = 10, 0x1234
	want.CliLive, want.SrvLive, want.CliNotify, want.SrvNotify = 2, 1, 1, 3
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("page bytes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(make([]byte, PageSize-HeaderSize), page[HeaderSize:]); diff != "" {
		t.Errorf("bytes past the header changed:\n%s", diff)
	}
}

func TestStatusByteOps(t *testing.T) {
	page := make([]byte, PageSize)
	h, _ := headerOf(page)
	copy(page[OffsetCliLive:], []byte{0xa1, 0xb2, 0xc3, 0xd4})
	type step struct {
		name string
		do   func() uint8 // returns the op's result where it has one
		ret  uint8
		want [4]byte // cli_live, srv_live, cli_notify, srv_notify afterwards
	}
	steps := []step{
		{"load srv_live", func() uint8 { return h.load(srvLive) }, 0xb2, [4]byte{0xa1, 0xb2, 0xc3, 0xd4}},
		{"store cli_live", func() uint8 { h.store(cliLive, 0); return 0 }, 0, [4]byte{0x00, 0xb2, 0xc3, 0xd4}},
		{"store srv_notify", func() uint8 { h.store(srvNotify, 0); return 0 }, 0, [4]byte{0x00, 0xb2, 0xc3, 0x00}},
		{"or srv_notify", func() uint8 { h.or(srvNotify, NotifyRead); return 0 }, 0, [4]byte{0x00, 0xb2, 0xc3, 0x02}},
		{"clear cli_notify write", func() uint8 { return h.clear(cliNotify, NotifyWrite) }, 0xc3, [4]byte{0x00, 0xb2, 0xc2, 0x02}},
		{"clear cli_notify write again", func() uint8 { return h.clear(cliNotify, NotifyWrite) }, 0xc2, [4]byte{0x00, 0xb2, 0xc2, 0x02}},
		{"clear srv_notify read", func() uint8 { return h.clear(srvNotify, NotifyRead) }, 0x02, [4]byte{0x00, 0xb2, 0xc2, 0x00}},
	}
	for _, s := range steps {
		if got := s.do(); got != s.ret {
			t.Errorf("%s returned %#x, want %#x", s.name, got, s.ret)
		}
		var got [4]byte
		copy(got[:], page[OffsetCliLive:])
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("after %s (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestChooseOrders(t *testing.T) {
	tests := []struct {
		read, write int
		want        Orders
		wantErr     bool
	}{
		{read: 0, write: 0, want: Orders{10, 11}},
		{read: 1024, write: 2048, want: Orders{10, 11}},
		{read: 2048, write: 1024, want: Orders{11, 10}},
		{read: 1025, write: 1025, want: Orders{11, 12}},
		{read: 2048, write: 2049, want: Orders{11, 12}},
		{read: 2049, write: 2048, want: Orders{12, 11}},
		{read: 100000, write: 10, want: Orders{17, 11}},
		{read: 4096, write: 4096, want: Orders{12, 12}}, // QubesDB
		{read: 4097, write: 4096, want: Orders{13, 12}},
		{read: 65536, write: 65536, want: Orders{16, 16}}, // qrexec data
		{read: MaxRingSize, write: MaxRingSize, want: Orders{20, 20}},
		{read: MaxRingSize + 1, write: 0, wantErr: true},
		{read: 0, write: MaxRingSize + 1, wantErr: true},
		{read: -1, write: 0, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ChooseOrders(tt.read, tt.write)
		if (err != nil) != tt.wantErr {
			t.Errorf("ChooseOrders(%d, %d) error = %v, want error %v", tt.read, tt.write, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ChooseOrders(%d, %d) (-want +got):\n%s", tt.read, tt.write, diff)
		}
		if err == nil {
			if _, err := checkLayout(got); err != nil {
				t.Errorf("ChooseOrders(%d, %d) = %v, which the client rejects: %v", tt.read, tt.write, got, err)
			}
			if 1<<got.Left < tt.read || 1<<got.Right < tt.write {
				t.Errorf("ChooseOrders(%d, %d) = %v: rings smaller than asked", tt.read, tt.write, got)
			}
		}
	}
}

func TestCheckLayout(t *testing.T) {
	tests := []struct {
		orders      Orders
		left, right ringPlace
		wantErr     bool
	}{
		{orders: Orders{10, 11}, left: ringPlace{inPage: true, offset: 1024}, right: ringPlace{inPage: true, offset: 2048}},
		{orders: Orders{11, 10}, left: ringPlace{inPage: true, offset: 2048}, right: ringPlace{inPage: true, offset: 1024}},
		{orders: Orders{12, 12}, left: ringPlace{pages: 1}, right: ringPlace{pages: 1}},
		{orders: Orders{11, 20}, left: ringPlace{inPage: true, offset: 2048}, right: ringPlace{pages: 256}},
		{orders: Orders{20, 20}, left: ringPlace{pages: 256}, right: ringPlace{pages: 256}},
		{orders: Orders{19, 10}, left: ringPlace{pages: 128}, right: ringPlace{inPage: true, offset: 1024}},
		{orders: Orders{20, 10}, wantErr: true}, // 256 refs end at 1048, inside the 1 KiB ring
		{orders: Orders{10, 10}, wantErr: true}, // both at offset 1024
		{orders: Orders{11, 11}, wantErr: true},
		{orders: Orders{9, 12}, wantErr: true},
		{orders: Orders{12, 21}, wantErr: true},
		{orders: Orders{0, 0}, wantErr: true},
		{orders: Orders{65535, 12}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := checkLayout(tt.orders)
		if tt.wantErr {
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("checkLayout(%v) error = %v, want ErrProtocol", tt.orders, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("checkLayout(%v): %v", tt.orders, err)
			continue
		}
		want := layout{orders: tt.orders, left: tt.left, right: tt.right}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(layout{}, ringPlace{})); diff != "" {
			t.Errorf("checkLayout(%v) (-want +got):\n%s", tt.orders, diff)
		}
	}
}

// TestRingDataWrap copies across segment and ring boundaries and compares
// with a flat model of the same ring.
func TestRingDataWrap(t *testing.T) {
	tests := []struct {
		name  string
		order int
		segs  int
		pos   uint32
		n     int
	}{
		{"in-page, no wrap", 10, 1, 5, 100},
		{"in-page, wrap", 10, 1, 1000, 100},
		{"in-page, whole ring from middle", 11, 1, 0xfffffff0, 2048},
		{"pages, across page", 13, 2, 4090, 20},
		{"pages, wrap across index overflow", 14, 4, 0xffffffff, 9000},
		{"pages, whole ring", 14, 4, 12345, 16384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := 1 << tt.order
			segs := make([][]byte, tt.segs)
			for i := range segs {
				segs[i] = make([]byte, size/tt.segs)
			}
			r, err := newRingData(tt.order, segs)
			if err != nil {
				t.Fatal(err)
			}
			src := make([]byte, tt.n)
			for i := range src {
				src[i] = byte(i*7 + 1)
			}
			r.copyIn(tt.pos, src)
			flat := make([]byte, 0, size)
			for _, s := range segs {
				flat = append(flat, s...)
			}
			want := make([]byte, size)
			for i := range src {
				want[(int(tt.pos)+i)&(size-1)] = src[i]
			}
			if diff := cmp.Diff(want, flat); diff != "" {
				t.Errorf("ring after copyIn (-want +got):\n%s", diff)
			}
			got := make([]byte, tt.n)
			r.copyOut(got, tt.pos)
			if diff := cmp.Diff(src, got); diff != "" {
				t.Errorf("copyOut (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRingDataRejects(t *testing.T) {
	tests := []struct {
		name  string
		order int
		segs  [][]byte
	}{
		{"no segments", 12, nil},
		{"three segments", 12, [][]byte{make([]byte, 4096), make([]byte, 4096), make([]byte, 4096)}},
		{"short segment", 13, [][]byte{make([]byte, 4096), make([]byte, 100)}},
		{"more segments than bytes", 0, [][]byte{{1}, {2}}},
	}
	for _, tt := range tests {
		if _, err := newRingData(tt.order, tt.segs); err == nil {
			t.Errorf("%s: newRingData accepted it", tt.name)
		}
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{in: "1", want: 1},
		{in: "4294967295", want: 4294967295},
		{in: "77", want: 77},
		{in: "0", wantErr: true},
		{in: "", wantErr: true},
		{in: "4294967296", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: " 1", wantErr: true},
		{in: "1 ", wantErr: true},
		{in: "01", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "99999999999", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseNumber("ring-ref", tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseNumber(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
