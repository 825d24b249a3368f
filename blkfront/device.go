package blkfront

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"time"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// Limits and defaults.
const (
	// MaxRingPageOrder is the largest ring the driver builds: 16 pages,
	// Linux's XENBUS_MAX_RING_GRANT_ORDER.
	MaxRingPageOrder = 4
	// DefaultRingPageOrder gives a 4-page ring (128 requests in flight).
	DefaultRingPageOrder = 2
	// DefaultMaxSegments is the indirect segment limit Linux blkfront uses
	// by default (xen_blkif_max_segments): 128 KiB per request.
	DefaultMaxSegments = 32
	// DefaultBufferPages bounds the pages data is copied through (4 MiB).
	DefaultBufferPages = 1024
	// DefaultReconnectTimeout bounds how long requests wait for a backend
	// that went away to come back before they fail.
	DefaultReconnectTimeout = time.Minute
	// closeTimeout bounds the xenstore handshake of Close.
	closeTimeout = 10 * time.Second
)

// Config is what New needs: where the disk is, and the Xen services the
// driver uses. The zero value of each limit picks its default.
type Config struct {
	// Store is this domain's xenstore connection.
	Store *xenstore.Client
	// Grants is this domain's grant table (*gnttab.Table).
	Grants GrantTable
	// Events allocates the event channel (see EventChannels).
	Events EventChannels
	// Memory gives the ring and buffer pages (dma.System() in a guest).
	Memory dma.Allocator
	// Device is the vbd's id: the name of its directory under device/vbd,
	// which is also its virtual-device number ("51712" is xvda).
	Device string

	// RingPageOrder caps the ring at 2^RingPageOrder pages (0 to
	// MaxRingPageOrder); the backend's max-ring-page-order may lower it.
	// Zero means DefaultRingPageOrder; use SingleRingPage for one page.
	RingPageOrder int
	// SingleRingPage forces a one-page ring (ring-ref, not ring-refN).
	SingleRingPage bool
	// MaxSegments caps the data pages of one request when the backend
	// offers indirect segments (default DefaultMaxSegments, at most
	// MaxIndirectSegments). A value of 11 or less disables indirect
	// requests.
	MaxSegments int
	// BufferPages bounds the pages requests copy data through (default
	// DefaultBufferPages). It is raised to what one request needs.
	BufferPages int
	// ReconnectTimeout bounds a reconnection (default
	// DefaultReconnectTimeout).
	ReconnectTimeout time.Duration
}

// Errors particular to this driver. The blockdev errors (ErrReadOnly,
// ErrOutOfRange, ErrClosed) are returned as the blockdev contract says.
var (
	// ErrIO is a request the backend answered with BLKIF_RSP_ERROR.
	ErrIO = errors.New("blkfront: the backend reported an I/O error")
	// ErrNotSupported is an operation the backend does not offer or
	// refused with BLKIF_RSP_EOPNOTSUPP.
	ErrNotSupported = errors.New("blkfront: operation not supported by the backend")
	// ErrBadResponse is a response that does not match its request (wrong
	// operation, unknown status). The request it names fails with it.
	ErrBadResponse = errors.New("blkfront: malformed response from the backend")
	// ErrBackendBroken is returned once the backend broke the ring
	// protocol (e.g. produced more responses than requests): like Linux
	// blkfront's BLKIF_STATE_ERROR, the disk is unusable from then on.
	ErrBackendBroken = errors.New("blkfront: the backend broke the ring protocol; the disk is disabled")
)

// Stats counts events worth watching.
type Stats struct {
	Requests         uint64 // ring requests issued (including re-issues)
	Reissued         uint64 // requests re-issued after a reconnect
	Reconnects       uint64 // completed reconnections
	DroppedResponses uint64 // responses naming no outstanding request
	BadResponses     uint64 // responses failing their request (wrong operation, unknown status)
	LeakedPages      int    // pages the backend kept mapped (never reused)
}

// Device is a Xen virtual block device. It implements blockdev.Device.
type Device struct {
	cfg    Config
	fe     *xenbus.Frontend
	handle uint16

	ctx       context.Context // the supervisor's lifetime
	cancel    context.CancelFunc
	superDone chan struct{}

	mu      sync.Mutex
	cond    sync.Cond
	conn    *conn // accepting requests; nil while (re)connecting
	live    *conn // set when the supervisor exits: what Close tears down
	info    Info  // of the last connection
	closing bool
	// connectedOnce tells a reconnection from the first connection.
	connectedOnce bool
	failed        error // permanent
	calls         int   // calls admitted and not returned
	pool          pool
	stats         Stats

	locks sectorLocks
}

var _ blockdev.Device = (*Device)(nil)

// New connects to the vbd cfg.Device the toolstack gave this domain
// (device/vbd/<id> in xenstore) and returns once the backend is
// Connected. ctx bounds the handshake only. The device then follows the
// backend on its own: if the backend closes, requests in flight are held,
// the ring is rebuilt when the backend returns, and they are re-issued.
//
// Wiring in a unikgo guest (xenpv/domain, xenpv/gnttab, kernel/dma):
//
//	store, _ := domain.Xenstore()
//	mux, _ := domain.Events()
//	grants, _ := gnttab.Open() // *gnttab.Table is a GrantTable
//	mem, _ := dma.System()
//	ids, _ := xenbus.Devices(ctx, store, "vbd") // e.g. ["51712"] for xvda
//	d, err := blkfront.New(ctx, blkfront.Config{
//		Store: store, Grants: grants, Memory: mem, Device: ids[0],
//		Events: ports{mux}, // see below
//	})
//
// where ports adapts an evtchn.Mux: AllocUnbound calls
// mux.Device().AllocUnbound(uint16(remote)) and returns a channel whose
// Port is that port, Wait and Notify are mux.Channel(port)'s, and Close is
// mux.Device().Unbind(port) then mux.Forget(port).
func New(ctx context.Context, cfg Config) (*Device, error) {
	if cfg.Store == nil || cfg.Grants == nil || cfg.Events == nil || cfg.Memory == nil {
		return nil, errors.New("blkfront: Config needs Store, Grants, Events and Memory")
	}
	if cfg.RingPageOrder == 0 {
		cfg.RingPageOrder = DefaultRingPageOrder
	}
	if cfg.SingleRingPage {
		cfg.RingPageOrder = 0
	}
	if cfg.RingPageOrder < 0 || cfg.RingPageOrder > MaxRingPageOrder {
		return nil, fmt.Errorf("blkfront: RingPageOrder %d is outside 0..%d", cfg.RingPageOrder, MaxRingPageOrder)
	}
	if cfg.MaxSegments == 0 {
		cfg.MaxSegments = DefaultMaxSegments
	}
	cfg.MaxSegments = max(min(cfg.MaxSegments, MaxIndirectSegments), MaxSegments)
	if cfg.BufferPages == 0 {
		cfg.BufferPages = DefaultBufferPages
	}
	cfg.BufferPages = max(cfg.BufferPages, cfg.MaxSegments+MaxIndirectPages)
	if cfg.ReconnectTimeout == 0 {
		cfg.ReconnectTimeout = DefaultReconnectTimeout
	}
	fe, err := xenbus.OpenFrontend(ctx, cfg.Store, "vbd", cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("blkfront: vbd %s: %w", cfg.Device, err)
	}
	d := &Device{
		cfg:       cfg,
		fe:        fe,
		superDone: make(chan struct{}),
		pool:      pool{mem: cfg.Memory, grants: cfg.Grants, max: cfg.BufferPages},
	}
	// Linux blkfront's handle is the vbd id (virtual-device); blkback
	// ignores it, but it names the disk in logs.
	if n, err := strconv.ParseUint(cfg.Device, 10, 16); err == nil {
		d.handle = uint16(n)
	}
	d.cond.L = &d.mu
	d.locks.held = map[uint64]chan struct{}{}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	c, err := d.connect(ctx, false)
	if err != nil {
		d.cancel()
		d.pool.close()
		return nil, fmt.Errorf("blkfront: vbd %s: %w", cfg.Device, err)
	}
	go d.supervise(c)
	return d, nil
}

// Info describes the disk as the backend last published it.
func (d *Device) Info() Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info
}

// Stats returns the driver's counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.LeakedPages += len(d.pool.quarantine)
	return s
}

// Size implements blockdev.Device.
func (d *Device) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info.Size()
}

// SectorSize implements blockdev.Device.
func (d *Device) SectorSize() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info.SectorSize
}

// ReadOnly implements blockdev.Device.
func (d *Device) ReadOnly() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info.ReadOnly
}

// enter admits a call; Close waits for admitted calls.
func (d *Device) enter() (Info, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return d.info, blockdev.ErrClosed
	}
	if d.failed != nil {
		return d.info, d.failed
	}
	d.calls++
	return d.info, nil
}

func (d *Device) leave() {
	d.mu.Lock()
	d.calls--
	if d.calls == 0 {
		d.cond.Broadcast()
	}
	d.mu.Unlock()
}

// checkRange validates an access of n bytes at off.
func checkRange(info *Info, off int64, n int) error {
	if off < 0 {
		return fmt.Errorf("blkfront: offset %d is negative: %w", off, blockdev.ErrOutOfRange)
	}
	if size := info.Size(); off > size || int64(n) > size-off {
		return fmt.Errorf("blkfront: %d bytes at offset %d go past the end of the %d-byte disk: %w", n, off, size, blockdev.ErrOutOfRange)
	}
	return nil
}

// ReadAt implements io.ReaderAt. An access that goes past the end of the
// disk reads nothing and returns blockdev.ErrOutOfRange.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	info, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer d.leave()
	if err := checkRange(&info, off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	ss := int64(info.SectorSize)
	start, end := off&^(ss-1), (off+int64(len(p))+ss-1)&^(ss-1)
	if start == off && end == off+int64(len(p)) {
		if err := d.transfer(OpRead, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// A partial sector: read whole sectors into a bounce buffer.
	buf := make([]byte, end-start)
	if err := d.transfer(OpRead, start, buf); err != nil {
		return 0, err
	}
	return copy(p, buf[off-start:]), nil
}

// WriteAt implements io.WriterAt. Partial sectors are read, merged and
// written back; concurrent writes to disjoint bytes of one sector are
// serialized so neither is lost. A read-only disk refuses with
// blockdev.ErrReadOnly and an access past the end with
// blockdev.ErrOutOfRange, before anything reaches the backend.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	info, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer d.leave()
	if info.ReadOnly {
		return 0, fmt.Errorf("blkfront: vbd %s: %w", d.cfg.Device, blockdev.ErrReadOnly)
	}
	if err := checkRange(&info, off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	ss := int64(info.SectorSize)
	start, end := off&^(ss-1), (off+int64(len(p))+ss-1)&^(ss-1)
	if start == off && end == off+int64(len(p)) {
		if err := d.transfer(OpWrite, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// Read-modify-write of the edge sectors, holding them so that another
	// partial write to the same sector cannot interleave.
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
		if err := d.transfer(OpRead, start, buf[:ss]); err != nil {
			return 0, err
		}
	}
	if tail := end - ss; tailPartial && !(headPartial && tail == start) {
		if err := d.transfer(OpRead, tail, buf[tail-start:]); err != nil {
			return 0, err
		}
	}
	copy(buf[off-start:], p)
	if err := d.transfer(OpWrite, start, buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush implements blockdev.Device with BLKIF_OP_FLUSH_DISKCACHE, or
// BLKIF_OP_WRITE_BARRIER if that is all the backend offers. A backend that
// offers neither has no volatile cache to flush (Linux blkfront's view),
// so Flush returns nil at once. If the backend refuses the flush with
// EOPNOTSUPP, Flush returns ErrNotSupported and, as Linux does, the driver
// stops flushing on this connection.
func (d *Device) Flush() error {
	if _, err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	return d.run([]*op{{kind: OpFlushDiskCache}})
}

// Discard tells the backend the n bytes at off hold nothing worth
// keeping (BLKIF_OP_DISCARD). off and n must be whole sectors. It returns
// ErrNotSupported if the backend does not offer feature-discard.
func (d *Device) Discard(off, n int64) error {
	info, err := d.enter()
	if err != nil {
		return err
	}
	defer d.leave()
	if info.ReadOnly {
		return fmt.Errorf("blkfront: vbd %s: %w", d.cfg.Device, blockdev.ErrReadOnly)
	}
	if n < 0 || n > int64(^uint(0)>>1) {
		return fmt.Errorf("blkfront: discard of %d bytes: %w", n, blockdev.ErrOutOfRange)
	}
	if err := checkRange(&info, off, int(n)); err != nil {
		return err
	}
	ss := int64(info.SectorSize)
	if off%ss != 0 || n%ss != 0 {
		return fmt.Errorf("blkfront: discard of %d bytes at %d is not in whole %d-byte sectors", n, off, ss)
	}
	if n == 0 {
		return nil
	}
	return d.run([]*op{{kind: OpDiscard, sector: uint64(off) >> SectorShift, nrSectors: uint64(n) >> SectorShift}})
}

// transfer reads or writes the sector-aligned buf at off.
func (d *Device) transfer(kind Operation, off int64, buf []byte) error {
	return d.run([]*op{{kind: kind, sector: uint64(off) >> SectorShift, buf: buf}})
}

// Close implements blockdev.Device: new calls fail with
// blockdev.ErrClosed, calls already made finish, then the frontend goes
// through Closing to Closed and the ring, grants and pages are released.
// Pages the backend still maps are leaked, never reused.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.closing = true
	for d.calls > 0 {
		d.cond.Wait()
	}
	d.mu.Unlock()

	d.cancel()
	<-d.superDone
	d.mu.Lock()
	c := d.live
	d.conn = nil
	if d.failed == nil {
		d.failed = blockdev.ErrClosed
	}
	d.mu.Unlock()

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// A frontend directory the toolstack already removed has nothing to
	// close.
	if err := d.fe.Close(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("blkfront: vbd %s: closing the xenbus connection: %w", d.cfg.Device, err))
	}
	if c != nil {
		d.retire(c, errors.New("blkfront: closed"))
		errs = append(errs, d.teardown(c))
	}
	d.mu.Lock()
	errs = append(errs, d.pool.close())
	d.mu.Unlock()
	return errors.Join(errs...)
}

// fail disables the device for good: calls in flight and later calls
// return err.
func (d *Device) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failLocked(err)
}

func (d *Device) failLocked(err error) {
	if d.failed == nil {
		d.failed = err
	}
	if c := d.conn; c != nil {
		d.abortLocked(c, d.failed)
	}
	d.cond.Broadcast()
}

// sectorLocks serializes read-modify-writes of one sector.
type sectorLocks struct {
	mu   sync.Mutex
	held map[uint64]chan struct{}
}

func (l *sectorLocks) lock(s uint64) {
	for {
		l.mu.Lock()
		ch, busy := l.held[s]
		if !busy {
			l.held[s] = make(chan struct{})
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		<-ch
	}
}

func (l *sectorLocks) unlock(s uint64) {
	l.mu.Lock()
	ch := l.held[s]
	delete(l.held, s)
	l.mu.Unlock()
	close(ch)
}

// grantDom is the backend's domain as gnttab names it.
func (d *Device) grantDom() gnttab.DomID { return gnttab.DomID(d.fe.BackendID) }
