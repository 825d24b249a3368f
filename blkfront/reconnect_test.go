package blkfront

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unikgo/unikgo/blockdev"
)

// TestReconnectReissuesWrites holds writes at the backend, closes the
// backend (dropping them unperformed) and checks that after the
// reconnection every write is re-issued and lands, that none was
// acknowledged before it was performed, and that nothing leaks.
func TestReconnectReissuesWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys map[string]string
	}{
		{"direct", nil},
		{"indirect multi-page ring", map[string]string{"max-ring-page-order": "2", "feature-max-indirect-segments": "64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, backendOpts{keys: tc.keys, sectors: 8192})
			model := r.be.fill(6)
			d := r.open()
			r.be.setHold(true)
			const writers = 8
			var acked atomic.Int32
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					off := i * 300 * 1024
					data := bytes.Repeat([]byte{byte(0xA0 + i)}, 100*1024+i*512)
					if _, err := d.WriteAt(data, int64(off)); err != nil {
						errs <- fmt.Errorf("writer %d: %w", i, err)
						return
					}
					acked.Add(1)
				}()
				copy(model[i*300*1024:], bytes.Repeat([]byte{byte(0xA0 + i)}, 100*1024+i*512))
			}
			// Every writer has write requests held at the backend; then a
			// flush joins them.
			waitFor(t, "writes to be held", func() bool { return r.be.heldCount() >= writers })
			flushed := make(chan error, 1)
			go func() { flushed <- d.Flush() }()
			heldFlushes := func() int {
				r.be.mu.Lock()
				defer r.be.mu.Unlock()
				n := 0
				for _, h := range r.be.held {
					switch h.op {
					case OpWrite:
					case OpFlushDiskCache:
						n++
					default:
						t.Errorf("held a %v, want only writes and a flush", h.op)
					}
				}
				return n
			}
			waitFor(t, "the flush to be held", func() bool { return heldFlushes() == 1 })
			if n := acked.Load(); n != 0 {
				t.Fatalf("%d writes acknowledged while the backend held them", n)
			}
			r.be.closeBackend()
			r.be.setHold(false)
			wg.Wait()
			if err := <-flushed; err != nil {
				t.Errorf("Flush in flight across the reconnection = %v", err)
			}
			r.be.mu.Lock()
			if r.be.flushes != 1 {
				t.Errorf("backend performed %d flushes, want the re-issued one", r.be.flushes)
			}
			r.be.mu.Unlock()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if disk := r.be.diskCopy(); !bytes.Equal(disk, model) {
				t.Fatalf("disk differs from the model at byte %d after the reconnection", firstDiff(disk, model))
			}
			s := d.Stats()
			if s.Reconnects != 1 || s.Reissued == 0 {
				t.Errorf("stats %+v: want 1 reconnect and some re-issues", s)
			}
			if st, _ := r.srv.Get(feDirAbs + "/state"); st != "4" {
				t.Errorf("frontend state %s after the reconnection, want 4", st)
			}
			// Still usable, and clean at Close.
			if err := d.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := r.grants.liveCount(); n != 0 {
				t.Errorf("%d grants left", n)
			}
			if n := r.mem.Live(); n != 0 {
				t.Errorf("%d DMA regions left", n)
			}
			if n := r.events.open(); n != 0 {
				t.Errorf("%d event channels open", n)
			}
		})
	}
}

// TestReconnectResplits: requests held on an indirect connection are
// re-split when the backend comes back without indirect segments.
func TestReconnectResplits(t *testing.T) {
	r := newRig(t, backendOpts{keys: map[string]string{"feature-max-indirect-segments": "64"}, sectors: 8192})
	model := r.be.fill(8)
	d := r.open()
	r.be.setHold(true)
	data := bytes.Repeat([]byte{0x5A}, 256*1024)
	done := make(chan error, 1)
	go func() {
		_, err := d.WriteAt(data, 64*1024)
		done <- err
	}()
	// Both 32-segment requests must be held: one still on the ring would
	// be performed by the closing backend, as blkback finishes what it
	// has taken.
	waitFor(t, "the write to be held", func() bool { return r.be.heldCount() >= 2 })
	r.be.setKey("feature-max-indirect-segments", "<absent>")
	r.be.mu.Lock()
	r.be.segCounts = nil
	r.be.mu.Unlock()
	r.be.closeBackend()
	r.be.setHold(false)
	if err := <-done; err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	copy(model[64*1024:], data)
	if !bytes.Equal(r.be.diskCopy(), model) {
		t.Fatal("disk differs after the re-split write")
	}
	r.be.mu.Lock()
	counts := r.be.segCounts
	r.be.mu.Unlock()
	total := 0
	for _, n := range counts {
		if n > MaxSegments {
			t.Errorf("a request with %d segments reached a backend without indirect", n)
		}
		total += n
	}
	if total < 64 {
		t.Errorf("%d segments written after the reconnection, want at least 64", total)
	}
}

// TestBackendGone: a backend that is removed, or that never comes back,
// fails the requests in flight and later calls with blockdev.ErrClosed.
func TestBackendGone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    backendOpts
		timeout time.Duration
	}{
		// Removal is noticed at once, whatever the timeout.
		{"removed while closing", backendOpts{goneAfterClose: true}, time.Hour},
		{"removed after closing", backendOpts{goneAfterReinit: true}, time.Hour},
		{"stuck in Closed", backendOpts{stuckAfterClose: true}, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			r.cfg.ReconnectTimeout = tc.timeout
			d := r.open()
			r.be.setHold(true)
			done := make(chan error, 1)
			go func() {
				_, err := d.WriteAt(make([]byte, 4096), 0)
				done <- err
			}()
			waitFor(t, "the write to be held", func() bool { return r.be.heldCount() >= 1 })
			r.be.closeBackend()
			select {
			case err := <-done:
				if !errors.Is(err, blockdev.ErrClosed) {
					t.Errorf("WriteAt in flight = %v, want ErrClosed", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("WriteAt in flight never returned")
			}
			if _, err := d.ReadAt(make([]byte, 512), 0); !errors.Is(err, blockdev.ErrClosed) {
				t.Errorf("ReadAt after = %v, want ErrClosed", err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
			if n := r.grants.liveCount(); n != 0 {
				t.Errorf("%d grants left", n)
			}
		})
	}
}

// TestCloseWaitsForCalls: Close lets calls already made finish, refuses
// new ones, and takes xenbus through Closing to Closed.
func TestCloseWaitsForCalls(t *testing.T) {
	r := newRig(t, backendOpts{})
	d := r.open()
	r.be.setHold(true)
	done := make(chan error, 1)
	go func() {
		_, err := d.WriteAt(make([]byte, 4096), 0)
		done <- err
	}()
	waitFor(t, "the write to be held", func() bool { return r.be.heldCount() >= 1 })
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	waitFor(t, "Close to start", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.closing
	})
	if _, err := d.ReadAt(make([]byte, 512), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("ReadAt during Close = %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v with a write in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	r.be.setHold(false)
	if err := <-done; err != nil {
		t.Errorf("write in flight at Close = %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if st, _ := r.srv.Get(feDirAbs + "/state"); st != "6" {
		t.Errorf("frontend state %s after Close, want 6", st)
	}
	if err := d.Close(); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}
