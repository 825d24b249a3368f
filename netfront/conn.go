package netfront

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/ring"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// conn is one connection to the backend: the two rings, their grants and
// event channel, and what is posted on them. Everything but the immutable
// setup is guarded by NIC.mu.
type conn struct {
	tx, rx       *ring.Front
	region       *dma.Region // tx ring page, then rx ring page
	txRef, rxRef gnttab.Ref
	refs         int // ring pages granted (0, 1 or 2)
	ch           EventChannel
	sg           bool // the backend takes multi-slot packets
	gso4, gso6   bool // the backend takes GSO packets of that type (with Config.Offload)
	offload      bool // the backend may send partial checksums and GSO packets
	// nullDue is how many NULL tx responses the extra info slots on the
	// ring still have coming.
	nullDue int

	// rxPosted is the buffer and grant of each rx request on the ring,
	// by ring index: responses answer requests in ring order.
	rxPosted []rxPost
	rxRaw    [][RxResponseSize]byte // copies of the responses being parsed
	starved  bool                   // a grant failed while posting buffers
	dead     bool                   // retired: nothing more is read from the rings
	aborted  bool                   // what was posted is taken back

	cancel   context.CancelFunc // stops poll
	pollDone chan struct{}
}

type rxPost struct {
	buf uint16
	ref gnttab.Ref
}

// connect runs the frontend's half of the xenbus handshake, as Linux
// netfront's talk_to_netback and xennet_connect do: wait for the
// backend's InitWait, read its features, build and grant the rings, post
// receive buffers, publish the rings, event channel and features together
// with state Connected in one transaction, and wait for the backend to be
// Connected too (Linux netback connects only once the frontend is).
//
// When reconnecting, a backend that disappears (state Unknown: the
// toolstack removed it) ends the wait at once; on first contact it may
// simply not be there yet.
func (n *NIC) connect(ctx context.Context, reconnecting bool) (*conn, error) {
	s, err := n.fe.WaitBackend(ctx, func(s xenbus.State) bool {
		return s == xenbus.StateInitWait || (reconnecting && s == xenbus.StateUnknown)
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for backend %s to reach InitWait (it is %v): %w", n.fe.Backend, s, err)
	}
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", n.fe.Backend)
	}
	back, err := n.readKeys(ctx, n.fe.ReadBackend, n.fe.Backend, backendKeys)
	if err != nil {
		return nil, err
	}
	front, err := n.readKeys(ctx, n.fe.Read, n.fe.Dir, frontendKeys)
	if err != nil {
		return nil, err
	}
	if !n.cfg.Offload {
		// Without offload the GSO keys mean nothing, malformed or not,
		// as before the driver read them.
		delete(back, keyGSOTCPv4)
		delete(back, keyGSOTCPv6)
	}
	p, err := parseParams(front, back)
	if err != nil {
		return nil, err
	}
	if !reconnecting {
		// The address and MTU are the interface's for its lifetime; a
		// backend that comes back with others does not change them.
		n.mac, n.mtu = p.mac, p.mtu
		n.maxFrame = EthHeader + VLANTag + p.mtu
		n.off = offloads(n.cfg, p, n.maxFrame)
	}
	c, err := n.newConn(p.sg)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.refillLocked(c)
	n.mu.Unlock()
	keys := map[string]string{
		keyTxRingRef:     strconv.FormatUint(uint64(c.txRef), 10),
		keyRxRingRef:     strconv.FormatUint(uint64(c.rxRef), 10),
		keyEventChannel:  strconv.FormatUint(uint64(c.ch.Port()), 10),
		keyRequestRxCopy: "1",
		keyRxNotify:      "1",
		keySG:            "1",
		keyNoCsumOffload: "1",
	}
	if n.cfg.Offload {
		c.offload = true
		c.gso4, c.gso6 = p.gso4, p.gso6
		keys[keyNoCsumOffload] = "0"
		keys[keyGSOTCPv4] = "1"
		keys[keyGSOTCPv6] = "1"
		keys[keyIPv6Csum] = "1"
	}
	published := false
	fail := func(err error) (*conn, error) {
		if published {
			// The backend may have mapped the rings: take it through
			// Closing so it lets go before the grants are revoked.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			n.fe.Close(cctx)
			cancel()
		}
		n.retire(c)
		n.teardown(c)
		return nil, err
	}
	if err := n.fe.PublishState(ctx, keys, xenbus.StateConnected); err != nil {
		return fail(fmt.Errorf("publishing the rings in %s: %w", n.fe.Dir, err))
	}
	published = true
	if _, err := n.fe.WaitBackendState(ctx, xenbus.StateConnected); err != nil {
		return fail(fmt.Errorf("waiting for backend %s to reach Connected: %w", n.fe.Backend, err))
	}
	pctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.pollDone = cancel, make(chan struct{})
	n.mu.Lock()
	n.conn = c
	if n.connectedOnce {
		n.stats.Reconnects++
	}
	n.connectedOnce = true
	n.wakeTxLocked()
	n.mu.Unlock()
	go n.poll(pctx, c)
	// Linux netfront kicks the backend once connected: it may have missed
	// the requests posted before it mapped the rings.
	c.ch.Notify()
	return c, nil
}

// readKeys reads keys from dir; missing keys are left out of the map.
func (n *NIC) readKeys(ctx context.Context, read func(context.Context, string) (string, error), dir string, keys []string) (map[string]string, error) {
	kv := map[string]string{}
	for _, k := range keys {
		v, err := read(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s/%s: %w", dir, k, err)
		}
		kv[k] = v
	}
	return kv, nil
}

// newConn allocates and grants the two ring pages and an event channel
// for the backend.
func (n *NIC) newConn(sg bool) (*conn, error) {
	r, err := n.cfg.Memory.Alloc(2 * PageSize)
	if err != nil {
		return nil, fmt.Errorf("allocating the ring pages: %w", err)
	}
	c := &conn{region: r, sg: sg, aborted: true}
	if c.tx, err = ring.NewFront(r.Bytes[:PageSize], TxRequestSize); err != nil {
		n.teardown(c)
		return nil, fmt.Errorf("netfront: tx ring: %w", err)
	}
	if c.rx, err = ring.NewFront(r.Bytes[PageSize:2*PageSize], RxRequestSize); err != nil {
		n.teardown(c)
		return nil, fmt.Errorf("netfront: rx ring: %w", err)
	}
	if c.txRef, err = n.cfg.Grants.Grant(n.grantDom(), r.Frame(), false); err != nil {
		n.teardown(c)
		return nil, fmt.Errorf("granting the tx ring: %w", err)
	}
	c.refs++
	if c.rxRef, err = n.cfg.Grants.Grant(n.grantDom(), r.Frame()+1, false); err != nil {
		n.teardown(c)
		return nil, fmt.Errorf("granting the rx ring: %w", err)
	}
	c.refs++
	if c.ch, err = n.cfg.Events.AllocUnbound(n.grantDom()); err != nil {
		n.teardown(c)
		return nil, fmt.Errorf("allocating an event channel for domain %d: %w", n.fe.BackendID, err)
	}
	c.rxPosted = make([]rxPost, c.rx.Size())
	c.rxRaw = make([][RxResponseSize]byte, c.rx.Size())
	c.aborted = false
	return c, nil
}

// teardown releases a retired connection's rings and event channel. Ring
// pages the backend still maps are leaked, never reused.
func (n *NIC) teardown(c *conn) error {
	var errs []error
	if c.ch != nil {
		if err := c.ch.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netfront: vif %s: closing the event channel: %w", n.cfg.Device, err))
		}
	}
	leaked := false
	for i, ref := range []gnttab.Ref{c.txRef, c.rxRef}[:c.refs] {
		if err := n.cfg.Grants.Revoke(ref); err != nil {
			leaked = true
			errs = append(errs, fmt.Errorf("netfront: vif %s: revoking ring page %d: %w", n.cfg.Device, i, err))
		}
	}
	if leaked {
		n.mu.Lock()
		n.stats.LeakedPages += 2
		n.mu.Unlock()
		errs = append(errs, fmt.Errorf("netfront: vif %s: the backend still maps a ring: %w", n.cfg.Device, errLeaked))
	} else if c.region != nil {
		if err := n.cfg.Memory.Free(c.region); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// poll services the rings after every event. It also wakes up on its own
// while there is something to retry.
func (n *NIC) poll(ctx context.Context, c *conn) {
	defer close(c.pollDone)
	n.mu.Lock()
	n.serviceLocked(c)
	n.mu.Unlock()
	for {
		n.mu.Lock()
		retry := c.starved || len(n.rxQuar) > 0 || len(n.txQuar) > 0
		n.mu.Unlock()
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if retry {
			wctx, cancel = context.WithTimeout(ctx, retryEvery)
		}
		err := c.ch.Wait(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !timedOut {
			n.fail(fmt.Errorf("vif %s: waiting for the event channel: %w", n.cfg.Device, err))
			return
		}
		n.mu.Lock()
		n.serviceLocked(c)
		n.mu.Unlock()
	}
}

// serviceLocked takes the backend's answers on both rings, retries the
// quarantine and refills the rx ring.
func (n *NIC) serviceLocked(c *conn) {
	if c.dead || n.failed != nil {
		return
	}
	if err := n.drainTxLocked(c); err != nil {
		n.failLocked(fmt.Errorf("%w: vif %s: tx ring: %v", ErrBackendBroken, n.cfg.Device, err))
		return
	}
	if err := n.drainRxLocked(c, true); err != nil {
		n.failLocked(fmt.Errorf("%w: vif %s: rx ring: %v", ErrBackendBroken, n.cfg.Device, err))
		return
	}
	n.retryQuarantineLocked()
	n.refillLocked(c)
}

// retire stops using c: answers already on its rings are taken (frames
// received are kept for Receive), then every posted receive buffer and
// transmit page is revoked and freed, or quarantined if the backend still
// holds it. The caller tears c down afterwards.
func (n *NIC) retire(c *conn) {
	n.mu.Lock()
	if n.conn == c {
		n.conn = nil
		n.wakeTxLocked()
	}
	if !c.dead && n.failed == nil {
		n.drainTxLocked(c)
		n.drainRxLocked(c, false)
	}
	c.dead = true
	n.abortLocked(c)
	n.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
		<-c.pollDone
	}
}

// abortLocked takes back what c has posted.
func (n *NIC) abortLocked(c *conn) {
	if c.aborted {
		return
	}
	c.aborted = true
	for i := c.rx.ConsumedIndex(); i != c.rx.ProducedIndex(); i++ {
		p := c.rxPosted[i&uint32(len(c.rxPosted)-1)]
		if n.revokeRxLocked(int(p.buf), p.ref) {
			n.putRxLocked(int(p.buf))
		}
	}
	freed := false
	for s := range n.tx {
		if n.tx[s].state == txInflight {
			n.releaseTxLocked(s)
			freed = true
		}
	}
	if freed {
		n.wakeTxLocked()
	}
}

// supervise follows the backend's state while c is up. When the backend
// leaves Connected, it reconnects: the old rings are retired once the
// backend is done with them and new ones are built.
func (n *NIC) supervise(c *conn) {
	defer close(n.superDone)
	defer func() {
		n.mu.Lock()
		n.live = c
		n.mu.Unlock()
	}()
	for {
		s, err := n.fe.WaitBackend(n.ctx, func(s xenbus.State) bool { return s != xenbus.StateConnected })
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			n.fail(fmt.Errorf("vif %s: watching the backend's state: %w", n.cfg.Device, err))
			return
		}
		n.mu.Lock()
		if n.conn == c {
			n.conn = nil // Transmit drops frames until the next connection
			n.wakeTxLocked()
		}
		failed := n.failed != nil
		n.mu.Unlock()
		if failed {
			return
		}
		next, err := n.reconnect(c, s)
		c = next // nil on error: reconnect tore the old one down
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			n.fail(fmt.Errorf("vif %s: the backend went away and did not come back: %w", n.cfg.Device, err))
			return
		}
	}
}

// reconnect retires c after the backend left Connected (in state s) and
// connects again. It returns the new connection; c is torn down.
func (n *NIC) reconnect(c *conn, s xenbus.State) (*conn, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReconnectTimeout)
	defer cancel()
	retired := false
	retire := func() {
		if !retired {
			retired = true
			n.retire(c)
			n.teardown(c)
		}
	}
	defer retire()
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", n.fe.Backend)
	}
	// Linux netfront answers a closing backend with Closed
	// (xenbus_frontend_closed); Linux netback then disconnects, unmaps
	// the rings and goes Closed itself.
	if err := n.fe.SetState(ctx, xenbus.StateClosed); err != nil {
		return nil, fmt.Errorf("switching %s to Closed: %w", n.fe.Dir, err)
	}
	s, err := n.fe.WaitBackend(ctx, func(s xenbus.State) bool {
		return s == xenbus.StateClosed || s == xenbus.StateInitWait || s == xenbus.StateInitialising || s == xenbus.StateUnknown
	})
	retire()
	if err != nil {
		return nil, fmt.Errorf("waiting for backend %s to close: %w", n.fe.Backend, err)
	}
	if s == xenbus.StateUnknown {
		return nil, fmt.Errorf("backend %s was removed", n.fe.Backend)
	}
	// netback's frontend_changed: a frontend back in Initialising takes
	// a Closed backend to InitWait again.
	if err := n.fe.SetState(ctx, xenbus.StateInitialising); err != nil {
		return nil, fmt.Errorf("switching %s to Initialising: %w", n.fe.Dir, err)
	}
	return n.connect(ctx, true)
}
