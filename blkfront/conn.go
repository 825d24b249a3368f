package blkfront

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/ring"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// Frontend keys (io/blkif.h, "Frontend XenBus Nodes").
const (
	keyRingRef       = "ring-ref"
	keyRingPageOrder = "ring-page-order"
	keyEventChannel  = "event-channel"
	keyProtocol      = "protocol"
	// protocolNative is XEN_IO_PROTO_ABI_X86_64: the layouts in wire.go.
	protocolNative = "x86_64-abi"
)

// conn is one connection to the backend: a ring, its grants and event
// channel, and the requests outstanding on it. Everything but the
// immutable setup is guarded by Device.mu.
type conn struct {
	info  Info
	segs  int         // data pages per request; more than MaxSegments means indirect
	flush FlushMethod // turned off by an EOPNOTSUPP

	ring     *ring.Front // RequestSize slots (a response fits in one)
	region   *dma.Region
	ringRefs []gnttab.Ref
	ch       EventChannel

	slots   []*op // by the request id's slot bits; nil when free
	freeIDs []uint16
	gen     uint64 // generation of the last request id
	dead    bool   // retired: nothing more is read from the ring

	cancel   context.CancelFunc // stops poll
	pollDone chan struct{}
}

// connect runs the frontend's half of the xenbus handshake, as Linux
// blkfront's talk_to_blkback and blkfront_connect do: wait for the
// backend's InitWait, build and grant the ring, publish it with the event
// channel and protocol in one transaction together with state
// Initialised, wait for Connected, read the disk's properties, and say
// Connected.
//
// When reconnecting, a backend that disappears (state Unknown: the
// toolstack removed it, as after xl block-detach) ends the wait at once;
// on first contact it may simply not be there yet.
func (d *Device) connect(ctx context.Context, reconnecting bool) (*conn, error) {
	// A backend still Closed from an earlier connection goes to InitWait
	// when it sees this frontend Initialising (blkback's
	// frontend_changed), so Closed is waited through, not an error.
	s, err := d.fe.WaitBackend(ctx, func(s xenbus.State) bool {
		return s == xenbus.StateInitWait || (reconnecting && s == xenbus.StateUnknown)
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for backend %s to reach InitWait (it is %v): %w", d.fe.Backend, s, err)
	}
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", d.fe.Backend)
	}
	v, present, err := d.readBackend(ctx, keyMaxRingPageOrder)
	if err != nil {
		return nil, err
	}
	order, err := parseRingPageOrder(v, present, d.cfg.RingPageOrder)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", d.fe.Backend, err)
	}
	c, err := d.newConn(order)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{
		keyEventChannel: strconv.FormatUint(uint64(c.ch.Port()), 10),
		keyProtocol:     protocolNative,
	}
	if order == 0 {
		keys[keyRingRef] = strconv.FormatUint(uint64(c.ringRefs[0]), 10)
	} else {
		keys[keyRingPageOrder] = strconv.Itoa(order)
		for i, ref := range c.ringRefs {
			keys[keyRingRef+strconv.Itoa(i)] = strconv.FormatUint(uint64(ref), 10)
		}
	}
	published := false
	fail := func(err error) (*conn, error) {
		if published {
			// The backend may have mapped the ring: take it through
			// Closing so it lets go before the grants are revoked.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			d.fe.Close(cctx)
			cancel()
		}
		d.teardown(c)
		return nil, err
	}
	if err := d.fe.PublishState(ctx, keys, xenbus.StateInitialised); err != nil {
		return fail(fmt.Errorf("publishing the ring in %s: %w", d.fe.Dir, err))
	}
	published = true
	if _, err := d.fe.WaitBackendState(ctx, xenbus.StateConnected); err != nil {
		return fail(fmt.Errorf("waiting for backend %s to reach Connected: %w", d.fe.Backend, err))
	}
	kv := map[string]string{}
	for _, k := range backendKeys {
		v, ok, err := d.readBackend(ctx, k)
		if err != nil {
			return fail(err)
		}
		if ok {
			kv[k] = v
		}
	}
	info, err := parseInfo(kv)
	if err != nil {
		return fail(fmt.Errorf("backend %s: %w", d.fe.Backend, err))
	}
	c.info = info
	c.flush = info.Flush
	c.segs, _ = segmentsPerRequest(info.MaxIndirectSegments, d.cfg.MaxSegments)
	if err := d.fe.SetState(ctx, xenbus.StateConnected); err != nil {
		return fail(fmt.Errorf("switching %s to Connected: %w", d.fe.Dir, err))
	}
	pctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.pollDone = cancel, make(chan struct{})
	go d.poll(pctx, c)
	d.mu.Lock()
	d.conn, d.info = c, info
	if d.connectedOnce {
		d.stats.Reconnects++
	}
	d.connectedOnce = true
	d.cond.Broadcast()
	d.mu.Unlock()
	return c, nil
}

// readBackend reads one backend key; a missing key is not an error.
func (d *Device) readBackend(ctx context.Context, key string) (string, bool, error) {
	v, err := d.fe.ReadBackend(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading %s/%s: %w", d.fe.Backend, key, err)
	}
	return v, true, nil
}

// newConn allocates and grants a ring of 2^order pages and an event
// channel for the backend.
func (d *Device) newConn(order int) (*conn, error) {
	pages := 1 << order
	r, err := d.cfg.Memory.Alloc(pages * PageSize)
	if err != nil {
		return nil, fmt.Errorf("allocating a %d-page ring: %w", pages, err)
	}
	c := &conn{region: r}
	c.ring, err = ring.NewFront(r.Bytes[:pages*PageSize], RequestSize)
	if err != nil {
		d.teardown(c)
		return nil, fmt.Errorf("blkfront: %w", err)
	}
	for i := 0; i < pages; i++ {
		ref, err := d.cfg.Grants.Grant(d.grantDom(), r.Frame()+uint64(i), false)
		if err != nil {
			d.teardown(c)
			return nil, fmt.Errorf("granting ring page %d: %w", i, err)
		}
		c.ringRefs = append(c.ringRefs, ref)
	}
	if c.ch, err = d.cfg.Events.AllocUnbound(d.grantDom()); err != nil {
		d.teardown(c)
		return nil, fmt.Errorf("allocating an event channel for domain %d: %w", d.fe.BackendID, err)
	}
	n := c.ring.Size()
	c.slots = make([]*op, n)
	c.freeIDs = make([]uint16, n)
	for i := range c.freeIDs {
		c.freeIDs[i] = uint16(n - 1 - i) // ids are handed out from the end: 0 first
	}
	return c, nil
}

// teardown releases a connection's ring and event channel. Ring pages the
// backend still maps are leaked, never reused.
func (d *Device) teardown(c *conn) error {
	var errs []error
	if c.ch != nil {
		if err := c.ch.Close(); err != nil {
			errs = append(errs, fmt.Errorf("blkfront: vbd %s: closing the event channel: %w", d.cfg.Device, err))
		}
	}
	leaked := false
	for _, ref := range c.ringRefs {
		if err := d.cfg.Grants.Revoke(ref); err != nil {
			leaked = true
		}
	}
	if leaked {
		d.mu.Lock()
		d.stats.LeakedPages += len(c.region.Bytes) / PageSize
		d.mu.Unlock()
		errs = append(errs, fmt.Errorf("blkfront: vbd %s: the backend still maps the ring: %w", d.cfg.Device, errLeaked))
	} else if c.region != nil {
		if err := d.cfg.Memory.Free(c.region); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// poll completes requests as the backend answers them: after every event
// it drains the ring and does the final check.
func (d *Device) poll(ctx context.Context, c *conn) {
	defer close(c.pollDone)
	for {
		if err := c.ch.Wait(ctx); err != nil {
			if ctx.Err() == nil {
				d.fail(fmt.Errorf("%w: vbd %s: waiting for the event channel: %v", blockdev.ErrClosed, d.cfg.Device, err))
			}
			return
		}
		d.mu.Lock()
		d.drainLocked(c)
		d.mu.Unlock()
	}
}

// retire stops reading c's ring: responses already there complete their
// requests, and the rest are marked for re-issue (or fail with the
// device's permanent error).
func (d *Device) retire(c *conn, err error) {
	d.mu.Lock()
	if d.conn == c {
		d.conn = nil
	}
	d.drainLocked(c)
	c.dead = true
	if d.failed != nil {
		err = d.failed
	}
	d.abortLocked(c, err)
	d.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
		<-c.pollDone
	}
}

// supervise follows the backend's state while c is up. When the backend
// leaves Connected, it reconnects as Linux blkfront recovers from a
// resume (blkif_recover): the old ring is retired once the backend is done
// with it, a new one is built, and requests still outstanding are
// re-issued on it.
func (d *Device) supervise(c *conn) {
	defer close(d.superDone)
	defer func() {
		d.mu.Lock()
		d.live = c
		d.mu.Unlock()
	}()
	for {
		s, err := d.fe.WaitBackend(d.ctx, func(s xenbus.State) bool { return s != xenbus.StateConnected })
		if d.ctx.Err() != nil {
			return
		}
		if err != nil {
			d.fail(fmt.Errorf("%w: vbd %s: watching the backend's state: %v", blockdev.ErrClosed, d.cfg.Device, err))
			return
		}
		d.mu.Lock()
		if d.conn == c {
			d.conn = nil // new requests wait for the next connection
		}
		failed := d.failed != nil
		d.mu.Unlock()
		if failed {
			return
		}
		next, err := d.reconnect(c, s)
		c = next // nil on error: reconnect tore the old one down
		if d.ctx.Err() != nil {
			return
		}
		if err != nil {
			d.fail(fmt.Errorf("%w: vbd %s: the backend went away and did not come back: %v", blockdev.ErrClosed, d.cfg.Device, err))
			return
		}
	}
}

// reconnect retires c after the backend left Connected (in state s) and
// connects again. It returns the new connection; c is torn down.
func (d *Device) reconnect(c *conn, s xenbus.State) (*conn, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.ReconnectTimeout)
	defer cancel()
	retired := false
	retire := func() {
		if !retired {
			retired = true
			d.retire(c, nil)
			d.teardown(c)
		}
	}
	defer retire()
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", d.fe.Backend)
	}
	// Linux blkfront answers a closing backend with Closed
	// (xenbus_frontend_closed); Linux blkback then finishes the requests
	// in flight, unmaps the ring and goes Closed itself.
	if err := d.fe.SetState(ctx, xenbus.StateClosed); err != nil {
		return nil, fmt.Errorf("switching %s to Closed: %w", d.fe.Dir, err)
	}
	s, err := d.fe.WaitBackend(ctx, func(s xenbus.State) bool {
		return s == xenbus.StateClosed || s == xenbus.StateInitWait || s == xenbus.StateInitialising || s == xenbus.StateUnknown
	})
	retire()
	if err != nil {
		return nil, fmt.Errorf("waiting for backend %s to close: %w", d.fe.Backend, err)
	}
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", d.fe.Backend)
	}
	// blkback's frontend_changed: a frontend back in Initialising takes a
	// Closed backend to InitWait again.
	if err := d.fe.SetState(ctx, xenbus.StateInitialising); err != nil {
		return nil, fmt.Errorf("switching %s to Initialising: %w", d.fe.Dir, err)
	}
	return d.connect(ctx, true)
}
