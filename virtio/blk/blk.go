// Package blk is a virtio-blk driver (Virtual I/O Device 1.0, section 5.2)
// on the virtio PCI transport: a blockdev.Device.
//
// Features (5.2.3). The driver accepts VIRTIO_BLK_F_SIZE_MAX and
// VIRTIO_BLK_F_SEG_MAX (to shape requests), VIRTIO_BLK_F_RO (WriteAt
// refuses with blockdev.ErrReadOnly), VIRTIO_BLK_F_BLK_SIZE (the logical
// sector size, 512 to 4096 bytes) and VIRTIO_BLK_F_FLUSH (Flush sends
// VIRTIO_BLK_T_FLUSH; without it the cache is write-through, 5.2.6.3, and
// Flush has nothing to do). It uses one request queue.
//
// Configuration (5.2.4) is read under config_generation: capacity is in
// 512-byte sectors whatever blk_size says, as are request sector numbers
// (5.2.6). A blk_size that is not a power of two from 512 to 4096, or a
// capacity whose byte size overflows, refuses the device. A configuration
// change interrupt re-reads the capacity (a resize); DEVICE_NEEDS_RESET
// there stops the disk.
//
// Requests (5.2.6). Each request is a chain of the 16-byte header
// (type, reserved, sector), the data split into segments of at most
// size_max bytes and at most seg_max of them, and the status byte; it
// lives in a slot of DMA memory of its own (Config.MaxTransfer bytes of
// data), so up to Config.MaxInFlight requests from any number of
// goroutines are in flight at once, completed out of order by one
// goroutine that drains the used ring. ReadAt and WriteAt split larger
// accesses across slots; partial sectors are read, merged and written
// back, with the edge sectors held so concurrent partial writes to one
// sector do not lose each other's bytes.
//
// Untrusted device. The status byte is set to 0xff before each request,
// so one the device never wrote is an error (ErrBadStatus), as is any
// value other than OK, IOERR (ErrIO) and UNSUPP (ErrUnsupported). A used
// length larger than the request's writable buffers fails that request.
// A used ring the virtio package finds broken, or DEVICE_NEEDS_RESET,
// resets the device and fails every request, now and later, with
// ErrDeviceBroken and blockdev.ErrClosed.
package blk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/virtio"
)

// Feature bits (5.2.3).
const (
	FeatureSizeMax  = 1 << 1
	FeatureSegMax   = 1 << 2
	FeatureGeometry = 1 << 4
	FeatureRO       = 1 << 5
	FeatureBlkSize  = 1 << 6
	FeatureFlush    = 1 << 9
	FeatureTopology = 1 << 10
	FeatureWCE      = 1 << 11
)

// Configuration offsets (5.2.4, struct virtio_blk_config).
const (
	cfgCapacity = 0
	cfgSizeMax  = 8
	cfgSegMax   = 12
	cfgBlkSize  = 20
)

// Request types and status values (5.2.6).
const (
	TypeIn    = 0
	TypeOut   = 1
	TypeFlush = 4
	TypeGetID = 8

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2

	headerLen = 16
	idLen     = 20
	// statusUnset is written before a request goes out.
	statusUnset = 0xff
)

// Errors of this driver; the blockdev errors are returned as its contract
// says.
var (
	// ErrIO is VIRTIO_BLK_S_IOERR.
	ErrIO = errors.New("virtio-blk: the device reported an I/O error")
	// ErrUnsupported is VIRTIO_BLK_S_UNSUPP.
	ErrUnsupported = errors.New("virtio-blk: the device does not support the request")
	// ErrBadStatus is a status byte that is none of the above, or was not
	// written, or a used length past the request's buffers.
	ErrBadStatus = errors.New("virtio-blk: the device completed a request with a bad status")
	// ErrDeviceBroken: the device broke the virtqueue protocol or asked to
	// be reset; the disk is stopped.
	ErrDeviceBroken = errors.New("virtio-blk: the device broke the protocol")
)

// Config tunes the driver; zero values take the defaults.
type Config struct {
	// MaxInFlight is how many requests may be outstanding (default 32).
	MaxInFlight int
	// MaxTransfer is the most data bytes in one request (default 64 KiB).
	MaxTransfer int
	// QueueSize is the most descriptors in the ring (default 256).
	QueueSize int
	// CloseTimeout bounds how long Close waits for calls in flight before
	// it resets the device under them (default 30s).
	CloseTimeout time.Duration
}

// Device is one virtio-blk disk.
type Device struct {
	vd  *virtio.Device
	q   *virtio.Queue
	mem dma.Allocator
	cfg Config

	sector   int
	readOnly bool
	flush    bool
	segSize  int // bytes per data descriptor
	maxXfer  int // data bytes per request

	slots chan *slot
	all   []*slot
	locks sectorLocks

	stop     chan struct{}
	loopDone chan struct{}

	mu      sync.Mutex
	size    int64
	calls   int
	idle    chan struct{} // closed when calls drops to 0 while closing
	closing bool
	failed  error
	leak    bool // slots may still be under DMA: never free them
}

var _ blockdev.Device = (*Device)(nil)

// slot is the DMA memory of one request: header at 0, status at 16, data
// from the second page.
type slot struct {
	r    *dma.Region
	done chan result
	busy bool // given to the device, guarded by Device.mu
}

type result struct {
	n   uint32
	err error
}

const dataOff = dma.PageSize

// Probe finds every virtio-blk function on the machine's PCI bus and
// starts a driver for each, with the kernel's DMA memory and interrupts.
// Transitional devices without the modern interface are skipped; other
// devices that fail are reported in the error, next to those that work.
func Probe(ctx context.Context) ([]*Device, error) {
	h, err := pci.System()
	if err != nil {
		return nil, err
	}
	mem, err := dma.System()
	if err != nil {
		return nil, err
	}
	var devs []*Device
	var errs []error
	for _, p := range virtio.Find(h, virtio.TypeBlock) {
		d, err := New(ctx, p, virtio.Options{Mem: mem, Interrupts: pci.SystemInterrupt}, Config{})
		if err != nil {
			if errors.Is(err, virtio.ErrNoModern) && p.ID != virtio.ModernIDBase+virtio.TypeBlock {
				continue
			}
			errs = append(errs, err)
			continue
		}
		devs = append(devs, d)
	}
	return devs, errors.Join(errs...)
}

// New starts the driver on the virtio-blk function p.
func New(ctx context.Context, p *pci.Device, opts virtio.Options, cfg Config) (*Device, error) {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 32
	}
	if cfg.MaxTransfer <= 0 {
		cfg.MaxTransfer = 64 << 10
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 30 * time.Second
	}
	vd, err := virtio.Open(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	d := &Device{vd: vd, mem: opts.Mem, cfg: cfg, stop: make(chan struct{}), loopDone: make(chan struct{})}
	if err := d.setup(); err != nil {
		vd.Fail()
		d.freeSlots()
		return nil, errors.Join(err, vd.Close())
	}
	go d.loop()
	return d, nil
}

func (d *Device) setup() error {
	feat, err := d.vd.Negotiate(FeatureSizeMax | FeatureSegMax | FeatureRO | FeatureBlkSize | FeatureFlush)
	if err != nil {
		return err
	}
	d.readOnly = feat&FeatureRO != 0
	d.flush = feat&FeatureFlush != 0
	var sizeMax, segMax uint32
	d.sector = 512
	err = d.vd.ReadConfig(func(c pci.Registers) error {
		need := uint64(cfgCapacity + 8)
		if feat&FeatureSizeMax != 0 {
			need = cfgSizeMax + 4
		}
		if feat&FeatureSegMax != 0 {
			need = cfgSegMax + 4
		}
		if feat&FeatureBlkSize != 0 {
			need = cfgBlkSize + 4
		}
		if c.Size() < need {
			return fmt.Errorf("virtio-blk: %v: device configuration of %d bytes, need %d", d.vd.PCI, c.Size(), need)
		}
		if feat&FeatureSizeMax != 0 {
			sizeMax = c.Read32(cfgSizeMax)
		}
		if feat&FeatureSegMax != 0 {
			segMax = c.Read32(cfgSegMax)
		}
		if feat&FeatureBlkSize != 0 {
			d.sector = int(c.Read32(cfgBlkSize))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if d.sector < 512 || d.sector > 4096 || d.sector&(d.sector-1) != 0 {
		return fmt.Errorf("virtio-blk: %v: blk_size %d is not a power of two from 512 to 4096", d.vd.PCI, d.sector)
	}
	if err := d.readCapacity(); err != nil {
		return err
	}

	qs, err := d.vd.SetupQueues([]int{d.cfg.QueueSize})
	if err != nil {
		return err
	}
	d.q = qs[0]

	// Shape requests: data in segments of segSize, at most nseg of them,
	// each request 2+nseg descriptors, all in-flight requests in the ring.
	d.maxXfer = d.cfg.MaxTransfer &^ (d.sector - 1)
	if d.maxXfer < d.sector {
		d.maxXfer = d.sector
	}
	d.segSize = d.maxXfer
	if sizeMax != 0 && int64(sizeMax) < int64(d.segSize) {
		d.segSize = int(sizeMax)
	}
	nseg := d.q.Size() - 2
	if segMax != 0 && int64(segMax) < int64(nseg) {
		nseg = int(segMax)
	}
	if nseg < 1 {
		return fmt.Errorf("virtio-blk: %v: a queue of %d descriptors has no room for data", d.vd.PCI, d.q.Size())
	}
	if max := int64(nseg) * int64(d.segSize); max < int64(d.maxXfer) {
		d.maxXfer = int(max) &^ (d.sector - 1)
	}
	if d.maxXfer < d.sector {
		return fmt.Errorf("virtio-blk: %v: size_max %d and seg_max %d do not fit a %d-byte sector", d.vd.PCI, sizeMax, segMax, d.sector)
	}
	perReq := 2 + (d.maxXfer+d.segSize-1)/d.segSize
	n := d.cfg.MaxInFlight
	if n > d.q.Size()/perReq {
		n = d.q.Size() / perReq
	}
	d.slots = make(chan *slot, n)
	for i := 0; i < n; i++ {
		r, err := d.mem.Alloc(dataOff + d.maxXfer)
		if err != nil {
			return fmt.Errorf("virtio-blk: %v: request memory: %w", d.vd.PCI, err)
		}
		s := &slot{r: r, done: make(chan result, 1)}
		d.all = append(d.all, s)
		d.slots <- s
	}
	return d.vd.Start()
}

// readCapacity reads the capacity and stores the size.
func (d *Device) readCapacity() error {
	var capacity uint64
	err := d.vd.ReadConfig(func(c pci.Registers) error {
		if c.Size() < 8 {
			return fmt.Errorf("virtio-blk: %v: no capacity in a %d-byte configuration", d.vd.PCI, c.Size())
		}
		capacity = uint64(c.Read32(cfgCapacity)) | uint64(c.Read32(cfgCapacity+4))<<32
		return nil
	})
	if err != nil {
		return err
	}
	if capacity > (1<<63-1)/512 {
		return fmt.Errorf("virtio-blk: %v: capacity of %d sectors overflows", d.vd.PCI, capacity)
	}
	size := int64(capacity*512) &^ int64(d.sector-1)
	d.mu.Lock()
	d.size = size
	d.mu.Unlock()
	return nil
}

func (d *Device) freeSlots() {
	for _, s := range d.all {
		d.mem.Free(s.r)
	}
	d.all = nil
}

// loop completes requests as the device returns them and watches for
// configuration changes.
func (d *Device) loop() {
	defer close(d.loopDone)
	for {
		select {
		case <-d.stop:
			return
		case <-d.vd.ConfigChanged():
			if d.vd.NeedsReset() {
				d.breakDevice(errors.New("the device set DEVICE_NEEDS_RESET"))
				return
			}
			if err := d.readCapacity(); err != nil {
				d.breakDevice(err)
				return
			}
		case <-d.q.Ready():
		}
		for {
			u, ok, err := d.q.Next()
			if err != nil {
				d.breakDevice(err)
				return
			}
			if !ok {
				break
			}
			s := u.Token.(*slot)
			d.mu.Lock()
			mine := s.busy
			s.busy = false
			d.mu.Unlock()
			if mine {
				s.done <- result{u.Len, u.Err}
			}
		}
	}
}

// breakDevice stops a device that misbehaved: it is reset (so it no
// longer touches the slots) and every request in flight fails.
func (d *Device) breakDevice(cause error) {
	err := fmt.Errorf("%w (%w): %v: %v", ErrDeviceBroken, blockdev.ErrClosed, d.vd.PCI, cause)
	d.mu.Lock()
	if d.failed != nil {
		d.mu.Unlock()
		return // someone else stopped it
	}
	d.failed = err
	d.mu.Unlock()
	d.vd.Fail()
	cerr := d.vd.Close()
	d.mu.Lock()
	if cerr != nil {
		d.leak = true
	}
	var busy []*slot
	for _, s := range d.all {
		if s.busy {
			s.busy = false
			busy = append(busy, s)
		}
	}
	d.mu.Unlock()
	for _, s := range busy {
		s.done <- result{err: err}
	}
}

// enter admits a call; Close waits for admitted calls.
func (d *Device) enter() (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return 0, blockdev.ErrClosed
	}
	if d.failed != nil {
		return 0, d.failed
	}
	d.calls++
	return d.size, nil
}

func (d *Device) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls--
	if d.calls == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// do runs one request in a slot: typ at sector with the data in buf
// (written for TypeOut, read back for TypeIn and TypeGetID).
func (d *Device) do(typ uint32, sector uint64, buf []byte) error {
	s := <-d.slots
	defer func() { d.slots <- s }()
	b := s.r.Bytes
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint64(b[8:], sector)
	b[headerLen] = statusUnset
	bufs := []virtio.Buffer{{Addr: s.r.Phys, Len: headerLen}}
	in := typ != TypeOut
	if typ == TypeOut {
		copy(b[dataOff:], buf)
	}
	for off := 0; off < len(buf); off += d.segSize {
		n := min(d.segSize, len(buf)-off)
		bufs = append(bufs, virtio.Buffer{Addr: s.r.Phys + uint64(dataOff+off), Len: uint32(n), Writable: in})
	}
	bufs = append(bufs, virtio.Buffer{Addr: s.r.Phys + headerLen, Len: 1, Writable: true})

	d.mu.Lock()
	if d.failed != nil {
		err := d.failed
		d.mu.Unlock()
		return err
	}
	s.busy = true
	err := d.q.Add(s, bufs...)
	if err != nil {
		s.busy = false
	}
	d.mu.Unlock()
	if errors.Is(err, virtio.ErrBroken) {
		// The queue saw the protocol break before the loop did: stop the
		// device here, so that every caller gets the same error.
		d.breakDevice(err)
		d.mu.Lock()
		err = d.failed
		d.mu.Unlock()
		return err
	}
	if err != nil {
		return fmt.Errorf("virtio-blk: %v: %w", d.vd.PCI, err)
	}
	d.q.Kick()
	res := <-s.done
	if res.err != nil {
		if errors.Is(res.err, virtio.ErrLength) {
			return fmt.Errorf("%w: %v", ErrBadStatus, res.err)
		}
		return res.err
	}
	switch st := b[headerLen]; st {
	case StatusOK:
	case StatusIOErr:
		return fmt.Errorf("%w: %v, request %d at sector %d", ErrIO, d.vd.PCI, typ, sector)
	case StatusUnsupp:
		return fmt.Errorf("%w: %v, request %d", ErrUnsupported, d.vd.PCI, typ)
	default:
		return fmt.Errorf("%w: %v, request %d: status %#x", ErrBadStatus, d.vd.PCI, typ, st)
	}
	if in {
		copy(buf, b[dataOff:dataOff+len(buf)])
	}
	return nil
}

// transfer reads or writes the sector-aligned buf at off, in requests of
// up to d.maxXfer bytes, as many at once as there are slots.
func (d *Device) transfer(typ uint32, off int64, buf []byte) error {
	if len(buf) <= d.maxXfer {
		return d.do(typ, uint64(off)/512, buf)
	}
	chunks := (len(buf) + d.maxXfer - 1) / d.maxXfer
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < min(chunks, cap(d.slots)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= chunks {
					return
				}
				lo := i * d.maxXfer
				chunk := buf[lo:min(lo+d.maxXfer, len(buf))]
				if err := d.do(typ, uint64(off+int64(lo))/512, chunk); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func checkRange(size, off int64, n int) error {
	if off < 0 {
		return fmt.Errorf("virtio-blk: offset %d is negative: %w", off, blockdev.ErrOutOfRange)
	}
	if off > size || int64(n) > size-off {
		return fmt.Errorf("virtio-blk: %d bytes at offset %d go past the end of the %d-byte disk: %w", n, off, size, blockdev.ErrOutOfRange)
	}
	return nil
}

// ReadAt implements io.ReaderAt. An access that goes past the end of the
// disk reads nothing and returns blockdev.ErrOutOfRange.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	size, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer d.leave()
	if err := checkRange(size, off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	ss := int64(d.sector)
	start, end := off&^(ss-1), (off+int64(len(p))+ss-1)&^(ss-1)
	if start == off && end == off+int64(len(p)) {
		if err := d.transfer(TypeIn, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	buf := make([]byte, end-start)
	if err := d.transfer(TypeIn, start, buf); err != nil {
		return 0, err
	}
	return copy(p, buf[off-start:]), nil
}

// WriteAt implements io.WriterAt. Partial sectors are read, merged and
// written back; concurrent writes to disjoint bytes of one sector are
// serialized so neither is lost. A read-only disk refuses with
// blockdev.ErrReadOnly and an access past the end with
// blockdev.ErrOutOfRange, before anything reaches the device.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	size, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer d.leave()
	if d.readOnly {
		return 0, fmt.Errorf("virtio-blk: %v: %w", d.vd.PCI, blockdev.ErrReadOnly)
	}
	if err := checkRange(size, off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	ss := int64(d.sector)
	start, end := off&^(ss-1), (off+int64(len(p))+ss-1)&^(ss-1)
	if start == off && end == off+int64(len(p)) {
		if err := d.transfer(TypeOut, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	first, last := uint64(start/ss), uint64((end-1)/ss)
	d.locks.lock(first)
	defer d.locks.unlock(first)
	if last != first {
		d.locks.lock(last)
		defer d.locks.unlock(last)
	}
	buf := make([]byte, end-start)
	headPartial, tailPartial := off != start, off+int64(len(p)) != end
	if headPartial {
		if err := d.transfer(TypeIn, start, buf[:ss]); err != nil {
			return 0, err
		}
	}
	if tail := end - ss; tailPartial && !(headPartial && tail == start) {
		if err := d.transfer(TypeIn, tail, buf[tail-start:]); err != nil {
			return 0, err
		}
	}
	copy(buf[off-start:], p)
	if err := d.transfer(TypeOut, start, buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush implements blockdev.Device with VIRTIO_BLK_T_FLUSH. Without
// VIRTIO_BLK_F_FLUSH the device's cache is write-through (5.2.6.3) and
// Flush returns nil at once.
func (d *Device) Flush() error {
	if _, err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	if !d.flush {
		return nil
	}
	return d.do(TypeFlush, 0, nil)
}

// ID returns the device's identification string (VIRTIO_BLK_T_GET_ID, up
// to 20 bytes), or ErrUnsupported.
func (d *Device) ID() (string, error) {
	if _, err := d.enter(); err != nil {
		return "", err
	}
	defer d.leave()
	b := make([]byte, idLen)
	if err := d.do(TypeGetID, 0, b); err != nil {
		return "", err
	}
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	return string(b), nil
}

// Size implements blockdev.Device.
func (d *Device) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.size
}

// SectorSize implements blockdev.Device: blk_size, or 512.
func (d *Device) SectorSize() int { return d.sector }

// ReadOnly implements blockdev.Device: VIRTIO_BLK_F_RO.
func (d *Device) ReadOnly() bool { return d.readOnly }

// FlushSupported reports whether VIRTIO_BLK_F_FLUSH was negotiated.
func (d *Device) FlushSupported() bool { return d.flush }

// Mode is how completions are noticed.
func (d *Device) Mode() virtio.IntrMode { return d.vd.Mode() }

// PCI is the function the driver runs on.
func (d *Device) PCI() *pci.Device { return d.vd.PCI }

// Close implements blockdev.Device: new calls fail with
// blockdev.ErrClosed, calls in flight finish (or, after
// Config.CloseTimeout, fail as the device is reset under them), then the
// device is reset and its memory and vectors released.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.closing = true
	var idle chan struct{}
	if d.calls > 0 {
		idle = make(chan struct{})
		d.idle = idle
	}
	d.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-time.After(d.cfg.CloseTimeout):
			d.breakDevice(errors.New("closed with requests outstanding"))
			<-idle
		}
	}
	close(d.stop)
	<-d.loopDone
	d.mu.Lock()
	broken := d.failed != nil
	d.mu.Unlock()
	var err error
	if !broken {
		err = d.vd.Close()
	}
	d.mu.Lock()
	leak := d.leak || err != nil
	d.mu.Unlock()
	if !leak {
		d.freeSlots()
	}
	return err
}

// sectorLocks serializes read-modify-write of single sectors.
type sectorLocks struct {
	mu   sync.Mutex
	cond *sync.Cond
	held map[uint64]bool
}

func (l *sectorLocks) lock(s uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
		l.held = map[uint64]bool{}
	}
	for l.held[s] {
		l.cond.Wait()
	}
	l.held[s] = true
}

func (l *sectorLocks) unlock(s uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, s)
	l.cond.Broadcast()
}
