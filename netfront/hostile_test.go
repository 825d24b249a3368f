package netfront

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/xenpv/ring"
)

// armed is a one-shot switch for a hostile backend's next answer.
type armed chan struct{}

func newArmed() armed { return make(armed, 1) }
func (a armed) arm()  { a <- struct{}{} }
func (a armed) fire() bool {
	select {
	case <-a:
		return true
	default:
		return false
	}
}

func slot(r RxResponse) (b [RxResponseSize]byte) { r.Put(b[:]); return b }

func extraSlot(e Extra) (b [RxResponseSize]byte) { e.Put(b[:]); return b }

// checkRxPages checks that every receive page is accounted for: free,
// posted, holding a frame, or quarantined, and the free list agrees.
func checkRxPages(t *testing.T, n *NIC) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	count := map[uint8]int{}
	for _, s := range n.rxState {
		count[s]++
	}
	if count[rxFree] != len(n.rxFree) || count[rxQuarantined] != len(n.rxQuar) {
		t.Errorf("rx pages: states %v, %d on the free list, %d quarantined", count, len(n.rxFree), len(n.rxQuar))
	}
	if c := n.conn; c != nil && count[rxPosted] != c.rx.Outstanding() {
		t.Errorf("rx pages: %d posted, %d requests outstanding", count[rxPosted], c.rx.Outstanding())
	}
	if count[rxReady] != 0 {
		// Only frames queued for Receive hold pages; the tests read them.
		var held int
		for range len(n.rxReady) {
			p := <-n.rxReady
			held += p.n
			n.rxReady <- p
		}
		if held != count[rxReady] {
			t.Errorf("rx pages: %d ready, %d held by queued frames", count[rxReady], held)
		}
	}
}

// TestHostileRx has the backend answer one frame with responses a broken
// or malicious backend could write. Each bad packet is dropped and counted
// under its cause; the frame after it arrives intact, and every page is
// accounted for.
func TestHostileRx(t *testing.T) {
	tests := []struct {
		name   string
		rxBufs int
		mangle func(frame []byte, rsps []RxResponse, ids []uint16) [][RxResponseSize]byte
		stat   func(s Stats) uint64
	}{
		{"wrong id", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].ID ^= 1
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"past the page", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Offset = 4000
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"offset 4096 with status 1", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Offset, r[0].Status = 4096, 1
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"error status", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Status = StatusError
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxErrors }},
		{"most negative status", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Status = -32768
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxErrors }},
		{"checksum blank (not negotiated)", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Flags |= RxCsumBlank
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"gso prefix", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Flags |= RxGSOPrefix
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"unknown flag", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Flags |= 0x8000
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"gso extra info (not negotiated)", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Flags |= RxExtraInfo
			return [][8]byte{slot(r[0]), extraSlot(Extra{Type: ExtraGSO, GSOSize: 1448, GSOType: 1})}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"extra info of type 0", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Flags |= RxExtraInfo
			return [][8]byte{slot(r[0]), extraSlot(Extra{Type: 0})}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"extra info chain too long", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			// The chain is cut after maxExtras; the slot after parses as
			// a packet of its own, with a wrong id.
			r[0].Flags |= RxExtraInfo
			out := [][8]byte{slot(r[0])}
			for range maxExtras + 1 {
				out = append(out, extraSlot(Extra{Type: ExtraHash, Flags: ExtraFlagMore}))
			}
			return out
		}, func(s Stats) uint64 { return s.RxBad }},
		{"extra info flag on a later slot", 0, func(_ []byte, r []RxResponse, ids []uint16) [][8]byte {
			r[0].Flags |= RxMoreData
			return [][8]byte{slot(r[0]), slot(RxResponse{ID: ids[1], Flags: RxExtraInfo, Status: 10})}
		}, func(s Stats) uint64 { return s.RxBad }},
		{"chain of 19 data slots", 0, func(_ []byte, r []RxResponse, ids []uint16) [][8]byte {
			var out [][8]byte
			for i := range SlotsMin + 1 {
				f := uint16(RxMoreData)
				if i == SlotsMin {
					f = 0
				}
				out = append(out, slot(RxResponse{ID: ids[i], Flags: f, Status: 10}))
			}
			return out
		}, func(s Stats) uint64 { return s.RxBad }},
		{"chain the backend cannot finish", SlotsMin + 1, func(_ []byte, r []RxResponse, ids []uint16) [][8]byte {
			var out [][8]byte
			for i := range SlotsMin + 1 {
				out = append(out, slot(RxResponse{ID: ids[i], Flags: RxMoreData, Status: 10}))
			}
			return out
		}, func(s Stats) uint64 { return s.RxBad }},
		{"runt frame", 0, func(_ []byte, r []RxResponse, _ []uint16) [][8]byte {
			r[0].Status = 13
			return [][8]byte{slot(r[0])}
		}, func(s Stats) uint64 { return s.RxOversize }},
		{"oversize chain", 0, func(_ []byte, r []RxResponse, ids []uint16) [][8]byte {
			return [][8]byte{
				slot(RxResponse{ID: ids[0], Flags: RxMoreData, Status: 1000}),
				slot(RxResponse{ID: ids[1], Status: 519}),
			}
		}, func(s Stats) uint64 { return s.RxOversize }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newArmed()
			r := newRig(t, &backendOpts{rxMangle: func(f []byte, rsps []RxResponse, ids []uint16) [][RxResponseSize]byte {
				if a.fire() {
					return tc.mangle(f, rsps, ids)
				}
				out := make([][RxResponseSize]byte, len(rsps))
				for i := range rsps {
					out[i] = slot(rsps[i])
				}
				return out
			}})
			r.cfg.RxBuffers = tc.rxBufs
			n := r.open()
			a.arm()
			r.be.inject(frame(100, 1))
			waitFor(t, "the bad packet to be counted", func() bool { return tc.stat(n.Stats()) > 0 })
			for i := range 3 {
				f := frame(200+i, byte(i))
				r.be.inject(f)
				got, err := r.receive(n, 2048)
				if err != nil || !bytes.Equal(got, f) {
					t.Fatalf("frame %d after the bad one: %d bytes, %v", i, len(got), err)
				}
			}
			if s := n.Stats(); s.RxFrames != 3 || s.LeakedPages != 0 {
				t.Errorf("stats %+v", s)
			}
			checkRxPages(t, n)
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if g := r.grants.liveCount(); g != 0 {
				t.Errorf("%d grants left", g)
			}
		})
	}
}

// TestRxMergedChain: a backend that flags more data on a frame's last slot
// makes the next frame its continuation; that is its right, and the driver
// delivers the whole chain as one frame.
func TestRxMergedChain(t *testing.T) {
	a := newArmed()
	r := newRig(t, &backendOpts{rxMangle: func(_ []byte, rsps []RxResponse, _ []uint16) [][RxResponseSize]byte {
		if a.fire() {
			rsps[len(rsps)-1].Flags |= RxMoreData
		}
		out := make([][RxResponseSize]byte, len(rsps))
		for i := range rsps {
			out[i] = slot(rsps[i])
		}
		return out
	}})
	n := r.open()
	a.arm()
	r.be.inject(frame(100, 1))
	time.Sleep(20 * time.Millisecond)
	if len(n.rxReady) != 0 {
		t.Fatal("a frame whose chain is open was delivered")
	}
	r.be.inject(frame(50, 2))
	got, err := r.receive(n, 2048)
	if err != nil || !bytes.Equal(got, append(frame(100, 1), frame(50, 2)...)) {
		t.Fatalf("Receive = %d bytes, %v; want both frames as one", len(got), err)
	}
}

// TestHostileRxKeepsPage: the backend keeps a receive page mapped after
// answering. The packet is dropped (its bytes could still change), the
// page is quarantined and never posted again while mapped, and comes back
// once the backend lets go.
func TestHostileRxKeepsPage(t *testing.T) {
	opts := &backendOpts{}
	r := newRig(t, opts)
	n := r.open()
	opts.keepRxMapped.Store(true)
	r.be.inject(frame(100, 1))
	waitFor(t, "the packet to be dropped", func() bool { return n.Stats().RxBad == 1 })
	if s := n.Stats(); s.LeakedPages != 1 {
		t.Errorf("%d pages quarantined, want 1", s.LeakedPages)
	}
	for i := range 300 { // more than the ring: every other page is reused
		f := frame(60+i, byte(i))
		r.be.inject(f)
		if got, err := r.receive(n, 2048); err != nil || !bytes.Equal(got, f) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
		}
	}
	checkRxPages(t, n)
	// A reconnection makes the backend unmap everything; the driver's
	// retry then takes the page back.
	r.be.closeBackend()
	waitFor(t, "the quarantine to empty", func() bool { return n.Stats().LeakedPages == 0 })
	waitFor(t, "the reconnection", n.LinkUp)
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if r.grants.liveCount() != 0 || r.mem.Live() != 0 {
		t.Errorf("%d grants, %d regions left", r.grants.liveCount(), r.mem.Live())
	}
}

// TestHostileTx has the backend answer one transmitted frame badly. A
// response naming no page in flight is counted and ignored; the page it
// should have freed is taken back once the ring is empty.
func TestHostileTx(t *testing.T) {
	var prev TxResponse
	tests := []struct {
		name              string
		mangle            func(r TxResponse) TxResponse
		bad, errs, orphan uint64
	}{
		{"slot out of range", func(r TxResponse) TxResponse { r.ID |= 0xff; return r }, 1, 0, 1},
		{"free slot", func(r TxResponse) TxResponse { r.ID ^= 1; return r }, 1, 0, 1},
		{"stale generation", func(r TxResponse) TxResponse { r.ID += 1 << txSlotBits; return r }, 1, 0, 1},
		{"repeat of the previous response", func(r TxResponse) TxResponse { return prev }, 1, 0, 1},
		{"null status", func(r TxResponse) TxResponse { r.Status = StatusNull; return r }, 1, 0, 1},
		{"unknown status", func(r TxResponse) TxResponse { r.Status = 9; return r }, 1, 0, 0},
		{"error status", func(r TxResponse) TxResponse { r.Status = StatusError; return r }, 0, 1, 0},
		{"dropped status", func(r TxResponse) TxResponse { r.Status = StatusDropped; return r }, 0, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newArmed()
			r := newRig(t, &backendOpts{txMangle: func(_ []TxRequest, rsps []TxResponse) []TxResponse {
				if a.fire() {
					rsps[0] = tc.mangle(rsps[0])
				} else {
					prev = rsps[0]
				}
				return rsps
			}})
			r.cfg.TxBuffers = 8
			n := r.open()
			if err := n.Transmit(r.ctx, frame(60, 0)); err != nil {
				t.Fatal(err)
			}
			r.sent()
			waitFor(t, "the first page back", func() bool { return len(n.txFreeCopy()) == 8 })
			a.arm()
			if err := n.Transmit(r.ctx, frame(60, 1)); err != nil {
				t.Fatal(err)
			}
			r.sent()
			waitFor(t, "every page back", func() bool { return len(n.txFreeCopy()) == 8 })
			s := n.Stats()
			if s.TxBad != tc.bad || s.TxErrors != tc.errs || s.TxOrphans != tc.orphan {
				t.Errorf("bad %d errors %d orphans %d, want %d %d %d", s.TxBad, s.TxErrors, s.TxOrphans, tc.bad, tc.errs, tc.orphan)
			}
			// The NIC still works, for more frames than there are pages.
			for i := range 20 {
				if err := n.Transmit(r.ctx, frame(61, byte(i))); err != nil {
					t.Fatal(err)
				}
				r.sent()
			}
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if g := r.grants.liveCount(); g != 0 {
				t.Errorf("%d grants left", g)
			}
		})
	}
}

// TestHostileTxKeepsPage: a transmit page the backend keeps mapped is
// quarantined, not reused, and comes back once the backend lets go.
func TestHostileTxKeepsPage(t *testing.T) {
	opts := &backendOpts{}
	r := newRig(t, opts)
	r.cfg.TxBuffers = 4
	n := r.open()
	opts.keepTxMapped.Store(true)
	for i := range 20 {
		if err := n.Transmit(r.ctx, frame(60, byte(i))); err != nil {
			t.Fatal(err)
		}
		r.sent()
	}
	waitFor(t, "three pages back", func() bool { return len(n.txFreeCopy()) == 3 })
	if s := n.Stats(); s.LeakedPages != 1 {
		t.Errorf("%d pages quarantined, want 1", s.LeakedPages)
	}
	r.be.closeBackend()
	waitFor(t, "the quarantine to empty", func() bool { return n.Stats().LeakedPages == 0 && len(n.txFreeCopy()) == 4 })
}

// TestProducerOverrun: a backend claiming more responses than requests on
// either ring takes the NIC down, without a panic or a hang.
func TestProducerOverrun(t *testing.T) {
	for _, which := range []string{"rx", "tx"} {
		t.Run(which, func(t *testing.T) {
			a := newArmed()
			scribble := func(r *ring.Back) {
				if a.fire() {
					r.Shared().Store(ring.RspProd, r.ProducedIndex()+300)
				}
			}
			opts := &backendOpts{}
			if which == "rx" {
				opts.rxAfterPush = scribble
			} else {
				opts.txAfterPush = scribble
			}
			r := newRig(t, opts)
			n := r.open()
			a.arm()
			recv := make(chan error, 1)
			go func() {
				// The frame itself may be taken before the scribble.
				for {
					if _, err := n.Receive(r.ctx, make([]byte, 2048)); err != nil {
						recv <- err
						return
					}
				}
			}()
			if which == "rx" {
				r.be.inject(frame(100, 1))
			} else {
				n.Transmit(r.ctx, frame(100, 1))
			}
			select {
			case err := <-recv:
				if !errors.Is(err, netdev.ErrDown) || !errors.Is(err, ErrBackendBroken) {
					t.Errorf("Receive = %v, want ErrDown and ErrBackendBroken", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Receive still waiting on a broken ring")
			}
			if err := n.Transmit(r.ctx, frame(60, 0)); !errors.Is(err, netdev.ErrDown) {
				t.Errorf("Transmit after = %v", err)
			}
			done := make(chan error)
			go func() { done <- n.Close() }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Close hung")
			}
			if g := r.grants.liveCount(); g != 0 {
				t.Errorf("%d grants left", g)
			}
		})
	}
}

// TestBrokenEventChannel: an event channel that fails takes the NIC down.
func TestBrokenEventChannel(t *testing.T) {
	r := newRig(t, nil)
	n := r.open()
	ch := r.events.lookup(10)
	ch.broken.Store(true)
	ch.kick()
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if _, err := n.Receive(ctx, make([]byte, 2048)); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Receive = %v, want ErrDown", err)
	}
}
