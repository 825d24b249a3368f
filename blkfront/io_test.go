package blkfront

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/unikgo/unikgo/blockdev"
)

// TestReadWriteShapes writes and reads back accesses of many shapes —
// aligned and not, one byte to several requests — on 512- and 4096-byte
// sector disks, with and without indirect requests, against a model.
func TestReadWriteShapes(t *testing.T) {
	shapes := []struct{ off, n int64 }{
		{0, 4096}, {4096, 512}, {512, 512}, {1, 1}, {511, 2}, {100, 5000},
		{4095, 4098}, {0, 11 * 4096}, {0, 12 * 4096}, {3, 33*4096 + 17},
		{8192 - 1, 1}, {1<<20 - 5, 5}, {1<<20 - 4096, 4096}, {777, 300 * 1024},
	}
	disks := []struct {
		name string
		keys map[string]string
	}{
		{"512", nil},
		{"4096", map[string]string{"sector-size": "4096"}},
		{"512 indirect", map[string]string{"feature-max-indirect-segments": "64"}},
		{"4096 indirect", map[string]string{"sector-size": "4096", "feature-max-indirect-segments": "512"}},
	}
	for _, disk := range disks {
		t.Run(disk.name, func(t *testing.T) {
			r := newRig(t, backendOpts{keys: disk.keys})
			model := r.be.fill(9)
			d := r.open()
			rng := rand.New(rand.NewPCG(1, 2))
			for _, s := range shapes {
				data := make([]byte, s.n)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				if n, err := d.WriteAt(data, s.off); err != nil || n != len(data) {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", s.n, s.off, n, err)
				}
				copy(model[s.off:], data)
				if disk := r.be.diskCopy(); !bytes.Equal(disk, model) {
					t.Fatalf("after WriteAt(%d bytes at %d): disk differs from the model at byte %d", s.n, s.off, firstDiff(disk, model))
				}
				got := make([]byte, s.n)
				if n, err := d.ReadAt(got, s.off); err != nil || n != len(got) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", s.n, s.off, n, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("ReadAt(%d bytes at %d) differs at byte %d", s.n, s.off, firstDiff(got, data))
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestOutOfRange(t *testing.T) {
	r := newRig(t, backendOpts{})
	d := r.open()
	size := d.Size()
	tests := []struct {
		off int64
		n   int
	}{
		{-1, 1}, {size, 1}, {size - 1, 2}, {size + 4096, 0}, {1 << 62, 512}, {-(1 << 62), 512},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d+%d", tc.off, tc.n), func(t *testing.T) {
			before := r.be.count(OpRead) + r.be.count(OpWrite)
			if n, err := d.ReadAt(make([]byte, tc.n), tc.off); n != 0 || !errors.Is(err, blockdev.ErrOutOfRange) {
				t.Errorf("ReadAt = %d, %v; want 0, ErrOutOfRange", n, err)
			}
			if n, err := d.WriteAt(make([]byte, tc.n), tc.off); n != 0 || !errors.Is(err, blockdev.ErrOutOfRange) {
				t.Errorf("WriteAt = %d, %v; want 0, ErrOutOfRange", n, err)
			}
			if after := r.be.count(OpRead) + r.be.count(OpWrite); after != before {
				t.Errorf("%d requests reached the backend", after-before)
			}
		})
	}
	// The last byte and an empty access at the end are in range.
	if n, err := d.WriteAt([]byte{7}, size-1); n != 1 || err != nil {
		t.Errorf("WriteAt(last byte) = %d, %v", n, err)
	}
	if n, err := d.ReadAt(nil, size); n != 0 || err != nil {
		t.Errorf("ReadAt(empty at the end) = %d, %v", n, err)
	}
}

func TestReadOnly(t *testing.T) {
	for _, keys := range []map[string]string{{"info": "4"}, {"mode": "r"}} {
		t.Run(fmt.Sprint(keys), func(t *testing.T) {
			r := newRig(t, backendOpts{keys: keys})
			want := r.be.fill(4)
			d := r.open()
			if !d.ReadOnly() {
				t.Fatal("ReadOnly() = false")
			}
			for _, s := range []struct{ off, n int }{{0, 512}, {3, 1}, {1 << 20, 1}} {
				if n, err := d.WriteAt(make([]byte, s.n), int64(s.off)); n != 0 || !errors.Is(err, blockdev.ErrReadOnly) {
					t.Errorf("WriteAt(%d at %d) = %d, %v; want ErrReadOnly", s.n, s.off, n, err)
				}
			}
			if err := d.Discard(0, 512); !errors.Is(err, blockdev.ErrReadOnly) {
				t.Errorf("Discard = %v, want ErrReadOnly", err)
			}
			if r.be.count(OpWrite)+r.be.count(OpRead) != 0 {
				t.Error("a refused write reached the backend")
			}
			got := make([]byte, 4096)
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want[:4096]) {
				t.Errorf("ReadAt on a read-only disk: %v", err)
			}
		})
	}
}

// TestConcurrent runs many goroutines, each writing and reading back its
// own stripe with unaligned accesses, plus goroutines that write
// neighbouring bytes of shared sectors, and checks the disk against the
// model and that requests really overlapped.
func TestConcurrent(t *testing.T) {
	r := newRig(t, backendOpts{sectors: 16384, keys: map[string]string{"max-ring-page-order": "2", "feature-max-indirect-segments": "32"}})
	model := r.be.fill(0)
	d := r.open()
	const workers = 16
	stripe := len(model) / workers
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	var modelMu sync.Mutex
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			base := w * stripe
			for range 20 {
				off := base + rng.IntN(stripe-70000)
				n := 1 + rng.IntN(65536)
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				if _, err := d.WriteAt(data, int64(off)); err != nil {
					errs <- err
					return
				}
				modelMu.Lock()
				copy(model[off:], data)
				modelMu.Unlock()
				got := make([]byte, n)
				if _, err := d.ReadAt(got, int64(off)); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("worker %d: read back differs at %d+%d", w, off, firstDiff(got, data))
					return
				}
			}
		}()
	}
	// Sixteen writers of 32 bytes each share the first two sectors of the
	// last stripe's tail: the read-modify-writes must not lose any.
	shared := len(model) - 1024
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i + 1)}, 32)
			if _, err := d.WriteAt(data, int64(shared+i*32)); err != nil {
				errs <- err
				return
			}
			modelMu.Lock()
			copy(model[shared+i*32:], data)
			modelMu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if disk := r.be.diskCopy(); !bytes.Equal(disk, model) {
		t.Errorf("disk differs from the model at byte %d", firstDiff(disk, model))
	}
	r.be.mu.Lock()
	inflight := r.be.maxInFlight
	r.be.mu.Unlock()
	if inflight < 2 {
		t.Errorf("at most %d requests were outstanding at once; want concurrency", inflight)
	}
}

func TestFlush(t *testing.T) {
	tests := []struct {
		name     string
		keys     map[string]string
		opts     backendOpts
		wire     Operation // what reaches the backend, or 255 for nothing
		firstErr error
		secondOp bool // whether a second Flush reaches the backend
	}{
		{name: "flush-cache", wire: OpFlushDiskCache, secondOp: true},
		{name: "barrier", keys: map[string]string{"feature-flush-cache": "0", "feature-barrier": "1"}, wire: OpWriteBarrier, secondOp: true},
		{name: "none", keys: map[string]string{"feature-flush-cache": "<absent>"}, wire: 255},
		{name: "refused", opts: backendOpts{flushNotSupported: true}, wire: OpFlushDiskCache, firstErr: ErrNotSupported},
		{name: "barrier error means unsupported", keys: map[string]string{"feature-flush-cache": "0", "feature-barrier": "1"}, opts: backendOpts{flushError: true}, wire: OpWriteBarrier, firstErr: ErrNotSupported},
		{name: "flush error", opts: backendOpts{flushError: true}, wire: OpFlushDiskCache, firstErr: ErrIO, secondOp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.keys = tc.keys
			r := newRig(t, opts)
			d := r.open()
			if _, err := d.WriteAt(make([]byte, 4096), 0); err != nil {
				t.Fatal(err)
			}
			err := d.Flush()
			if !errors.Is(err, tc.firstErr) || (tc.firstErr == nil) != (err == nil) {
				t.Fatalf("Flush = %v, want %v", err, tc.firstErr)
			}
			n := r.be.count(OpFlushDiskCache) + r.be.count(OpWriteBarrier)
			if tc.wire == 255 {
				if n != 0 {
					t.Fatalf("%d flushes reached a backend without the feature", n)
				}
				return
			}
			if r.be.count(tc.wire) != 1 || n != 1 {
				t.Fatalf("backend saw %d %v and %d flushes in all; want one %v", r.be.count(tc.wire), tc.wire, n, tc.wire)
			}
			err = d.Flush()
			if tc.secondOp {
				if n2 := r.be.count(tc.wire); n2 != 2 {
					t.Errorf("second Flush: backend saw %d, want 2", n2)
				}
				return
			}
			if err != nil || r.be.count(tc.wire) != 1 {
				t.Errorf("Flush after EOPNOTSUPP = %v with %d flushes sent; want nil without sending", err, r.be.count(tc.wire))
			}
		})
	}
}

func TestDiscard(t *testing.T) {
	r := newRig(t, backendOpts{keys: map[string]string{"feature-discard": "1"}})
	model := r.be.fill(5)
	d := r.open()
	if err := d.Discard(4096, 8192); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	clear(model[4096 : 4096+8192])
	if !bytes.Equal(r.be.diskCopy(), model) {
		t.Error("discarded range not cleared by the backend")
	}
	if err := d.Discard(100, 512); err == nil {
		t.Error("unaligned Discard accepted")
	}
	if err := d.Discard(d.Size(), 512); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("Discard past the end = %v", err)
	}

	r2 := newRig(t, backendOpts{})
	d2 := r2.open()
	if err := d2.Discard(0, 512); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Discard without feature-discard = %v, want ErrNotSupported", err)
	}
	if n := r2.be.count(OpDiscard); n != 0 {
		t.Errorf("%d discards reached a backend without the feature", n)
	}
}
