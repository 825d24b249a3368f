package blk_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
	"github.com/unikgo/unikgo/virtio"
	"github.com/unikgo/unikgo/virtio/blk"
	"github.com/unikgo/unikgo/virtio/virtiotest"
)

// disk is the simulated device's backend: it serves virtio-blk requests
// from memory and checks their shape.
type disk struct {
	mu      sync.Mutex
	data    []byte
	flushes int
	errs    []string
	sizeMax int // 0: unchecked
	segMax  int

	// status, if set, overrides the status of a request (and may return
	// -1 to leave the status byte unwritten).
	status func(typ uint32) int
	// length, if set, overrides the used length.
	length func(typ uint32, n uint32) uint32
	hold   chan struct{} // if set, requests wait for it to close

	inflight, maxInflight atomic.Int64
	requests              atomic.Int64
}

func (k *disk) hooks(status func(uint32) int, length func(uint32, uint32) uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status, k.length = status, length
}

func (k *disk) flushCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.flushes
}

func (k *disk) errorf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.errs = append(k.errs, fmt.Sprintf(format, args...))
}

func (k *disk) handle(c *virtiotest.Chain) uint32 {
	n := k.inflight.Add(1)
	defer k.inflight.Add(-1)
	for {
		m := k.maxInflight.Load()
		if n <= m || k.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	k.requests.Add(1)
	if k.hold != nil {
		<-k.hold
	}
	if len(c.Readable) == 0 || len(c.Readable[0]) != 16 || len(c.Writable) == 0 {
		k.errorf("request shape: %d readable, %d writable", len(c.Readable), len(c.Writable))
		return 0
	}
	st := c.Writable[len(c.Writable)-1]
	if len(st) != 1 {
		k.errorf("status buffer of %d bytes", len(st))
		return 0
	}
	typ := binary.LittleEndian.Uint32(c.Readable[0])
	sector := binary.LittleEndian.Uint64(c.Readable[0][8:])
	var segs [][]byte
	if typ == blk.TypeOut {
		segs = c.Readable[1:]
		if len(c.Writable) != 1 {
			k.errorf("write with %d writable buffers", len(c.Writable))
		}
	} else {
		segs = c.Writable[:len(c.Writable)-1]
		if len(c.Readable) != 1 {
			k.errorf("type %d with %d readable buffers", typ, len(c.Readable))
		}
	}
	total := 0
	for _, s := range segs {
		if k.sizeMax != 0 && len(s) > k.sizeMax {
			k.errorf("segment of %d bytes, size_max %d", len(s), k.sizeMax)
		}
		total += len(s)
	}
	if k.segMax != 0 && len(segs) > k.segMax {
		k.errorf("%d segments, seg_max %d", len(segs), k.segMax)
	}
	status := byte(blk.StatusOK)
	written := uint32(1)
	k.mu.Lock()
	switch typ {
	case blk.TypeIn, blk.TypeOut:
		off := sector * 512
		if off > uint64(len(k.data)) || uint64(total) > uint64(len(k.data))-off {
			status = blk.StatusIOErr
			break
		}
		for _, s := range segs {
			if typ == blk.TypeIn {
				copy(s, k.data[off:])
			} else {
				copy(k.data[off:], s)
			}
			off += uint64(len(s))
		}
		if typ == blk.TypeIn {
			written += uint32(total)
		}
	case blk.TypeFlush:
		k.flushes++
	case blk.TypeGetID:
		id := []byte("sim-disk-0")
		for _, s := range segs {
			n := copy(s, id)
			id = id[n:]
		}
		written += uint32(total)
	default:
		status = blk.StatusUnsupp
	}
	k.mu.Unlock()
	k.mu.Lock()
	statusHook, lengthHook := k.status, k.length
	k.mu.Unlock()
	if statusHook != nil {
		if s := statusHook(typ); s >= 0 {
			status = byte(s)
		} else {
			return written
		}
	}
	st[0] = status
	if lengthHook != nil {
		return lengthHook(typ, written)
	}
	return written
}

// blkConfig builds a virtio_blk_config.
func blkConfig(capacity uint64, sizeMax, segMax, blkSize uint32) []byte {
	b := make([]byte, 60)
	binary.LittleEndian.PutUint64(b[0:], capacity)
	binary.LittleEndian.PutUint32(b[8:], sizeMax)
	binary.LittleEndian.PutUint32(b[12:], segMax)
	binary.LittleEndian.PutUint32(b[20:], blkSize)
	return b
}

type rig struct {
	orig []byte
	h    *pcitest.Host
	mem  *dmatest.Memory
	sim  *virtiotest.Device
	disk *disk
	p    *pci.Device
}

type setup struct {
	size     int64  // bytes
	features uint64 // besides VERSION_1
	sizeMax  uint32
	segMax   uint32
	blkSize  uint32
	vectors  int
	workers  int
	config   []byte // overrides the generated configuration
}

func newRig(t *testing.T, s setup) *rig {
	t.Helper()
	if s.size == 0 {
		s.size = 1 << 20
	}
	if s.workers == 0 {
		s.workers = 4
	}
	r := &rig{h: pcitest.NewHost(), mem: dmatest.New(64 << 20), disk: &disk{data: make([]byte, s.size), sizeMax: int(s.sizeMax), segMax: int(s.segMax)}}
	rand.New(rand.NewSource(1)).Read(r.disk.data)
	r.orig = append([]byte(nil), r.disk.data...)
	cfg := s.config
	if cfg == nil {
		cfg = blkConfig(uint64(s.size/512), s.sizeMax, s.segMax, s.blkSize)
	}
	r.sim = virtiotest.New(r.h, pci.Addr{Device: 5}, r.mem, virtiotest.Config{
		DeviceID: 0x1042, Features: virtio.FeatureVersion1 | s.features, NumQueues: 1,
		DevConfig: cfg, MSIXVectors: s.vectors,
	})
	r.sim.Queue(0).Serve(s.workers, r.disk.handle)
	p, err := pci.Open(r.h, pci.Addr{Device: 5})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	return r
}

func (r *rig) open(t *testing.T, cfg blk.Config) (*blk.Device, error) {
	t.Helper()
	return blk.New(context.Background(), r.p, virtio.Options{Mem: r.mem, Interrupts: r.h.IRQs.Alloc, PollInterval: 20 * time.Microsecond, ResetTimeout: 100 * time.Millisecond}, cfg)
}

func (r *rig) mustOpen(t *testing.T, cfg blk.Config) *blk.Device {
	t.Helper()
	d, err := r.open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *rig) check(t *testing.T) {
	t.Helper()
	for _, e := range r.sim.Errors() {
		t.Errorf("virtio error seen by the device: %s", e)
	}
	r.disk.mu.Lock()
	defer r.disk.mu.Unlock()
	for _, e := range r.disk.errs {
		t.Errorf("virtio-blk error seen by the device: %s", e)
	}
}

func (r *rig) contents() []byte {
	r.disk.mu.Lock()
	defer r.disk.mu.Unlock()
	return append([]byte(nil), r.disk.data...)
}

func TestIO(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      setup
		cfg    blk.Config
		sector int
		mode   virtio.IntrMode
		flush  bool
	}{
		{name: "512 MSI-X", s: setup{vectors: 2, features: blk.FeatureFlush}, sector: 512, mode: virtio.IntrDedicated, flush: true},
		{name: "4096 blk_size", s: setup{vectors: 2, features: blk.FeatureBlkSize | blk.FeatureFlush, blkSize: 4096}, sector: 4096, mode: virtio.IntrDedicated, flush: true},
		{name: "2048 blk_size polled", s: setup{features: blk.FeatureBlkSize, blkSize: 2048}, sector: 2048, mode: virtio.IntrPoll},
		{name: "blk_size not negotiated", s: setup{vectors: 1, blkSize: 4096}, sector: 512, mode: virtio.IntrShared},
		{name: "small segments", s: setup{vectors: 2, features: blk.FeatureSizeMax | blk.FeatureSegMax, sizeMax: 4096, segMax: 3}, sector: 512, mode: virtio.IntrDedicated},
		{name: "odd size_max", s: setup{vectors: 2, features: blk.FeatureSizeMax, sizeMax: 1000}, sector: 512, mode: virtio.IntrDedicated},
		{name: "small transfers, few slots", s: setup{vectors: 2}, cfg: blk.Config{MaxTransfer: 1024, MaxInFlight: 2, QueueSize: 8}, sector: 512, mode: virtio.IntrDedicated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.s)
			d := r.mustOpen(t, tc.cfg)
			if d.SectorSize() != tc.sector || d.Size() != 1<<20 || d.ReadOnly() || d.Mode() != tc.mode || d.FlushSupported() != tc.flush {
				t.Fatalf("sector %d size %d ro %v mode %v flush %v", d.SectorSize(), d.Size(), d.ReadOnly(), d.Mode(), d.FlushSupported())
			}
			shadow := r.contents()
			rng := rand.New(rand.NewSource(2))
			for i, a := range []struct {
				off int64
				n   int
			}{
				{0, 512}, {4096, 4096}, {512, 100}, {1000, 3000}, {8191, 2}, {70000, 200000},
				{1<<20 - 4096, 4096}, {1<<20 - 1, 1}, {12345, 0}, {0, 1 << 20},
			} {
				p := make([]byte, a.n)
				rng.Read(p)
				n, err := d.WriteAt(p, a.off)
				if err != nil || n != a.n {
					t.Fatalf("write %d: %d, %v", i, n, err)
				}
				copy(shadow[a.off:], p)
				got := make([]byte, a.n)
				if n, err := d.ReadAt(got, a.off); err != nil || n != a.n || !bytes.Equal(got, p) {
					t.Fatalf("read %d back: %d, %v, equal %v", i, n, err, bytes.Equal(got, p))
				}
				// An unaligned read around it.
				lo, hi := max(a.off-77, 0), min(a.off+int64(a.n)+99, 1<<20)
				got = make([]byte, hi-lo)
				if _, err := d.ReadAt(got, lo); err != nil || !bytes.Equal(got, shadow[lo:hi]) {
					t.Fatalf("read %d around: %v", i, err)
				}
			}
			if !bytes.Equal(r.contents(), shadow) {
				t.Error("disk contents differ from what was written")
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.flush]; r.disk.flushCount() != want {
				t.Errorf("%d flushes reached the device, want %d", r.disk.flushCount(), want)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if r.mem.Live() != 0 || r.h.IRQs.Live() != 0 {
				t.Errorf("after Close: %d regions, %d vectors live", r.mem.Live(), r.h.IRQs.Live())
			}
			r.check(t)
		})
	}
}

func TestContract(t *testing.T) {
	r := newRig(t, setup{vectors: 2, features: blk.FeatureRO})
	d := r.mustOpen(t, blk.Config{})
	if !d.ReadOnly() {
		t.Fatal("not read-only")
	}
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Errorf("write to a read-only disk: %v", err)
	}
	for _, a := range []struct {
		off int64
		n   int
	}{{-1, 1}, {1 << 20, 1}, {1<<20 - 1, 2}, {1 << 40, 0}, {1<<63 - 1, 10}} {
		if n, err := d.ReadAt(make([]byte, a.n), a.off); !errors.Is(err, blockdev.ErrOutOfRange) || n != 0 {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v", a.n, a.off, n, err)
		}
	}
	if n, err := d.ReadAt(nil, 1<<20); n != 0 || err != nil {
		t.Errorf("empty read at the end: %d, %v", n, err)
	}
	if err := d.Flush(); err != nil {
		t.Errorf("Flush without VIRTIO_BLK_F_FLUSH: %v", err)
	}
	if id, err := d.ID(); err != nil || id != "sim-disk-0" {
		t.Errorf("ID = %q, %v", id, err)
	}
	if r.disk.requests.Load() != 1 {
		t.Errorf("%d requests reached the device, want only GET_ID", r.disk.requests.Load())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	if err := d.Flush(); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("flush after Close: %v", err)
	}
	r.check(t)
}

// TestConcurrent has many goroutines write and read at once, including
// partial writes to shared sectors, with the device completing requests
// out of order.
func TestConcurrent(t *testing.T) {
	for _, vectors := range []int{2, 0} {
		t.Run(fmt.Sprint("vectors ", vectors), func(t *testing.T) {
			r := newRig(t, setup{vectors: vectors, workers: 8, features: blk.FeatureFlush})
			d := r.mustOpen(t, blk.Config{MaxInFlight: 16})
			var wg sync.WaitGroup
			var wmu sync.Mutex
			written := map[int64]bool{}
			const G = 32
			for g := 0; g < G; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(g)))
					// Each goroutine owns bytes g, g+G, ... of sectors 0-7
					// (partial writes to shared sectors) and the 16 KiB
					// region from 64K + g*16K (whole requests).
					for i := 0; i < 20; i++ {
						off := int64(g + G*rng.Intn(4096*8/G))
						if _, err := d.WriteAt([]byte{byte(g)}, off); err != nil {
							t.Error(err)
							return
						}
						wmu.Lock()
						written[off] = true
						wmu.Unlock()
						p := make([]byte, 8192)
						rng.Read(p)
						base := int64(64<<10 + g*16<<10)
						if _, err := d.WriteAt(p, base+int64(i%2)*8192); err != nil {
							t.Error(err)
							return
						}
						got := make([]byte, 8192)
						if _, err := d.ReadAt(got, base+int64(i%2)*8192); err != nil || !bytes.Equal(got, p) {
							t.Errorf("goroutine %d: read back: %v", g, err)
							return
						}
						if i%7 == 0 {
							if err := d.Flush(); err != nil {
								t.Error(err)
							}
						}
					}
				}(g)
			}
			wg.Wait()
			// Every partial write landed: a lost read-modify-write would
			// leave a byte a goroutine wrote with an older value.
			data := r.contents()
			for off := range written {
				if data[off] != byte(off%G) {
					t.Fatalf("byte %d is %d, want %d: a partial write was lost", off, data[off], off%G)
				}
			}
			if len(written) < 100 {
				t.Fatalf("only %d partial writes", len(written))
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			r.check(t)
		})
	}
}

func TestBadStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status func(uint32) int
		length func(uint32, uint32) uint32
		want   error
	}{
		{name: "IOERR", status: func(uint32) int { return blk.StatusIOErr }, want: blk.ErrIO},
		{name: "UNSUPP", status: func(uint32) int { return blk.StatusUnsupp }, want: blk.ErrUnsupported},
		{name: "unknown status", status: func(uint32) int { return 7 }, want: blk.ErrBadStatus},
		{name: "status never written", status: func(uint32) int { return -1 }, want: blk.ErrBadStatus},
		{name: "length past the buffers", length: func(_, n uint32) uint32 { return n + 1 }, want: blk.ErrBadStatus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, setup{vectors: 2, features: blk.FeatureFlush})
			d := r.mustOpen(t, blk.Config{})
			defer d.Close()
			r.disk.hooks(tc.status, tc.length)
			if _, err := d.ReadAt(make([]byte, 512), 0); !errors.Is(err, tc.want) {
				t.Errorf("read: %v, want %v", err, tc.want)
			}
			if _, err := d.WriteAt(make([]byte, 100), 10); !errors.Is(err, tc.want) {
				t.Errorf("partial write: %v, want %v", err, tc.want)
			}
			if err := d.Flush(); !errors.Is(err, tc.want) {
				t.Errorf("flush: %v, want %v", err, tc.want)
			}
			// The disk still works once the device behaves.
			r.disk.hooks(nil, nil)
			if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
				t.Errorf("read after: %v", err)
			}
			r.check(t)
		})
	}
}

func TestBrokenDevice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(r *rig)
	}{
		{name: "used id out of range", break_: func(r *rig) { r.sim.Queue(0).PushRaw(9999, 1) }},
		{name: "used index jumps", break_: func(r *rig) { r.sim.Queue(0).SetUsedIdx(200) }},
		{name: "needs reset", break_: func(r *rig) { r.sim.SetNeedsReset() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, setup{vectors: 2})
			r.disk.hold = make(chan struct{})
			d := r.mustOpen(t, blk.Config{})
			errs := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func(i int) {
					_, err := d.ReadAt(make([]byte, 512), int64(i)*512)
					errs <- err
				}(i)
			}
			for r.disk.requests.Load() < 1 {
				time.Sleep(100 * time.Microsecond)
			}
			tc.break_(r)
			// The device finishes the requests it holds while it resets.
			go func() {
				time.Sleep(10 * time.Millisecond)
				close(r.disk.hold)
			}()
			for i := 0; i < 4; i++ {
				select {
				case err := <-errs:
					if !errors.Is(err, blk.ErrDeviceBroken) || !errors.Is(err, blockdev.ErrClosed) {
						t.Errorf("request in flight: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("requests in flight never failed")
				}
			}
			if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, blk.ErrDeviceBroken) || !errors.Is(err, blockdev.ErrClosed) {
				t.Errorf("later read: %v", err)
			}
			if r.sim.Status()&virtio.StatusDriverOK != 0 || r.p.Command()&pci.CmdBusMaster != 0 {
				t.Errorf("device not stopped: status %#x command %#x", r.sim.Status(), r.p.Command())
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if r.mem.Live() != 0 {
				t.Errorf("%d regions live", r.mem.Live())
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    setup
	}{
		{name: "blk_size 1000", s: setup{features: blk.FeatureBlkSize, blkSize: 1000}},
		{name: "blk_size 8192", s: setup{features: blk.FeatureBlkSize, blkSize: 8192}},
		{name: "blk_size 0", s: setup{features: blk.FeatureBlkSize, blkSize: 0}},
		{name: "capacity overflows", s: setup{config: blkConfig(1<<55, 0, 0, 0)}},
		{name: "config too short", s: setup{config: make([]byte, 4)}},
		{name: "config too short for blk_size", s: setup{features: blk.FeatureBlkSize, config: make([]byte, 16)}},
		{name: "segments too small for a sector", s: setup{features: blk.FeatureSizeMax | blk.FeatureSegMax, sizeMax: 100, segMax: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigShortConfig(t, tc.s)
			if _, err := r.open(t, blk.Config{}); err == nil {
				t.Fatal("New succeeded")
			}
			if r.mem.Live() != 0 || r.h.IRQs.Live() != 0 {
				t.Errorf("after a failed New: %d regions, %d vectors live", r.mem.Live(), r.h.IRQs.Live())
			}
			if r.sim.Status() != 0 {
				t.Errorf("device left with status %#x", r.sim.Status())
			}
		})
	}
}

// newRigShortConfig is newRig with the device configuration structure
// exactly as long as the configuration bytes.
func newRigShortConfig(t *testing.T, s setup) *rig {
	if s.config == nil {
		return newRig(t, s)
	}
	r := &rig{h: pcitest.NewHost(), mem: dmatest.New(64 << 20), disk: &disk{data: make([]byte, 1<<20)}}
	common := virtiotest.CapSpec{Type: virtio.CapCommonCfg, BAR: 4, Offset: 0, Length: 0x1000}
	isr := virtiotest.CapSpec{Type: virtio.CapISRCfg, BAR: 4, Offset: 0x1000, Length: 0x1000}
	dev := virtiotest.CapSpec{Type: virtio.CapDeviceCfg, BAR: 4, Offset: 0x2000, Length: uint32(len(s.config))}
	notify := virtiotest.CapSpec{Type: virtio.CapNotifyCfg, BAR: 4, Offset: 0x3000, Length: 0x1000, Multiplier: 4}
	r.sim = virtiotest.New(r.h, pci.Addr{Device: 5}, r.mem, virtiotest.Config{
		DeviceID: 0x1042, Features: virtio.FeatureVersion1 | s.features, NumQueues: 1,
		DevConfig: s.config, MSIXVectors: 2, Caps: []virtiotest.CapSpec{common, isr, dev, notify},
	})
	p, err := pci.Open(r.h, pci.Addr{Device: 5})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	return r
}

func TestResize(t *testing.T) {
	r := newRig(t, setup{vectors: 2})
	d := r.mustOpen(t, blk.Config{})
	defer d.Close()
	r.sim.SetConfig(0, binary.LittleEndian.AppendUint64(nil, 1024))
	deadline := time.Now().Add(5 * time.Second)
	for d.Size() != 512<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("Size = %d after the device shrank to 512 KiB", d.Size())
		}
		time.Sleep(100 * time.Microsecond)
	}
	if _, err := d.ReadAt(make([]byte, 1), 512<<10); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("read past the new end: %v", err)
	}
}

// TestManyInFlight holds the device's answers: concurrent callers must
// all reach the device before any completes, up to its worker count.
func TestManyInFlight(t *testing.T) {
	r := newRig(t, setup{vectors: 2, workers: 8})
	r.disk.hold = make(chan struct{})
	d := r.mustOpen(t, blk.Config{MaxInFlight: 16})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			if _, err := d.ReadAt(make([]byte, 4096), int64(i)*4096); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.disk.maxInflight.Load() < 8 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := r.disk.maxInflight.Load()
	close(r.disk.hold)
	wg.Wait()
	if got < 8 {
		t.Errorf("%d requests reached the device while 8 callers waited, want 8", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	t.Run("waits for calls", func(t *testing.T) {
		r := newRig(t, setup{vectors: 2})
		r.disk.hold = make(chan struct{})
		d := r.mustOpen(t, blk.Config{})
		done := make(chan error, 1)
		go func() {
			_, err := d.ReadAt(make([]byte, 512), 0)
			done <- err
		}()
		for r.disk.requests.Load() < 1 {
			time.Sleep(100 * time.Microsecond)
		}
		closed := make(chan error, 1)
		go func() { closed <- d.Close() }()
		select {
		case <-closed:
			t.Fatal("Close returned with a call in flight")
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("read while closing: %v", err)
		}
		close(r.disk.hold)
		if err := <-done; err != nil {
			t.Errorf("call in flight: %v", err)
		}
		if err := <-closed; err != nil {
			t.Errorf("Close: %v", err)
		}
		if r.mem.Live() != 0 {
			t.Errorf("%d regions live", r.mem.Live())
		}
	})
	t.Run("hung device", func(t *testing.T) {
		r := newRig(t, setup{vectors: 2})
		r.disk.hold = make(chan struct{})
		defer close(r.disk.hold)
		d := r.mustOpen(t, blk.Config{CloseTimeout: 20 * time.Millisecond})
		done := make(chan error, 1)
		go func() {
			_, err := d.ReadAt(make([]byte, 512), 0)
			done <- err
		}()
		for r.disk.requests.Load() < 1 {
			time.Sleep(100 * time.Microsecond)
		}
		// The request never completes and the reset never finishes: Close
		// gives up on both, fails the call, and leaks the DMA memory the
		// device might still write.
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; !errors.Is(err, blockdev.ErrClosed) || !errors.Is(err, blk.ErrDeviceBroken) {
			t.Errorf("call in flight: %v", err)
		}
		if r.mem.Live() == 0 {
			t.Error("DMA memory freed under a device that did not reset")
		}
		if r.p.Command()&pci.CmdBusMaster != 0 {
			t.Error("bus mastering left on")
		}
	})
}

func TestProbeOutsideImage(t *testing.T) {
	if _, err := blk.Probe(context.Background()); err == nil {
		t.Fatal("Probe succeeded outside a unikgo image")
	}
}
