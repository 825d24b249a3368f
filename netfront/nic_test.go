package netfront

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/netdev"
)

func TestHandshake(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	if got := n.MAC().String(); got != testMAC {
		t.Errorf("MAC %s, want %s", got, testMAC)
	}
	if n.MTU() != 1500 || !n.LinkUp() {
		t.Errorf("MTU %d, link up %v", n.MTU(), n.LinkUp())
	}
	pub := r.be.keys()
	for k, want := range map[string]string{"request-rx-copy": "1", "feature-rx-notify": "1", "feature-sg": "1", "feature-no-csum-offload": "1"} {
		if pub[k] != want {
			t.Errorf("frontend key %s = %q, want %q", k, pub[k], want)
		}
	}
	for _, k := range []string{"tx-ring-ref", "rx-ring-ref", "event-channel"} {
		if pub[k] == "" {
			t.Errorf("frontend key %s missing", k)
		}
	}
	// One queue, one event channel, no offloads.
	for _, k := range []string{"multi-queue-num-queues", "event-channel-tx", "feature-gso-tcpv4"} {
		if v, ok := pub[k]; ok {
			t.Errorf("frontend wrote %s = %q", k, v)
		}
	}
	if s, _ := r.srv.Get(feDirAbs + "/state"); s != "4" {
		t.Errorf("frontend state %s, want 4 (Connected)", s)
	}
	// The rx ring is full of buffers, each granted writable.
	waitFor(t, "the rx ring to fill", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.conn != nil && n.conn.rx.Outstanding() == 256
	})
	// Ring pages, 256 rx grants and nothing for tx.
	if g := r.grants.liveCount(); g != 2+256 {
		t.Errorf("%d grants live, want 258", g)
	}
}

// TestMACSource: the backend's mac wins; without it the frontend's.
func TestMACSource(t *testing.T) {
	r := newRig(t, &backendOpts{keys: map[string]string{"mac": "00:16:3e:00:00:07"}})
	if n := r.open(); n.MAC().String() != "00:16:3e:00:00:07" {
		t.Errorf("MAC %v, want the backend's", n.MAC())
	}
	r = newRig(t, &backendOpts{keys: map[string]string{"mac": "<absent>"}})
	if n := r.open(); n.MAC().String() != testMAC {
		t.Errorf("MAC %v, want the frontend's", n.MAC())
	}
}

func TestTransmitReceive(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	sizes := []int{14, 60, 64, 1000, 1514, 1518}
	for i, size := range sizes {
		f := frame(size, byte(i))
		if err := n.Transmit(r.ctx, f); err != nil {
			t.Fatalf("Transmit %d bytes: %v", size, err)
		}
		if got := r.sent(); !bytes.Equal(got, f) {
			t.Fatalf("backend got %d bytes, want the %d-byte frame", len(got), size)
		}
		r.be.inject(f)
		got, err := r.receive(n, 2048)
		if err != nil || !bytes.Equal(got, f) {
			t.Fatalf("Receive = %d bytes, %v; want the %d-byte frame", len(got), err, size)
		}
	}
	waitFor(t, "transmit pages to come back", func() bool {
		return n.Stats().TxFrames == uint64(len(sizes)) && len(n.txFreeCopy()) == DefaultTxBuffers
	})
	s := n.Stats()
	want := Stats{RxFrames: 6, RxBytes: 4170, TxFrames: 6, TxBytes: 4170}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// txFreeCopy is for tests: the free transmit slots.
func (n *NIC) txFreeCopy() []uint16 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]uint16(nil), n.txFree...)
}

// TestBurst sends and receives many frames at once, from several
// goroutines, with the rings wrapping many times.
func TestBurst(t *testing.T) {
	r := newRig(t, &backendOpts{rxOffset: 2})
	n := r.open()
	const count = 2000
	errc := make(chan error, 4)
	for g := range 2 {
		go func() {
			for i := g; i < count; i += 2 {
				if err := n.Transmit(r.ctx, frame(60+i%1400, byte(i))); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	go func() {
		for i := range count {
			r.be.inject(frame(60+i%1400, byte(i)))
			if i%64 == 63 {
				for r.be.queued() > 128 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
		errc <- nil
	}()
	got := map[int]int{}
	buf := make([]byte, 2048)
	for range count {
		k, err := n.Receive(r.ctx, buf)
		if err != nil {
			t.Fatal(err)
		}
		got[k]++
		if i := k - 60; !bytes.Equal(buf[:k], frame(k, byte(i))) && !bytes.Equal(buf[:k], frame(k, byte(i+1400))) {
			t.Fatalf("received %d bytes that match no frame sent", k)
		}
	}
	for range count {
		<-r.be.sent
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	s := n.Stats()
	if s.RxFrames != count || s.TxFrames != count || s.RxBad+s.TxBad+s.RxDropped+s.TxErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestJumbo: with feature-sg, a 9000-byte MTU sends frames over three
// pages and receives them in chains; without it the MTU is 1500.
func TestJumbo(t *testing.T) {
	for _, off := range []int{0, 64} {
		r := newRig(t, &backendOpts{frontKeys: map[string]string{"mtu": "9000"}, rxOffset: off})
		n := r.open()
		if n.MTU() != 9000 {
			t.Fatalf("MTU %d", n.MTU())
		}
		for _, size := range []int{4096, 4097, 8192 + 64, 9018} {
			f := frame(size, byte(size))
			if err := n.Transmit(r.ctx, f); err != nil {
				t.Fatalf("Transmit %d: %v", size, err)
			}
			if got := r.sent(); !bytes.Equal(got, f) {
				t.Fatalf("backend got %d bytes of %d", len(got), size)
			}
			r.be.inject(f)
			got, err := r.receive(n, 9018)
			if err != nil || !bytes.Equal(got, f) {
				t.Fatalf("offset %d: Receive = %d bytes, %v; want %d", off, len(got), err, size)
			}
		}
		r.be.mu.Lock()
		slots := append([]int(nil), r.be.txSlots...)
		r.be.mu.Unlock()
		if diff := cmp.Diff([]int{1, 2, 3, 3}, slots); diff != "" {
			t.Errorf("tx slots per packet (-want +got):\n%s", diff)
		}
		if err := n.Transmit(r.ctx, frame(9019, 0)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Transmit of MTU+19 bytes: %v", err)
		}
	}
	r := newRig(t, &backendOpts{frontKeys: map[string]string{"mtu": "9000"}, keys: map[string]string{"feature-sg": "0"}})
	if n := r.open(); n.MTU() != 1500 {
		t.Errorf("MTU %d without feature-sg, want 1500", n.MTU())
	}
}

func TestFrameSize(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	for _, size := range []int{0, 13, 1519, 70000} {
		if err := n.Transmit(r.ctx, make([]byte, size)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Transmit of %d bytes: %v", size, err)
		}
	}
	// Received frames out of range are dropped and counted.
	r.be.inject(make([]byte, 13))
	r.be.inject(frame(1519, 1))
	r.be.inject(frame(100, 2))
	got, err := r.receive(n, 2048)
	if err != nil || !bytes.Equal(got, frame(100, 2)) {
		t.Fatalf("Receive = %d bytes, %v", len(got), err)
	}
	if s := n.Stats(); s.RxOversize != 2 || s.RxFrames != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReceiveSmallBuffer(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	r.be.inject(frame(1000, 1))
	r.be.inject(frame(100, 2))
	got, err := r.receive(n, 500)
	if err != nil || !bytes.Equal(got, frame(100, 2)) {
		t.Fatalf("Receive = %d bytes, %v; want the second frame", len(got), err)
	}
	if s := n.Stats(); s.RxDropped != 1 || s.RxFrames != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReceiveContext(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	ctx, cancel := context.WithTimeout(r.ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := n.Receive(ctx, make([]byte, 2048)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive = %v, want the context's error", err)
	}
}

// TestTransmitWaits: with every transmit page in flight, Transmit waits
// while its context lasts, and goes on once pages come back.
func TestTransmitWaits(t *testing.T) {
	opts := &backendOpts{}
	opts.noAnswer.Store(true)
	r := newRig(t, opts)
	r.cfg.TxBuffers = 4
	n := r.open()
	for i := range 4 {
		if err := n.Transmit(r.ctx, frame(60, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Millisecond)
	defer cancel()
	if err := n.Transmit(ctx, frame(60, 9)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Transmit with no free page = %v, want the context's error", err)
	}
	done := make(chan error)
	go func() { done <- n.Transmit(r.ctx, frame(60, 10)) }()
	time.Sleep(10 * time.Millisecond)
	opts.noAnswer.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Transmit still waiting after the backend answered")
	}
	for range 5 {
		r.sent()
	}
}

func TestClose(t *testing.T) {
	r := newRig(t, nil)
	n, err := New(r.ctx, r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.be.inject(frame(100, 1)) // left unread
	if err := n.Transmit(r.ctx, frame(100, 2)); err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, err := n.Receive(context.Background(), make([]byte, 10)) // too small: drops, then waits
		recvErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-recvErr:
		if !errors.Is(err, netdev.ErrDown) {
			t.Errorf("Receive during Close = %v, want ErrDown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive still blocked after Close")
	}
	if err := n.Close(); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("second Close = %v", err)
	}
	if err := n.Transmit(r.ctx, frame(60, 0)); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Transmit after Close = %v", err)
	}
	if _, err := n.Receive(r.ctx, make([]byte, 100)); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Receive after Close = %v", err)
	}
	if g := r.grants.liveCount(); g != 0 {
		t.Errorf("%d grants left", g)
	}
	if m := r.mem.Live(); m != 0 {
		t.Errorf("%d DMA regions left", m)
	}
	if e := r.events.open(); e != 0 {
		t.Errorf("%d event channels left", e)
	}
	if s, _ := r.srv.Get(feDirAbs + "/state"); s != "6" {
		t.Errorf("frontend state %s, want 6 (Closed)", s)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts *backendOpts
		edit func(r *rig)
		want string
	}{
		{name: "no rx copy", opts: &backendOpts{keys: map[string]string{"feature-rx-copy": "<absent>"}}, want: "feature-rx-copy"},
		{name: "bad mac", opts: &backendOpts{keys: map[string]string{"mac": "00:16:3e:00:00"}}, want: "mac"},
		{name: "no mac", opts: &backendOpts{keys: map[string]string{"mac": "<absent>"}, frontKeys: map[string]string{"mac": "<absent>"}}, want: "mac"},
		{name: "bad mtu", opts: &backendOpts{frontKeys: map[string]string{"mtu": "1500x"}}, want: "mtu"},
		{name: "no event channel", edit: func(r *rig) { r.events.fail = true }, want: "event channel"},
		{name: "no grants", edit: func(r *rig) { r.grants.max = 1 }, want: "granting the rx ring"},
		{name: "no memory", edit: func(r *rig) { r.cfg.Memory = dmatest.New(300 * PageSize) }, want: "transmit pages"},
		{name: "no memory for rings", edit: func(r *rig) { r.cfg.Memory = dmatest.New(512 * PageSize) }, want: "ring pages"},
		{name: "no such vif", edit: func(r *rig) { r.cfg.Device = "7" }, want: "vif 7"},
		{name: "too few rx buffers", edit: func(r *rig) { r.cfg.RxBuffers = 18 }, want: "RxBuffers"},
		{name: "too many tx buffers", edit: func(r *rig) { r.cfg.TxBuffers = 257 }, want: "TxBuffers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			if tc.edit != nil {
				tc.edit(r)
			}
			n, err := New(r.ctx, r.cfg)
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error mentioning %q", err, tc.want)
			}
			if g := r.grants.liveCount(); g != 0 {
				t.Errorf("%d grants left", g)
			}
			if m, ok := r.cfg.Memory.(*dmatest.Memory); ok && m.Live() != 0 {
				t.Errorf("%d DMA regions left", m.Live())
			}
		})
	}
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Error("New with an empty Config succeeded")
	}
}
