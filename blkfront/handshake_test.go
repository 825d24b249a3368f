package blkfront

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
)

func TestHandshakeVariants(t *testing.T) {
	tests := []struct {
		name      string
		keys      map[string]string
		cfg       func(*Config)
		ringPages int
		keysWant  []string // frontend keys published
		segs      int      // data segments per request
		info      Info
	}{
		{
			name:      "single page, no indirect",
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache},
		},
		{
			name:      "backend offers order 1",
			keys:      map[string]string{"max-ring-page-order": "1"},
			ringPages: 2,
			keysWant:  []string{"event-channel", "protocol", "ring-page-order", "ring-ref0", "ring-ref1"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache},
		},
		{
			name:      "backend offers more than our default order",
			keys:      map[string]string{"max-ring-page-order": "9", "feature-max-indirect-segments": "256"},
			ringPages: 4,
			keysWant:  []string{"event-channel", "protocol", "ring-page-order", "ring-ref0", "ring-ref1", "ring-ref2", "ring-ref3"},
			segs:      32,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache, MaxIndirectSegments: 256},
		},
		{
			name:      "single page forced",
			keys:      map[string]string{"max-ring-page-order": "3"},
			cfg:       func(c *Config) { c.SingleRingPage = true },
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache},
		},
		{
			name:      "indirect capped by config",
			keys:      map[string]string{"feature-max-indirect-segments": "4096"},
			cfg:       func(c *Config) { c.MaxSegments = 600 },
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      600,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache, MaxIndirectSegments: 4096},
		},
		{
			name:      "indirect turned off by config",
			keys:      map[string]string{"feature-max-indirect-segments": "256"},
			cfg:       func(c *Config) { c.MaxSegments = 8 },
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache, MaxIndirectSegments: 256},
		},
		{
			name:      "indirect offered below 12 is not used",
			keys:      map[string]string{"feature-max-indirect-segments": "8"},
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache, MaxIndirectSegments: 8},
		},
		{
			name:      "4k sectors, barrier, read-only cdrom",
			keys:      map[string]string{"sector-size": "4096", "physical-sector-size": "4096", "feature-flush-cache": "<absent>", "feature-barrier": "1", "info": "5"},
			ringPages: 1,
			keysWant:  []string{"event-channel", "protocol", "ring-ref"},
			segs:      11,
			info:      Info{Sectors: 8192, SectorSize: 4096, PhysicalSectorSize: 4096, Info: 5, ReadOnly: true, Flush: FlushBarrier},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, backendOpts{keys: tc.keys, sectors: 8192})
			if tc.cfg != nil {
				tc.cfg(&r.cfg)
			}
			want := r.be.fill(3)
			d := r.open()
			if diff := cmp.Diff(tc.info, d.Info()); diff != "" {
				t.Errorf("Info (-want +got):\n%s", diff)
			}
			if d.SectorSize() != tc.info.SectorSize || d.Size() != tc.info.Size() || d.ReadOnly() != tc.info.ReadOnly {
				t.Errorf("SectorSize %d, Size %d, ReadOnly %v; want %d, %d, %v", d.SectorSize(), d.Size(), d.ReadOnly(), tc.info.SectorSize, tc.info.Size(), tc.info.ReadOnly)
			}
			r.be.mu.Lock()
			pages, pub := r.be.ringPages, r.be.published
			r.be.mu.Unlock()
			if pages != tc.ringPages {
				t.Errorf("backend mapped %d ring pages, want %d", pages, tc.ringPages)
			}
			var names []string
			for k := range pub {
				names = append(names, k)
			}
			if diff := cmp.Diff(tc.keysWant, names, sortStrings); diff != "" {
				t.Errorf("published keys (-want +got):\n%s", diff)
			}
			if got, _ := r.srv.Get(feDirAbs + "/protocol"); got != "x86_64-abi" {
				t.Errorf("protocol = %q", got)
			}
			if got, _ := r.srv.Get(feDirAbs + "/state"); got != "4" {
				t.Errorf("frontend state = %q, want 4 (Connected)", got)
			}
			d.mu.Lock()
			segs := d.conn.segs
			d.mu.Unlock()
			if segs != tc.segs {
				t.Errorf("segments per request = %d, want %d", segs, tc.segs)
			}
			// A read as large as the ring allows exercises the chosen
			// request shape end to end.
			got := make([]byte, len(want))
			if _, err := d.ReadAt(got, 0); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Error("read data differs")
			}
			r.be.mu.Lock()
			maxSegs := r.be.maxSegs
			r.be.mu.Unlock()
			if maxSegs != tc.segs {
				t.Errorf("largest request had %d segments, want %d", maxSegs, tc.segs)
			}
			if (r.be.count(OpRead) > 0) == false {
				t.Error("no read reached the backend")
			}
		})
	}
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestHandshakeTransactionRetried(t *testing.T) {
	r := newRig(t, backendOpts{})
	r.srv.ForceConflicts(2)
	before := r.srv.Commits()
	r.open()
	if n := r.srv.Commits() - before; n < 3 {
		t.Errorf("%d commits, want at least 3 (two EAGAIN, then success)", n)
	}
}

func TestHandshakeErrors(t *testing.T) {
	tests := []struct {
		name string
		keys map[string]string
		want string // in the error
		// state is the frontend's state after: Closed if the ring had
		// been published, else still Initialising (nothing to undo).
		state string
	}{
		{"sectors missing", map[string]string{"sectors": "<absent>"}, "sectors is missing", "6"},
		{"sector-size missing", map[string]string{"sector-size": "<absent>"}, "sector-size is missing", "6"},
		{"info missing", map[string]string{"info": "<absent>"}, "info is missing", "6"},
		{"sectors garbage", map[string]string{"sectors": "0x10"}, "sectors", "6"},
		{"sector-size odd", map[string]string{"sector-size": "520"}, "sector-size", "6"},
		{"ring order garbage", map[string]string{"max-ring-page-order": "two"}, "max-ring-page-order", "1"},
		{"indirect garbage", map[string]string{"feature-max-indirect-segments": "many"}, "feature-max-indirect-segments", "6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, backendOpts{keys: tc.keys})
			d, err := New(r.ctx, r.cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "vbd "+vbdID) {
				t.Errorf("error %q does not name vbd %s and %q", err, vbdID, tc.want)
			}
			if n := r.grants.liveCount(); n != 0 {
				t.Errorf("%d grants left after a failed New", n)
			}
			if n := r.events.open(); n != 0 {
				t.Errorf("%d event channels left open after a failed New", n)
			}
			if n := r.mem.Live(); n != 0 {
				t.Errorf("%d DMA regions left after a failed New", n)
			}
			if s, _ := r.srv.Get(feDirAbs + "/state"); s != tc.state {
				t.Errorf("frontend state %s after a failed New, want %s", s, tc.state)
			}
		})
	}
}

func TestNewMissingFrontend(t *testing.T) {
	r := newRig(t, backendOpts{})
	r.cfg.Device = "768"
	if _, err := New(r.ctx, r.cfg); err == nil || !strings.Contains(err.Error(), "vbd 768") {
		t.Errorf("New for a missing vbd = %v", err)
	}
	r.cfg.Device = vbdID
	r.cfg.RingPageOrder = MaxRingPageOrder + 1
	if _, err := New(r.ctx, r.cfg); err == nil || !strings.Contains(err.Error(), strconv.Itoa(MaxRingPageOrder)) {
		t.Errorf("New with RingPageOrder too big = %v", err)
	}
}

// TestNewResourceFailures: running out of memory, grants or event
// channels while connecting fails New cleanly.
func TestNewResourceFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *rig)
		want  string
	}{
		{"no memory for the ring", func(r *rig) { r.cfg.Memory = dmatest.New(0) }, "ring"},
		{"no grants", func(r *rig) { r.grants.max = 1 }, "granting ring page 1"},
		{"no event channel", func(r *rig) { r.events.fail = true }, "event channel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, backendOpts{keys: map[string]string{"max-ring-page-order": "1"}})
			tc.setup(r)
			d, err := New(r.ctx, r.cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if n := r.grants.liveCount(); n != 0 {
				t.Errorf("%d grants left", n)
			}
			if n := r.mem.Live(); n != 0 {
				t.Errorf("%d DMA regions left", n)
			}
		})
	}
}
