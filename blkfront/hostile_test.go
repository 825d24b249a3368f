package blkfront

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/ring"
)

// TestHostileResponses has a backend answer each read with responses a
// broken or malicious backend could produce. Each bad response fails only
// its own request (or is dropped and counted); the disk keeps working.
func TestHostileResponses(t *testing.T) {
	tests := []struct {
		name    string
		mangle  func(req backReq, rsp Response) []Response
		wantErr error // from the read
		bad     uint64
	}{
		{
			name: "wrong operation",
			mangle: func(_ backReq, rsp Response) []Response {
				rsp.Operation = OpWrite
				return []Response{rsp}
			},
			wantErr: ErrBadResponse,
			bad:     1,
		},
		{
			name: "indirect operation echoed",
			mangle: func(_ backReq, rsp Response) []Response {
				rsp.Operation = OpIndirect
				return []Response{rsp}
			},
			wantErr: ErrBadResponse,
			bad:     1,
		},
		{
			name: "unknown status",
			mangle: func(_ backReq, rsp Response) []Response {
				rsp.Status = 7
				return []Response{rsp}
			},
			wantErr: ErrBadResponse,
			bad:     1,
		},
		{
			name: "error status",
			mangle: func(_ backReq, rsp Response) []Response {
				rsp.Status = StatusError
				return []Response{rsp}
			},
			wantErr: ErrIO,
		},
		{
			name: "eopnotsupp on a read",
			mangle: func(_ backReq, rsp Response) []Response {
				rsp.Status = StatusEOPNOTSUPP
				return []Response{rsp}
			},
			wantErr: ErrNotSupported,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			armed := make(chan struct{}, 1)
			opts := backendOpts{mangle: func(req backReq, rsp Response) []Response {
				select {
				case <-armed:
					return tc.mangle(req, rsp)
				default:
					return []Response{rsp}
				}
			}}
			r := newRig(t, opts)
			want := r.be.fill(2)
			d := r.open()
			armed <- struct{}{}
			got := make([]byte, 4096)
			_, err := d.ReadAt(got, 4096)
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, want[4096:8192]) {
					t.Fatalf("ReadAt = %v (data equal: %v)", err, bytes.Equal(got, want[4096:8192]))
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadAt = %v, want %v", err, tc.wantErr)
			}
			if s := d.Stats(); s.BadResponses != tc.bad {
				t.Errorf("%d bad responses counted, want %d", s.BadResponses, tc.bad)
			}
			// The disk still works.
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want[:4096]) {
				t.Errorf("ReadAt after the bad response = %v", err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := r.grants.liveCount(); n != 0 {
				t.Errorf("%d grants left", n)
			}
		})
	}
}

// TestUnknownIDDropped has the backend answer a read with a response
// naming no outstanding request. It is dropped and counted. Under the
// ring's accounting that response took the read's place, so the read
// stays outstanding; the next reconnection re-issues it, and it completes
// with the right data.
func TestUnknownIDDropped(t *testing.T) {
	tests := []struct {
		name string
		id   func(rsp, prev Response) uint64
	}{
		{"slot out of range", func(rsp, _ Response) uint64 { return rsp.ID | 0xffff }},
		{"free slot", func(rsp, _ Response) uint64 { return rsp.ID ^ 1 }},
		{"stale generation", func(rsp, _ Response) uint64 { return rsp.ID + 1<<idSlotBits }},
		{"repeat of the previous response", func(_, prev Response) uint64 { return prev.ID }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			armed := make(chan struct{}, 1)
			var prev Response
			opts := backendOpts{mangle: func(_ backReq, rsp Response) []Response {
				select {
				case <-armed:
					bad := rsp
					bad.ID = tc.id(rsp, prev)
					return []Response{bad}
				default:
					prev = rsp
					return []Response{rsp}
				}
			}}
			r := newRig(t, opts)
			want := r.be.fill(2)
			d := r.open()
			if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
				t.Fatal(err)
			}
			armed <- struct{}{}
			got := make([]byte, 4096)
			done := make(chan error, 1)
			go func() {
				_, err := d.ReadAt(got, 4096)
				done <- err
			}()
			waitFor(t, "the bad response to be dropped", func() bool { return d.Stats().DroppedResponses == 1 })
			select {
			case err := <-done:
				t.Fatalf("ReadAt returned %v on a dropped response", err)
			default:
			}
			r.be.closeBackend()
			if err := <-done; err != nil || !bytes.Equal(got, want[4096:8192]) {
				t.Fatalf("ReadAt after reconnect = %v (data equal: %v)", err, bytes.Equal(got, want[4096:8192]))
			}
			if s := d.Stats(); s.Reconnects != 1 || s.Reissued != 1 || s.DroppedResponses != 1 {
				t.Errorf("stats %+v; want 1 reconnect, 1 re-issue, 1 dropped", s)
			}
		})
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestProducerRacesAhead has the backend claim more responses than
// requests: like Linux blkfront's BLKIF_STATE_ERROR, the disk is disabled,
// without a panic or a hang.
func TestProducerRacesAhead(t *testing.T) {
	armed := make(chan struct{}, 1)
	opts := backendOpts{
		mangle: func(_ backReq, rsp Response) []Response {
			select {
			case <-armed:
				armed <- struct{}{}
				return nil
			default:
				return []Response{rsp}
			}
		},
		afterPush: func(r *ring.Back) {
			select {
			case <-armed:
				r.Shared().Store(ring.RspProd, r.ProducedIndex()+5)
			default:
			}
		},
	}
	r := newRig(t, opts)
	d := r.open()
	armed <- struct{}{}
	_, err := d.ReadAt(make([]byte, 512), 0)
	if !errors.Is(err, ErrBackendBroken) || !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("ReadAt = %v, want ErrBackendBroken and ErrClosed", err)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrBackendBroken) {
		t.Errorf("WriteAt after = %v, want ErrBackendBroken", err)
	}
	done := make(chan error)
	go func() { done <- d.Close() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung")
	}
}

// TestGrantsExhausted: running out of grant references fails the request
// with a clear error instead of hanging, and small requests still work.
func TestGrantsExhausted(t *testing.T) {
	r := newRig(t, backendOpts{})
	r.be.fill(1)
	d := r.open()
	r.grants.mu.Lock()
	r.grants.max = len(r.grants.live) + 4
	r.grants.mu.Unlock()
	_, err := d.ReadAt(make([]byte, 8*4096), 0)
	if !errors.Is(err, gnttab.ErrExhausted) {
		t.Fatalf("ReadAt needing 8 grants with 4 left = %v, want ErrExhausted", err)
	}
	if _, err := d.ReadAt(make([]byte, 4*4096), 0); err != nil {
		t.Fatalf("ReadAt needing 4 grants: %v", err)
	}
}

// TestGrantStillMapped: a data page the backend keeps mapped after
// answering is quarantined, never reused, and returns to the pool once a
// later revoke succeeds.
func TestGrantStillMapped(t *testing.T) {
	r := newRig(t, backendOpts{keepMapped: true, sectors: 64})
	d := r.open()
	if _, err := d.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.LeakedPages != 1 {
		t.Fatalf("LeakedPages = %d, want 1", s.LeakedPages)
	}
	r.be.mu.Lock()
	kept := r.be.kept
	r.be.mu.Unlock()
	r.grants.mu.Lock()
	keptFrame := r.grants.live[kept].frame
	r.grants.mu.Unlock()
	// Many more requests: none may use the quarantined page.
	for i := range 40 {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(i)}, 4096), int64(i%8)*4096); err != nil {
			t.Fatal(err)
		}
		r.grants.mu.Lock()
		for ref, g := range r.grants.live {
			if ref != kept && g.frame == keptFrame {
				t.Fatalf("quarantined frame %#x granted again as ref %d", keptFrame, ref)
			}
		}
		r.grants.mu.Unlock()
	}
	r.grants.unmapRef(kept)
	// The pool retries the quarantine when it runs short: exhaust it.
	if _, err := d.ReadAt(make([]byte, 32*1024), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := d.Stats(); s.LeakedPages != 0 {
		t.Errorf("LeakedPages after the backend let go = %d, want 0", s.LeakedPages)
	}
	if n := r.mem.Live(); n != 0 {
		t.Errorf("%d DMA regions left", n)
	}
}
