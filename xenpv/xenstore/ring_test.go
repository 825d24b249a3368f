package xenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pendingBit models one direction of an event channel: notifications
// coalesce and are never lost.
type pendingBit struct {
	ch    chan struct{}
	count atomic.Int64
}

func newPendingBit() *pendingBit { return &pendingBit{ch: make(chan struct{}, 1)} }

func (p *pendingBit) notify() error {
	p.count.Add(1)
	select {
	case p.ch <- struct{}{}:
	default:
	}
	return nil
}

func (p *pendingBit) wait(ctx context.Context) error {
	select {
	case <-p.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ringPair returns both ends of a ring on one page.
func ringPair(page []byte) (guest, server *RingConn, toServer, toGuest *pendingBit) {
	toServer, toGuest = newPendingBit(), newPendingBit()
	guest = NewRingConn(page, toServer.notify, toGuest.wait)
	server = NewRingServerConn(page, toGuest.notify, toServer.wait)
	return
}

func TestRingStreamWraps(t *testing.T) {
	page := make([]byte, 4096)
	// Start near the top of the index space so the u32 indices wrap too.
	for _, off := range []int{RingReqConsOff, RingReqProdOff, RingRspConsOff, RingRspProdOff} {
		binary.LittleEndian.PutUint32(page[off:], 0xffffff00)
	}
	guest, server, _, _ := ringPair(page)
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 50000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	// Echo server: everything the guest sends comes back on rsp.
	go func() {
		buf := make([]byte, 700)
		for {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	defer server.Close()
	errc := make(chan error, 1)
	go func() {
		for rest := data; len(rest) > 0; {
			n := 1 + rng.IntN(3000)
			if n > len(rest) {
				n = len(rest)
			}
			if _, err := guest.Write(rest[:n]); err != nil {
				errc <- err
				return
			}
			rest = rest[n:]
		}
		errc <- nil
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(guest, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed data differs")
	}
}

func put32(page []byte, off int, v uint32) { binary.LittleEndian.PutUint32(page[off:], v) }

func TestRingHostileIndices(t *testing.T) {
	tests := []struct {
		name  string
		setup func(page []byte)
		read  bool // exercise Read (else Write)
	}{
		{"rsp_prod far ahead", func(p []byte) { put32(p, RingRspProdOff, 1025) }, true},
		{"rsp_prod behind cons", func(p []byte) { put32(p, RingRspConsOff, 10); put32(p, RingRspProdOff, 9) }, true},
		{"rsp_prod huge", func(p []byte) { put32(p, RingRspProdOff, 0xffffffff) }, true},
		{"req_cons ahead of prod", func(p []byte) { put32(p, RingReqConsOff, 1) }, false},
		{"req_cons far behind", func(p []byte) { put32(p, RingReqProdOff, 2000); put32(p, RingReqConsOff, 975) }, false},
		{"error field", func(p []byte) {
			put32(p, RingServerFeaturesOff, FeatureError)
			put32(p, RingErrorOff, RingErrorRingIdx)
		}, true},
		{"error field on write", func(p []byte) { put32(p, RingServerFeaturesOff, FeatureError); put32(p, RingErrorOff, 99) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page := make([]byte, 4096)
			tc.setup(page)
			r := NewRingConn(page, func() error { return nil }, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
			var err error
			if tc.read {
				_, err = r.Read(make([]byte, 2000))
			} else {
				_, err = r.Write(make([]byte, 100))
			}
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
			// The connection stays failed.
			if _, err := r.Write([]byte{1}); !errors.Is(err, ErrProtocol) {
				t.Errorf("after failure, Write = %v", err)
			}
		})
	}
}

func TestRingErrorFieldIgnoredWithoutFeature(t *testing.T) {
	page := make([]byte, 4096)
	put32(page, RingErrorOff, RingErrorProto) // feature bit not set: field is not live
	r := NewRingConn(page, func() error { return nil }, func(ctx context.Context) error { return nil })
	if _, err := r.Write([]byte("x")); err != nil {
		t.Errorf("Write = %v", err)
	}
}

func TestRingPeerRewritesOurIndex(t *testing.T) {
	page := make([]byte, 4096)
	guest, server, _, _ := ringPair(page)
	if _, err := guest.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	put32(page, RingReqProdOff, 3) // the peer rewinds our producer index
	if _, err := guest.Write([]byte("x")); !errors.Is(err, ErrProtocol) {
		t.Errorf("guest Write = %v, want ErrProtocol", err)
	}
	buf := make([]byte, 10)
	if _, err := server.Read(buf); err != nil { // 3 bytes look available to the server
		t.Fatal(err)
	}
	put32(page, RingReqConsOff, 0) // and now the guest rewinds the server's
	if _, err := server.Read(buf); !errors.Is(err, ErrProtocol) {
		t.Errorf("server Read = %v, want ErrProtocol", err)
	}
}

func TestRingFullWaitsForConsumer(t *testing.T) {
	page := make([]byte, 4096)
	guest, server, toServer, toGuest := ringPair(page)
	done := make(chan error, 1)
	go func() {
		_, err := guest.Write(make([]byte, 3000))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Write of 3000 bytes into a 1024-byte ring returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if got := binary.LittleEndian.Uint32(page[RingReqProdOff:]); got != 1024 {
		t.Errorf("req_prod = %d while full, want 1024", got)
	}
	buf := make([]byte, 3000)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if toServer.count.Load() < 3 || toGuest.count.Load() < 3 {
		t.Errorf("notifications: %d to server, %d to guest; each side must notify after producing and consuming", toServer.count.Load(), toGuest.count.Load())
	}
}

func TestRingCloseAndContext(t *testing.T) {
	page := make([]byte, 4096)
	guest, _, _, _ := ringPair(page)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := guest.ReadContext(ctx, make([]byte, 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadContext = %v", err)
	}
	// Several blocked readers and a blocked writer all wake on Close.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := guest.Read(make([]byte, 1))
			errs <- err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := guest.Write(make([]byte, 5000))
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	guest.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked call returned %v, want ErrClosed", err)
		}
	}
}

func TestRingNotifyAndWaitErrors(t *testing.T) {
	boom := errors.New("hypercall failed")
	page := make([]byte, 4096)
	r := NewRingConn(page, func() error { return boom }, func(ctx context.Context) error { return nil })
	if _, err := r.Write([]byte("x")); !errors.Is(err, boom) {
		t.Errorf("Write with failing notify = %v", err)
	}
	page = make([]byte, 4096)
	r = NewRingConn(page, func() error { return nil }, func(ctx context.Context) error { return boom })
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Errorf("Read with failing wait = %v", err)
	}
}

func TestNewRingConnRejectsBadPage(t *testing.T) {
	for name, fn := range map[string]func(){
		"short": func() {
			NewRingConn(make([]byte, 2079), func() error { return nil }, func(context.Context) error { return nil })
		},
		"unaligned": func() {
			NewRingConn(make([]byte, 4097)[1:], func() error { return nil }, func(context.Context) error { return nil })
		},
		"nil funcs": func() { NewRingConn(make([]byte, 4096), nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}
