package netfront

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/unikgo/unikgo/netdev"
)

// closeAndHold takes the backend to Closing and waits until the driver
// answered, the backend is Closed and the frontend back in Initialising,
// with the backend held there.
func (r *rig) closeAndHold(n *NIC) {
	r.t.Helper()
	r.be.opts.holdClosed.Store(true)
	r.be.closeBackend()
	waitFor(r.t, "the frontend to wait for the backend", func() bool {
		fs, _ := r.srv.Get(feDirAbs + "/state")
		return fs == "1" && r.be.state.Load() == 6 && !n.LinkUp()
	})
}

// TestReconnect takes the backend through Closing and back three times:
// while it is away Transmit drops frames with ErrLinkDown and Receive
// waits; afterwards traffic flows both ways, on fresh rings, with nothing
// leaked.
func TestReconnect(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	for cycle := range 3 {
		f := frame(300, byte(cycle))
		if err := n.Transmit(r.ctx, f); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if !bytes.Equal(r.sent(), f) {
			t.Fatal("wrong frame sent")
		}
		r.closeAndHold(n)
		if err := n.Transmit(r.ctx, f); !errors.Is(err, ErrLinkDown) || errors.Is(err, netdev.ErrDown) {
			t.Errorf("cycle %d: Transmit while the backend is away = %v, want ErrLinkDown", cycle, err)
		}
		recv := make(chan []byte, 1)
		go func() {
			got, err := r.receive(n, 2048)
			if err != nil {
				t.Errorf("Receive across the reconnection: %v", err)
			}
			recv <- got
		}()
		r.be.inject(frame(500, byte(cycle)))
		time.Sleep(10 * time.Millisecond)
		r.be.opts.holdClosed.Store(false)
		select {
		case got := <-recv:
			if !bytes.Equal(got, frame(500, byte(cycle))) {
				t.Fatalf("cycle %d: received %d bytes", cycle, len(got))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no frame after the reconnection")
		}
		if !n.LinkUp() {
			t.Error("link down after the reconnection")
		}
		if err := n.Transmit(r.ctx, f); err != nil {
			t.Fatalf("cycle %d: Transmit after the reconnection: %v", cycle, err)
		}
		r.sent()
	}
	waitFor(t, "every transmit page back", func() bool { return len(n.txFreeCopy()) == DefaultTxBuffers })
	s := n.Stats()
	if s.Reconnects != 3 || s.TxLinkDown != 3 || s.RxFrames != 3 || s.TxFrames != 6 || s.LeakedPages != 0 {
		t.Errorf("stats %+v", s)
	}
	r.be.mu.Lock()
	connects := r.be.connects
	r.be.mu.Unlock()
	if connects != 4 {
		t.Errorf("the backend connected %d times, want 4", connects)
	}
	waitFor(t, "the rx ring to fill", func() bool { return r.grants.liveCount() == 2+256 })
	if e := r.events.open(); e != 1 {
		t.Errorf("%d event channels open, want 1", e)
	}
	checkRxPages(t, n)
}

// TestReconnectKeepsFrames: frames received before the backend left are
// still delivered after.
func TestReconnectKeepsFrames(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	for i := range 3 {
		r.be.inject(frame(100+i, byte(i)))
	}
	waitFor(t, "three frames queued", func() bool { return len(n.rxReady) == 3 })
	r.closeAndHold(n)
	r.be.opts.holdClosed.Store(false)
	waitFor(t, "the reconnection", n.LinkUp)
	for i := range 3 {
		if got, err := r.receive(n, 2048); err != nil || !bytes.Equal(got, frame(100+i, byte(i))) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
		}
	}
	checkRxPages(t, n)
}

// TestReconnectInFlight: frames the backend had not answered when it left
// give their pages back; none is leaked or reused early.
func TestReconnectInFlight(t *testing.T) {
	opts := &backendOpts{}
	opts.noAnswer.Store(true)
	r := newRig(t, opts)
	r.cfg.TxBuffers = 8
	n := r.open()
	for i := range 8 {
		if err := n.Transmit(r.ctx, frame(60, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(n.txFreeCopy()) != 0 {
		t.Fatal("pages free with every frame unanswered")
	}
	opts.noAnswer.Store(false)
	r.closeAndHold(n)
	if got := len(n.txFreeCopy()); got != 8 {
		t.Errorf("%d transmit pages free after the backend left, want 8", got)
	}
	r.be.opts.holdClosed.Store(false)
	waitFor(t, "the reconnection", n.LinkUp)
	for i := range 20 {
		if err := n.Transmit(r.ctx, frame(60, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReconnectFeatures: a backend that comes back without feature-sg
// takes only one-slot frames; the MTU stays.
func TestReconnectFeatures(t *testing.T) {
	r := newRig(t, &backendOpts{frontKeys: map[string]string{"mtu": "9000"}})
	n := r.open()
	if err := n.Transmit(r.ctx, frame(9018, 1)); err != nil {
		t.Fatal(err)
	}
	r.sent()
	r.be.setKey("feature-sg", "0")
	r.be.setKey("mac", "00:16:3e:00:00:09")
	r.closeAndHold(n)
	r.be.opts.holdClosed.Store(false)
	waitFor(t, "the reconnection", n.LinkUp)
	if err := n.Transmit(r.ctx, frame(9018, 1)); !errors.Is(err, ErrFrameSize) {
		t.Errorf("multi-slot frame to a backend without feature-sg: %v", err)
	}
	if err := n.Transmit(r.ctx, frame(1514, 1)); err != nil {
		t.Error(err)
	}
	if n.MTU() != 9000 || n.MAC().String() != testMAC {
		t.Errorf("MTU %d MAC %v changed", n.MTU(), n.MAC())
	}
}

// TestBackendGone: a backend removed after closing, or that stays Closed
// past the reconnect timeout, takes the NIC down.
func TestBackendGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *backendOpts
	}{
		{"removed", &backendOpts{goneAfterClose: true}},
		{"never returns", &backendOpts{stuckAfterClose: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			r.cfg.ReconnectTimeout = 200 * time.Millisecond
			n := r.open()
			recv := make(chan error, 1)
			go func() {
				_, err := r.receive(n, 2048)
				recv <- err
			}()
			r.be.closeBackend()
			select {
			case err := <-recv:
				if !errors.Is(err, netdev.ErrDown) {
					t.Errorf("Receive = %v, want ErrDown", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Receive still waiting for a backend that is gone")
			}
			if err := n.Transmit(r.ctx, frame(60, 0)); !errors.Is(err, netdev.ErrDown) {
				t.Errorf("Transmit = %v, want ErrDown", err)
			}
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if r.grants.liveCount() != 0 || r.mem.Live() != 0 || r.events.open() != 0 {
				t.Errorf("%d grants, %d regions, %d ports left", r.grants.liveCount(), r.mem.Live(), r.events.open())
			}
		})
	}
}

// TestCloseWhileReconnecting: Close does not wait for a backend that is
// away.
func TestCloseWhileReconnecting(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	r.closeAndHold(n)
	done := make(chan error)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung")
	}
	if r.grants.liveCount() != 0 || r.mem.Live() != 0 || r.events.open() != 0 {
		t.Errorf("%d grants, %d regions, %d ports left", r.grants.liveCount(), r.mem.Live(), r.events.open())
	}
}
