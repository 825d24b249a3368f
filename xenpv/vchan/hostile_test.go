package vchan_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/host"
)

// hostileClient attaches to a real server by hand, as a misbehaving client
// domain would, and returns the shared page and a bound event channel.
func hostileClient(t *testing.T, hv *host.Hypervisor) ([]byte, vchan.EventChannel) {
	t.Helper()
	p := hv.Platform(clientDom)
	dir := vchan.Dir("/local/domain/0", clientDom, testPort)
	ctx := context.Background()
	refText, err := p.Store.WaitRead(ctx, dir+"/"+vchan.KeyRingRef)
	if err != nil {
		t.Fatal(err)
	}
	portText, err := p.Store.WaitRead(ctx, dir+"/"+vchan.KeyEventChannel)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := strconv.ParseUint(refText, 10, 32)
	port, _ := strconv.ParseUint(portText, 10, 32)
	ev, err := p.Events.BindInterdomain(serverDom, uint32(port))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := p.Memory.Map(serverDom, []vchan.GrantRef{vchan.GrantRef(ref)}, true)
	if err != nil {
		t.Fatal(err)
	}
	page := ps.Pages()[0]
	page[vchan.OffsetCliLive] = byte(vchan.LiveConnected)
	return page, ev
}

// put32 stores a u32 into the shared page as a peer would. It is atomic
// because the endpoint under test may be reading the field concurrently.
func put32(page []byte, off int, v uint32) {
	(*atomic.Uint32)(unsafe.Pointer(&page[off])).Store(v)
}

// TestHostileClient corrupts the shared page from the client side; the
// server must answer with ErrProtocol, and keep answering it.
func TestHostileClient(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(page []byte)
		op      string // read, write, state, ready, space
		wantErr error
	}{
		{"producer one past the ring", func(p []byte) { put32(p, vchan.OffsetLeftProd, 1025) }, "read", vchan.ErrProtocol},
		{"producer behind consumer", func(p []byte) { put32(p, vchan.OffsetLeftProd, 0xffffffff) }, "read", vchan.ErrProtocol},
		{"producer far ahead, seen by DataReady", func(p []byte) { put32(p, vchan.OffsetLeftProd, 1<<31) }, "ready", vchan.ErrProtocol},
		{"consumer ahead of producer", func(p []byte) { put32(p, vchan.OffsetRightCons, 5) }, "write", vchan.ErrProtocol},
		{"consumer a ring and a byte behind", func(p []byte) { put32(p, vchan.OffsetRightCons, 0xfffff7ff) }, "space", vchan.ErrProtocol},
		{"server's consumer index rewritten", func(p []byte) { put32(p, vchan.OffsetLeftCons, 100) }, "read", vchan.ErrProtocol},
		{"server's producer index rewritten", func(p []byte) { put32(p, vchan.OffsetRightProd, 100) }, "write", vchan.ErrProtocol},
		{"live byte garbage, read", func(p []byte) { p[vchan.OffsetCliLive] = 7 }, "read", vchan.ErrProtocol},
		{"live byte garbage, write", func(p []byte) { p[vchan.OffsetCliLive] = 0xff }, "write", vchan.ErrProtocol},
		{"live byte garbage, state", func(p []byte) { p[vchan.OffsetCliLive] = 3 }, "state", vchan.ErrProtocol},
		{"exactly a full ring is fine", func(p []byte) { put32(p, vchan.OffsetLeftProd, 1024) }, "read", nil},
		{"notify garbage is harmless", func(p []byte) { p[vchan.OffsetSrvNotify] = 0xfc }, "write", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hv := host.New()
			srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 1024, 2048)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			page, ev := hostileClient(t, hv)
			defer ev.Close()
			tt.corrupt(page)
			ops := map[string]func() error{
				"read":  func() error { _, err := srv.Read(make([]byte, 2000)); return err },
				"write": func() error { _, err := srv.Write([]byte("hi")); return err },
				"state": func() error { _, err := srv.State(); return err },
				"ready": func() error { _, err := srv.DataReady(); return err },
				"space": func() error { _, err := srv.BufferSpace(); return err },
			}
			err = ops[tt.op]()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("%s: %v, want success", tt.op, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s: %v, want %v", tt.op, err, tt.wantErr)
			}
			// The error sticks, even for an operation that would not look
			// at the corrupted field.
			if err := ops["space"](); !errors.Is(err, vchan.ErrProtocol) && tt.op != "state" {
				t.Errorf("BufferSpace after a protocol error: %v, want ErrProtocol", err)
			}
		})
	}
}

// TestHostileClientWakesReader corrupts the producer index while the server
// sleeps in Read, then notifies: the server wakes with ErrProtocol.
func TestHostileClientWakesReader(t *testing.T) {
	hv := host.New()
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 1024, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	page, ev := hostileClient(t, hv)
	defer ev.Close()
	done := make(chan error, 1)
	go func() {
		_, err := srv.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	put32(page, vchan.OffsetLeftProd, 5000)
	if err := ev.Notify(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, vchan.ErrProtocol) {
			t.Errorf("Read: %v, want ErrProtocol", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked")
	}
}

// fakeServer publishes a hand-made shared page, as a misbehaving server
// domain would. Ring pages for orders >= 12 are granted and listed; edit
// then changes the page before it is published. It returns the page and
// the server's end of the event channel.
func fakeServer(t *testing.T, hv *host.Hypervisor, left, right int, edit func(page []byte), refText string) ([]byte, vchan.EventChannel) {
	t.Helper()
	p := hv.Platform(serverDom)
	ev, err := p.Events.AllocUnbound(clientDom)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := p.Memory.Grant(clientDom, 1)
	if err != nil {
		t.Fatal(err)
	}
	page := shared.Pages()[0]
	binary.LittleEndian.PutUint16(page[vchan.OffsetLeftOrder:], uint16(left))
	binary.LittleEndian.PutUint16(page[vchan.OffsetRightOrder:], uint16(right))
	page[vchan.OffsetCliLive] = byte(vchan.LiveWaiting)
	page[vchan.OffsetSrvLive] = byte(vchan.LiveConnected)
	page[vchan.OffsetCliNotify] = vchan.NotifyWrite
	off := vchan.OffsetGrants
	for _, order := range []int{left, right} {
		if order < vchan.PageShift || order > vchan.MaxRingOrder {
			continue
		}
		ps, err := p.Memory.Grant(clientDom, 1<<(order-vchan.PageShift))
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range ps.Refs() {
			if off+4 <= vchan.PageSize {
				put32(page, off, uint32(ref))
			}
			off += 4
		}
	}
	edit(page)
	if refText == "" {
		refText = strconv.FormatUint(uint64(shared.Refs()[0]), 10)
	}
	dir := vchan.Dir("/local/domain/0", clientDom, testPort)
	err = p.Store.Publish([]vchan.Entry{
		{Path: dir + "/" + vchan.KeyRingRef, Value: refText},
		{Path: dir + "/" + vchan.KeyEventChannel, Value: strconv.FormatUint(uint64(ev.Port()), 10)},
	}, clientDom)
	if err != nil {
		t.Fatal(err)
	}
	return page, ev
}

// TestHostileServer feeds Dial shared pages a correct server never writes.
// A nil wantErr means any error will do (the platform refuses first).
func TestHostileServer(t *testing.T) {
	none := func([]byte) {}
	tests := []struct {
		name        string
		left, right int
		edit        func(page []byte)
		refText     string
		wantOK      bool
		wantErr     error
	}{
		{name: "well-formed in-page rings", left: 10, right: 11, edit: none, wantOK: true},
		{name: "well-formed page rings", left: 12, right: 14, edit: none, wantOK: true},
		{name: "well-formed largest rings", left: 20, right: 20, edit: none, wantOK: true},
		{name: "both rings at offset 1024", left: 10, right: 10, edit: none, wantErr: vchan.ErrProtocol},
		{name: "order below 10", left: 9, right: 11, edit: none, wantErr: vchan.ErrProtocol},
		{name: "order above 20", left: 21, right: 12, edit: none, wantErr: vchan.ErrProtocol},
		{name: "order 65535", left: 0xffff, right: 12, edit: none, wantErr: vchan.ErrProtocol},
		{name: "grant array runs into the 1 KiB ring", left: 20, right: 10, edit: none, wantErr: vchan.ErrProtocol},
		{name: "server live garbage", left: 10, right: 11, edit: func(p []byte) { p[vchan.OffsetSrvLive] = 9 }, wantErr: vchan.ErrProtocol},
		{name: "server live waiting", left: 10, right: 11, edit: func(p []byte) { p[vchan.OffsetSrvLive] = 2 }, wantErr: vchan.ErrProtocol},
		{name: "server already exited", left: 10, right: 11, edit: func(p []byte) { p[vchan.OffsetSrvLive] = 0 }, wantErr: vchan.ErrPeerClosed},
		{name: "another client attached", left: 10, right: 11, edit: func(p []byte) { p[vchan.OffsetCliLive] = 1 }, wantErr: vchan.ErrProtocol},
		{name: "right ring overfull", left: 10, right: 11, edit: func(p []byte) { put32(p, vchan.OffsetRightProd, 2049) }, wantErr: vchan.ErrProtocol},
		{name: "left consumer ahead", left: 10, right: 11, edit: func(p []byte) { put32(p, vchan.OffsetLeftCons, 1) }, wantErr: vchan.ErrProtocol},
		{name: "bogus ring grant ref", left: 12, right: 11, edit: func(p []byte) { put32(p, vchan.OffsetGrants, 99999) }},
		{name: "ring-ref not a number", left: 10, right: 11, edit: none, refText: "12abc"},
		{name: "ring-ref zero", left: 10, right: 11, edit: none, refText: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hv := host.New()
			fakeServer(t, hv, tt.left, tt.right, tt.edit, tt.refText)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := vchan.Dial(ctx, hv.Platform(clientDom), serverDom, testPort)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial accepted the page")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Dial: %v, want %v", err, tt.wantErr)
			}
			if u := hv.Usage(clientDom); u.Mappings != 0 || u.Ports != 0 {
				t.Errorf("failed Dial left %+v behind", u)
			}
		})
	}
}
