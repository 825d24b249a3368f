package xenstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Layout of struct xenstore_domain_interface (xs_wire.h), the shared page
// through which a domain talks to xenstored.
const (
	RingSize = 1024 // XENSTORE_RING_SIZE: bytes in each direction

	RingReqOff            = 0    // req[1024]: guest → xenstored
	RingRspOff            = 1024 // rsp[1024]: xenstored → guest (replies, watch events)
	RingReqConsOff        = 2048 // advanced by xenstored
	RingReqProdOff        = 2052 // advanced by the guest
	RingRspConsOff        = 2056 // advanced by the guest
	RingRspProdOff        = 2060 // advanced by xenstored
	RingServerFeaturesOff = 2064
	RingConnectionOff     = 2068
	RingErrorOff          = 2072
	RingEvtchnPortOff     = 2076
	RingInterfaceSize     = 2080 // bytes of the page the interface uses
)

// Values of server_features, connection and error.
const (
	FeatureReconnection = 1 // XENSTORE_SERVER_FEATURE_RECONNECTION
	FeatureError        = 2 // XENSTORE_SERVER_FEATURE_ERROR: the error field is live
	FeatureWatchDepth   = 4 // XENSTORE_SERVER_FEATURE_WATCHDEPTH

	Connected = 0 // XENSTORE_CONNECTED
	Reconnect = 1 // XENSTORE_RECONNECT

	RingErrorNone    = 0 // XENSTORE_ERROR_NONE
	RingErrorComm    = 1 // XENSTORE_ERROR_COMM
	RingErrorRingIdx = 2 // XENSTORE_ERROR_RINGIDX
	RingErrorProto   = 3 // XENSTORE_ERROR_PROTO
)

// RingConn is a byte stream over the xenstore ring page: the requests go
// out through req, replies and watch events come in through rsp. It does
// not know about messages; Client frames them.
//
// The page is shared with xenstored (and whoever else maps it), so every
// index read from it is checked: the producer index of the incoming ring
// may be at most RingSize ahead of our consumer index, the consumer index
// of the outgoing ring at most RingSize behind our producer index, and the
// indices this side owns must not change behind its back. A violation
// fails the connection with ErrProtocol; ring data is only ever addressed
// as idx & (RingSize-1).
//
// Ordering follows xs_wire.h: the producer writes data, then publishes the
// new producer index (a release store), then notifies; the consumer loads
// the producer index (an acquire), copies the data out, then publishes the
// consumer index (sync/atomic stores are sequentially consistent in Go,
// which gives the full barrier Xen asks for before bumping cons) and
// notifies so the peer knows there is room.
//
// One goroutine may read and another write at the same time; concurrent
// readers (or writers) are serialised.
//
// The reconnection protocol (the connection field, for a guest that
// resumes with a ring in an unknown state) is not implemented: a guest
// uses the ring from boot to shutdown, and the indices on the page are
// the state RingConn starts from.
type RingConn struct {
	server bool // true: this end is xenstored (reads req, writes rsp)

	in, out         []byte         // ring data this end reads / writes
	inProd, inCons  *atomic.Uint32 // incoming ring's indices
	outProd, outCon *atomic.Uint32 // outgoing ring's indices
	features        *atomic.Uint32
	errField        *atomic.Uint32

	notify func() error
	wait   func(context.Context) error

	rmu, wmu sync.Mutex
	// myInCons and myOutProd are this end's own indices. They are kept
	// here, not re-read from the page, so a peer that rewrites them is
	// detected instead of believed. Guarded by rmu and wmu respectively.
	myInCons, myOutProd uint32

	// Event fan-out: only one goroutine at a time calls wait; it closes
	// evCh to wake every other goroutine that was waiting for an event.
	evMu      sync.Mutex
	evCh      chan struct{}
	evWaiting bool

	closeCtx  context.Context
	closeFn   context.CancelFunc
	failMu    sync.Mutex
	failErr   error
	closeOnce sync.Once
}

// NewRingConn returns the guest end of the xenstore ring in page.
//
// page is the xenstore page (HVM_PARAM_STORE_PFN), at least
// RingInterfaceSize bytes with its index words 4-byte aligned; anything
// else is a programming error and panics. notify signals xenstored's
// event channel (HVM_PARAM_STORE_EVTCHN). wait blocks until the event
// channel has fired since the last time wait returned, or ctx is done; it
// must remember a notification that arrives while nobody waits (like an
// event channel's pending bit), or a wakeup can be lost. RingConn calls
// wait from at most one goroutine at a time, and relies on it returning
// when ctx ends: that is how Close and cancelled calls get it back.
//
// The current index values on the page are taken as the starting point,
// so a ring that was already in use (by a boot loader, say) continues
// where it was.
func NewRingConn(page []byte, notify func() error, wait func(ctx context.Context) error) *RingConn {
	return newRingConn(page, notify, wait, false)
}

// NewRingServerConn returns the xenstored end of the ring in page: it
// reads requests and writes replies. It exists for fakes (package
// xenstoretest) and for a xenstored written in Go; the checks are the
// same as for the guest end with the roles swapped.
func NewRingServerConn(page []byte, notify func() error, wait func(ctx context.Context) error) *RingConn {
	return newRingConn(page, notify, wait, true)
}

func newRingConn(page []byte, notify func() error, wait func(context.Context) error, server bool) *RingConn {
	if len(page) < RingInterfaceSize {
		panic(fmt.Sprintf("xenstore: ring page of %d bytes, need %d", len(page), RingInterfaceSize))
	}
	if uintptr(unsafe.Pointer(&page[RingReqConsOff]))%4 != 0 {
		panic("xenstore: ring page indices not 4-byte aligned")
	}
	if notify == nil || wait == nil {
		panic("xenstore: NewRingConn needs notify and wait")
	}
	idx := func(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&page[off])) }
	r := &RingConn{
		server:   server,
		features: idx(RingServerFeaturesOff),
		errField: idx(RingErrorOff),
		notify:   notify,
		wait:     wait,
		evCh:     make(chan struct{}),
	}
	req := page[RingReqOff : RingReqOff+RingSize : RingReqOff+RingSize]
	rsp := page[RingRspOff : RingRspOff+RingSize : RingRspOff+RingSize]
	if server {
		r.in, r.inProd, r.inCons = req, idx(RingReqProdOff), idx(RingReqConsOff)
		r.out, r.outProd, r.outCon = rsp, idx(RingRspProdOff), idx(RingRspConsOff)
	} else {
		r.in, r.inProd, r.inCons = rsp, idx(RingRspProdOff), idx(RingRspConsOff)
		r.out, r.outProd, r.outCon = req, idx(RingReqProdOff), idx(RingReqConsOff)
	}
	r.myInCons = r.inCons.Load()
	r.myOutProd = r.outProd.Load()
	r.closeCtx, r.closeFn = context.WithCancel(context.Background())
	return r
}

// fail records the first fatal error and wakes every waiter.
func (r *RingConn) fail(err error) error {
	r.failMu.Lock()
	if r.failErr == nil {
		r.failErr = err
	}
	err = r.failErr
	r.failMu.Unlock()
	r.closeFn()
	return err
}

func (r *RingConn) failed() error {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	return r.failErr
}

// Close fails all pending and future reads and writes with ErrClosed. It
// does not touch the page: xenstored keeps its end.
func (r *RingConn) Close() error {
	r.fail(ErrClosed)
	return nil
}

// serverError checks the error field a server with FeatureError sets when
// it gives up on the connection. Only the guest end looks at it.
func (r *RingConn) serverError() error {
	if r.server || r.features.Load()&FeatureError == 0 {
		return nil
	}
	switch e := r.errField.Load(); e {
	case RingErrorNone:
		return nil
	case RingErrorComm:
		return fmt.Errorf("xenstore: xenstored reports a communication error on the ring: %w", ErrProtocol)
	case RingErrorRingIdx:
		return fmt.Errorf("xenstore: xenstored reports an invalid ring index: %w", ErrProtocol)
	case RingErrorProto:
		return fmt.Errorf("xenstore: xenstored reports a protocol violation on the ring: %w", ErrProtocol)
	default:
		return fmt.Errorf("xenstore: xenstored reports ring error %d: %w", e, ErrProtocol)
	}
}

// available returns how many bytes can be read. Caller holds rmu.
func (r *RingConn) available() (uint32, error) {
	if shared := r.inCons.Load(); shared != r.myInCons {
		return 0, fmt.Errorf("xenstore: peer rewrote our consumer index from %d to %d: %w", r.myInCons, shared, ErrProtocol)
	}
	prod := r.inProd.Load() // acquire: the data reads below come after
	n := prod - r.myInCons
	if n > RingSize {
		return 0, fmt.Errorf("xenstore: peer producer index %d is %d bytes ahead of consumer %d in a %d-byte ring: %w", prod, n, r.myInCons, RingSize, ErrProtocol)
	}
	return n, nil
}

// space returns how many bytes can be written. Caller holds wmu.
func (r *RingConn) space() (uint32, error) {
	if shared := r.outProd.Load(); shared != r.myOutProd {
		return 0, fmt.Errorf("xenstore: peer rewrote our producer index from %d to %d: %w", r.myOutProd, shared, ErrProtocol)
	}
	cons := r.outCon.Load()
	used := r.myOutProd - cons
	if used > RingSize {
		return 0, fmt.Errorf("xenstore: peer consumer index %d is %d bytes behind producer %d in a %d-byte ring: %w", cons, used, r.myOutProd, RingSize, ErrProtocol)
	}
	return RingSize - used, nil
}

// Read reads at least one byte, waiting for xenstored if the ring is
// empty. It is ReadContext with a context that never ends; Close
// unblocks it.
func (r *RingConn) Read(p []byte) (int, error) {
	return r.ReadContext(context.Background(), p)
}

// ReadContext reads what the ring holds, up to len(p), waiting until at
// least one byte is there, ctx is done or the connection fails.
func (r *RingConn) ReadContext(ctx context.Context, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, r.failed()
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	for {
		ev := r.eventSnapshot()
		if err := r.usable(); err != nil {
			return 0, err
		}
		n, err := r.available()
		if err != nil {
			return 0, r.fail(err)
		}
		if n > 0 {
			if n > uint32(len(p)) {
				n = uint32(len(p))
			}
			copyOut(p[:n], r.in, r.myInCons)
			r.myInCons += n
			r.inCons.Store(r.myInCons)
			if err := r.notify(); err != nil {
				return int(n), r.fail(fmt.Errorf("xenstore: notify: %w", err))
			}
			return int(n), nil
		}
		if err := r.waitEvent(ctx, ev); err != nil {
			return 0, err
		}
	}
}

// Write writes all of p, waiting for room as needed. It is WriteContext
// with a context that never ends; Close unblocks it.
func (r *RingConn) Write(p []byte) (int, error) {
	return r.WriteContext(context.Background(), p)
}

// WriteContext writes all of p unless ctx ends or the connection fails
// first; it returns how much was written. A message cut short leaves the
// stream unusable, which is why Client writes without a deadline.
func (r *RingConn) WriteContext(ctx context.Context, p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	done := 0
	for done < len(p) {
		ev := r.eventSnapshot()
		if err := r.usable(); err != nil {
			return done, err
		}
		n, err := r.space()
		if err != nil {
			return done, r.fail(err)
		}
		if n == 0 {
			if err := r.waitEvent(ctx, ev); err != nil {
				return done, err
			}
			continue
		}
		if rest := uint32(len(p) - done); n > rest {
			n = rest
		}
		copyIn(r.out, r.myOutProd, p[done:done+int(n)])
		r.myOutProd += n
		r.outProd.Store(r.myOutProd) // release: data before index
		done += int(n)
		if err := r.notify(); err != nil {
			return done, r.fail(fmt.Errorf("xenstore: notify: %w", err))
		}
	}
	return done, nil
}

func (r *RingConn) usable() error {
	if err := r.failed(); err != nil {
		return err
	}
	if err := r.serverError(); err != nil {
		return r.fail(err)
	}
	return nil
}

// eventSnapshot returns the channel that the next event closes. Taking it
// before checking the ring means an event that arrives after the check
// cannot be missed.
func (r *RingConn) eventSnapshot() chan struct{} {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	return r.evCh
}

// waitEvent waits until an event newer than snapshot ev arrives. If no
// goroutine is inside wait, this one calls it and broadcasts the result;
// otherwise it waits for that goroutine's broadcast. Spurious returns are
// fine: callers re-check the ring.
func (r *RingConn) waitEvent(ctx context.Context, ev chan struct{}) error {
	r.evMu.Lock()
	if ev != r.evCh {
		r.evMu.Unlock()
		return nil // an event came in since the snapshot
	}
	if r.evWaiting {
		r.evMu.Unlock()
		select {
		case <-ev:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.closeCtx.Done():
			return r.failed()
		}
	}
	r.evWaiting = true
	r.evMu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.closeCtx, cancel)
	err := r.wait(wctx)
	stop()
	cancel()

	r.evMu.Lock()
	r.evWaiting = false
	close(r.evCh) // wake the others, also when this wait failed: one of them takes over
	r.evCh = make(chan struct{})
	r.evMu.Unlock()

	if err != nil {
		if cerr := r.failed(); cerr != nil {
			return cerr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return r.fail(fmt.Errorf("xenstore: waiting for event channel: %w", err))
	}
	return nil
}

// copyOut copies len(dst) bytes from ring data starting at index pos.
// len(dst) <= RingSize.
func copyOut(dst, ring []byte, pos uint32) {
	for len(dst) > 0 {
		n := copy(dst, ring[pos&(RingSize-1):])
		dst = dst[n:]
		pos += uint32(n)
	}
}

// copyIn copies src into ring data starting at index pos.
// len(src) <= RingSize.
func copyIn(ring []byte, pos uint32, src []byte) {
	for len(src) > 0 {
		n := copy(ring[pos&(RingSize-1):], src)
		src = src[n:]
		pos += uint32(n)
	}
}
