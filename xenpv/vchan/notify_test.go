package vchan_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/host"
)

// countingEvents wraps a platform's event channels and counts Notify calls.
type countingEvents struct {
	vchan.EventChannels
	sent *atomic.Int64
}

func (c countingEvents) AllocUnbound(remote vchan.DomID) (vchan.EventChannel, error) {
	ch, err := c.EventChannels.AllocUnbound(remote)
	if err != nil {
		return nil, err
	}
	return countingChannel{ch, c.sent}, nil
}

func (c countingEvents) BindInterdomain(remote vchan.DomID, port uint32) (vchan.EventChannel, error) {
	ch, err := c.EventChannels.BindInterdomain(remote, port)
	if err != nil {
		return nil, err
	}
	return countingChannel{ch, c.sent}, nil
}

type countingChannel struct {
	vchan.EventChannel
	sent *atomic.Int64
}

func (c countingChannel) Notify() error {
	c.sent.Add(1)
	return c.EventChannel.Notify()
}

// TestNotifyOnlyWhenAsked counts events: an endpoint notifies only when the
// peer has set the matching bit, and a sleeping endpoint sets it.
func TestNotifyOnlyWhenAsked(t *testing.T) {
	hv := host.New()
	var srvSent, cliSent atomic.Int64
	sp := hv.Platform(serverDom)
	sp.Events = countingEvents{sp.Events, &srvSent}
	cp := hv.Platform(clientDom)
	cp.Events = countingEvents{cp.Events, &cliSent}
	srv, err := vchan.Listen(sp, clientDom, testPort, 1024, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := vchan.Dial(context.Background(), cp, serverDom, testPort)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	type counts struct{ Server, Client int64 }
	check := func(step string, want counts) {
		t.Helper()
		got := counts{srvSent.Load(), cliSent.Load()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events sent after %s (-want +got):\n%s", step, diff)
		}
	}
	check("dial", counts{0, 1}) // the client wakes the server once attached

	// A second view of the shared page, to see when a sleeper has posted
	// its request (instead of guessing with a sleep).
	refText, err := cp.Store.WaitRead(context.Background(), vchan.Dir("/local/domain/0", clientDom, testPort)+"/"+vchan.KeyRingRef)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := strconv.ParseUint(refText, 10, 32)
	view, err := cp.Memory.Map(serverDom, []vchan.GrantRef{vchan.GrantRef(ref)}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Release()
	status := (*atomic.Uint32)(unsafe.Pointer(&view.Pages()[0][vchan.OffsetCliLive]))
	waitRequest := func(offset int, bit uint8) {
		t.Helper()
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
			if uint8(status.Load()>>(8*(offset-vchan.OffsetCliLive)))&bit != 0 {
				return
			}
		}
		t.Fatalf("notify bit %d at offset %d never set", bit, offset)
	}

	// The server asked for writes at setup: the first write notifies, the
	// next ones find the bit cleared and stay quiet.
	for range 100 {
		if _, err := cli.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	check("100 client writes", counts{0, 2})

	// Nobody asked the server to report reads.
	buf := make([]byte, 2000)
	if n, err := srv.Read(buf); n != 1000 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	check("server read", counts{0, 2})

	// The client asked for writes when it attached.
	for range 3 {
		if _, err := srv.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	check("3 server writes", counts{1, 2})

	// A reader that goes to sleep asks again, and the next write wakes it.
	got := make(chan int, 1)
	go func() {
		n, _ := srv.Read(buf)
		got <- n
	}()
	waitRequest(vchan.OffsetCliNotify, vchan.NotifyWrite)
	if _, err := cli.Write([]byte("wake")); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 4 {
		t.Errorf("woken Read = %d bytes, want 4", n)
	}
	check("write to a sleeping reader", counts{1, 3})

	// A writer that finds the ring full asks for reads; the reader's
	// consumption then wakes it.
	if _, err := srv.Write(make([]byte, 2045)); err != nil { // 3 bytes already queued: ring now full
		t.Fatal(err)
	}
	check("filling the ring", counts{1, 3})
	wrote := make(chan error, 1)
	go func() {
		_, err := srv.Write([]byte("more"))
		wrote <- err
	}()
	waitRequest(vchan.OffsetCliNotify, vchan.NotifyRead) // the server asks the client in cli_notify
	if _, err := cli.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	// The client's read notified the sleeping writer; the writer's "more"
	// found no request from the client (it is not sleeping).
	check("read from a full ring", counts{1, 4})
}
