package netfront

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/ring"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// This file simulates everything around the driver: a grant table, event
// channels, and a netback-like backend that copies frames through the
// driver's grants in simulated physical memory.

const (
	frontDom  = 5
	backDom   = 0
	vifID     = "0"
	feDirAbs  = "/local/domain/5/device/vif/0"
	beDirAbs  = "/local/domain/0/backend/vif/5/0"
	testMAC   = "00:16:3e:5a:01:02"
	testLimit = 64 << 20 // simulated memory
)

// fakeGrants is a grant table with Xen's rules: a grant still mapped
// cannot be revoked. It also catches a frame granted twice at once: the
// driver reusing a page before its grant ended.
type fakeGrants struct {
	mu      sync.Mutex
	next    gnttab.Ref
	max     int // live grants allowed, 0 = no limit
	live    map[gnttab.Ref]*fakeGrant
	frames  map[uint64]gnttab.Ref
	granted int
	reused  []string // violations
}

type fakeGrant struct {
	dom      gnttab.DomID
	frame    uint64
	readOnly bool
	maps     int
}

func newFakeGrants() *fakeGrants {
	return &fakeGrants{next: 8, live: map[gnttab.Ref]*fakeGrant{}, frames: map[uint64]gnttab.Ref{}}
}

func (g *fakeGrants) Grant(dom gnttab.DomID, frame uint64, readOnly bool) (gnttab.Ref, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max > 0 && len(g.live) >= g.max {
		return 0, gnttab.ErrExhausted
	}
	if old, ok := g.frames[frame]; ok {
		g.reused = append(g.reused, fmt.Sprintf("frame %#x granted again while ref %d (maps %d) still grants it", frame, old, g.live[old].maps))
	}
	ref := g.next
	g.next++
	g.live[ref] = &fakeGrant{dom: dom, frame: frame, readOnly: readOnly}
	g.frames[frame] = ref
	g.granted++
	return ref, nil
}

func (g *fakeGrants) Revoke(ref gnttab.Ref) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.live[ref]
	if e == nil {
		return fmt.Errorf("fakeGrants: revoke of ref %d, which is not granted", ref)
	}
	if e.maps > 0 {
		return gnttab.ErrInUse
	}
	delete(g.live, ref)
	delete(g.frames, e.frame)
	return nil
}

// mapRef is the backend's GNTTABOP_map_grant_ref (or the source or
// destination check of a GNTTABOP_copy).
func (g *fakeGrants) mapRef(dom gnttab.DomID, ref gnttab.Ref, write bool) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.live[ref]
	switch {
	case e == nil:
		return 0, fmt.Errorf("grant %d is not granted", ref)
	case e.dom != dom:
		return 0, fmt.Errorf("grant %d is for domain %d, not %d", ref, e.dom, dom)
	case write && e.readOnly:
		return 0, fmt.Errorf("grant %d is read-only", ref)
	}
	e.maps++
	return e.frame, nil
}

func (g *fakeGrants) unmapRef(ref gnttab.Ref) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.live[ref]; e != nil && e.maps > 0 {
		e.maps--
	}
}

func (g *fakeGrants) liveCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

func (g *fakeGrants) violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.reused...)
}

// fakeEvents hands out channels whose other end the backend holds.
type fakeEvents struct {
	mu    sync.Mutex
	next  uint32
	chans map[uint32]*fakeChannel
	fail  bool
}

func newFakeEvents() *fakeEvents { return &fakeEvents{next: 10, chans: map[uint32]*fakeChannel{}} }

func (e *fakeEvents) AllocUnbound(remote gnttab.DomID) (EventChannel, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return nil, errors.New("fakeEvents: no free ports")
	}
	c := &fakeChannel{port: e.next, remote: remote, toFront: make(chan struct{}, 1), toBack: make(chan struct{}, 1), closed: make(chan struct{})}
	e.chans[c.port] = c
	e.next++
	return c, nil
}

func (e *fakeEvents) lookup(port uint32) *fakeChannel {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.chans[port]
}

func (e *fakeEvents) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.chans {
		select {
		case <-c.closed:
		default:
			n++
		}
	}
	return n
}

type fakeChannel struct {
	port     uint32
	remote   gnttab.DomID
	toFront  chan struct{}
	toBack   chan struct{}
	closed   chan struct{}
	once     sync.Once
	notifies atomic.Int64
	broken   atomic.Bool // Wait fails
}

func (c *fakeChannel) Port() uint32 { return c.port }

func (c *fakeChannel) Wait(ctx context.Context) error {
	if c.broken.Load() {
		return errors.New("fakeChannel: broken")
	}
	select {
	case <-c.toFront:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return errors.New("fakeChannel: closed")
	}
}

func (c *fakeChannel) Notify() error {
	select {
	case <-c.closed:
		return errors.New("fakeChannel: closed")
	default:
	}
	c.notifies.Add(1)
	select {
	case c.toBack <- struct{}{}:
	default:
	}
	return nil
}

func (c *fakeChannel) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// kick is the backend's notify.
func (c *fakeChannel) kick() {
	select {
	case c.toFront <- struct{}{}:
	default:
	}
}

// backendOpts configures the simulated backend.
type backendOpts struct {
	// keys overrides or adds backend keys written before InitWait; a
	// value of "<absent>" removes a key. frontKeys does the same for the
	// toolstack's keys in the frontend directory (mac, mtu).
	keys, frontKeys map[string]string
	// rxOffset is where in each page received data starts.
	rxOffset int
	// rxMangle, if set, replaces the responses of each received frame
	// (one per data slot, in ring order) by the slots it returns; as many
	// requests are consumed as slots returned (data is copied into the
	// pages of the first len(rsps)). ids are the ids of the requests
	// available, in ring order.
	rxMangle func(frame []byte, rsps []RxResponse, ids []uint16) [][RxResponseSize]byte
	// txMangle, if set, replaces the responses to each sent packet.
	txMangle func(reqs []TxRequest, rsps []TxResponse) []TxResponse
	// rxAfterPush and txAfterPush, if set, run after each push, with the
	// ring (to scribble on its header).
	rxAfterPush, txAfterPush func(r *ring.Back)
	// keepRxMapped and keepTxMapped keep the grant of the next rx or tx
	// slot mapped until the backend disconnects.
	keepRxMapped, keepTxMapped atomic.Bool
	// goneAfterClose removes the backend once the frontend closed;
	// stuckAfterClose stays Closed instead of coming back.
	goneAfterClose, stuckAfterClose bool
	// holdClosed keeps the backend Closed while set.
	holdClosed atomic.Bool
	// noAnswer holds transmit requests unanswered.
	noAnswer atomic.Bool
}

// simBackend is a netback: it follows the xenbus protocol in xenstore,
// maps the rings, takes frames from the tx ring and copies frames handed
// to inject into the pages the rx ring offers.
type simBackend struct {
	t      testing.TB
	srv    *xenstoretest.Server
	mem    *dmatest.Memory
	grants *fakeGrants
	events *fakeEvents
	opts   *backendOpts

	mu        sync.Mutex
	rxQueue   []rxItem
	txMeta    []txMeta          // first request's flags and extras of each packet sent
	published map[string]string // frontend keys at connect
	connects  int
	kept      []gnttab.Ref
	txSlots   []int // slots of each packet sent

	sent   chan []byte // frames the driver transmitted
	worker *backWorker
	stop   chan struct{}
	done   chan struct{}
	state  atomic.Int32
}

func newSimBackend(t testing.TB, srv *xenstoretest.Server, mem *dmatest.Memory, g *fakeGrants, e *fakeEvents, opts *backendOpts) *simBackend {
	b := &simBackend{
		t: t, srv: srv, mem: mem, grants: g, events: e, opts: opts,
		sent: make(chan []byte, 4096),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	// The toolstack's part (libxl__set_xenstore_nic).
	front := map[string]string{"backend": beDirAbs, "backend-id": strconv.Itoa(backDom), "state": "1", "handle": vifID, "mac": testMAC, "mtu": "1500"}
	for k, v := range opts.frontKeys {
		front[k] = v
	}
	for k, v := range front {
		if v != "<absent>" {
			srv.Set(feDirAbs+"/"+k, v)
		}
	}
	srv.Set(beDirAbs+"/frontend", feDirAbs)
	srv.Set(beDirAbs+"/frontend-id", strconv.Itoa(frontDom))
	srv.Set(beDirAbs+"/handle", vifID)
	b.setState(1)
	go b.run()
	t.Cleanup(b.shutdown)
	return b
}

func (b *simBackend) shutdown() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	b.stopWorker()
}

func (b *simBackend) setState(s int) {
	b.state.Store(int32(s))
	b.srv.Set(beDirAbs+"/state", strconv.Itoa(s))
}

// publishFeatures writes what netback writes before InitWait.
func (b *simBackend) publishFeatures() {
	keys := map[string]string{
		"feature-rx-copy": "1", "feature-sg": "1", "feature-rx-flip": "0",
		"feature-gso-tcpv4": "1", "feature-split-event-channels": "1",
		"multi-queue-max-queues": "4", "mac": testMAC,
	}
	b.mu.Lock()
	for k, v := range b.opts.keys {
		keys[k] = v
	}
	b.mu.Unlock()
	for k, v := range keys {
		if v == "<absent>" {
			b.srv.Remove(beDirAbs + "/" + k)
		} else {
			b.srv.Set(beDirAbs+"/"+k, v)
		}
	}
}

// setKey changes a backend key published at the next InitWait.
func (b *simBackend) setKey(k, v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := map[string]string{}
	for k, v := range b.opts.keys {
		keys[k] = v
	}
	keys[k] = v
	b.opts.keys = keys
}

// run follows the frontend's state as Linux netback's frontend_changed
// does.
func (b *simBackend) run() {
	defer close(b.done)
	b.publishFeatures()
	b.setState(2) // InitWait
	for {
		select {
		case <-b.stop:
			return
		case <-time.After(200 * time.Microsecond):
		}
		fs, _ := b.srv.Get(feDirAbs + "/state")
		bs := int(b.state.Load())
		switch {
		case fs == "4" && bs == 2:
			if err := b.connect(); err != nil {
				b.t.Errorf("simulated backend: connect: %v", err)
				b.setState(5)
				continue
			}
			b.setState(4)
		case fs == "5" && bs != 5 && bs != 6:
			b.stopWorker()
			b.setState(5)
		case fs == "6" && bs != 6:
			b.stopWorker()
			if b.opts.goneAfterClose {
				b.srv.Remove(beDirAbs)
				return
			}
			b.setState(6)
		case fs == "1" && bs == 6 && !b.opts.stuckAfterClose && !b.opts.holdClosed.Load():
			b.publishFeatures()
			b.setState(2)
		}
	}
}

// closeBackend starts a backend-initiated teardown (Closing), as when the
// backend domain shuts its side down.
func (b *simBackend) closeBackend() { b.setState(5) }

func (b *simBackend) connect() error {
	read := func(k string) string { v, _ := b.srv.Get(feDirAbs + "/" + k); return v }
	pub := map[string]string{}
	for _, k := range []string{"tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy", "feature-rx-notify", "feature-sg", "feature-no-csum-offload", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload", "multi-queue-num-queues", "event-channel-tx"} {
		if v, ok := b.srv.Get(feDirAbs + "/" + k); ok {
			pub[k] = v
		}
	}
	if pub["request-rx-copy"] != "1" {
		return fmt.Errorf("request-rx-copy %q: Linux netback refuses with EOPNOTSUPP", pub["request-rx-copy"])
	}
	var refs [2]gnttab.Ref
	var pages [2][]byte
	for i, k := range []string{"tx-ring-ref", "rx-ring-ref"} {
		n, err := strconv.ParseUint(read(k), 10, 32)
		if err != nil {
			return fmt.Errorf("%s %q", k, read(k))
		}
		refs[i] = gnttab.Ref(n)
		f, err := b.grants.mapRef(backDom, refs[i], true)
		if err != nil {
			return err
		}
		if pages[i], err = b.mem.Slice(f*PageSize, PageSize); err != nil {
			return err
		}
	}
	port, err := strconv.ParseUint(pub["event-channel"], 10, 32)
	if err != nil {
		return fmt.Errorf("event-channel %q", pub["event-channel"])
	}
	ch := b.events.lookup(uint32(port))
	if ch == nil || ch.remote != backDom {
		return fmt.Errorf("event channel %d is not offered to domain %d", port, backDom)
	}
	tx, err := ring.NewBack(pages[0], TxRequestSize)
	if err != nil {
		return err
	}
	rx, err := ring.NewBack(pages[1], RxRequestSize)
	if err != nil {
		return err
	}
	w := &backWorker{b: b, tx: tx, rx: rx, ch: ch, refs: refs, stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.published = pub
	b.connects++
	b.worker = w
	b.mu.Unlock()
	go w.run()
	return nil
}

func (b *simBackend) stopWorker() {
	b.mu.Lock()
	w := b.worker
	b.worker = nil
	kept := b.kept
	b.kept = nil
	b.mu.Unlock()
	for _, ref := range kept {
		b.grants.unmapRef(ref)
	}
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
	for _, ref := range w.refs {
		b.grants.unmapRef(ref)
	}
}

// rxItem is a frame to deliver with its first response's flags (beyond
// RxMoreData) and extra info slots, as netback's xenvif_rx_skb sends a
// GSO packet: the first data slot, the extras, then the other data
// slots.
type rxItem struct {
	frame  []byte
	flags  uint16
	extras []Extra
}

// txMeta is what a packet's first tx request said besides its data.
type txMeta struct {
	Flags  uint16
	Extras []Extra
}

// inject hands the backend a frame to deliver to the driver.
func (b *simBackend) inject(frame []byte) { b.injectMeta(frame, 0) }

// injectMeta hands the backend a frame to deliver with first-slot flags
// and extra info slots (RxExtraInfo is added when there are extras).
func (b *simBackend) injectMeta(frame []byte, flags uint16, extras ...Extra) {
	b.mu.Lock()
	b.rxQueue = append(b.rxQueue, rxItem{frame: append([]byte(nil), frame...), flags: flags, extras: extras})
	w := b.worker
	b.mu.Unlock()
	if w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (b *simBackend) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rxQueue)
}

func (b *simBackend) keys() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.published
}

// backWorker serves one pair of rings.
type backWorker struct {
	b      *simBackend
	tx, rx *ring.Back
	ch     *fakeChannel
	refs   [2]gnttab.Ref
	stop   chan struct{}
	done   chan struct{}
	wake   chan struct{}
	held   []TxRequest // unanswered (noAnswer)
}

func (w *backWorker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.ch.toBack:
		case <-w.wake:
		case <-time.After(2 * time.Millisecond): // a missed event must not hang a test
		}
		if !w.serveTx() || !w.serveRx() {
			return
		}
	}
}

// page maps grant ref for a copy and returns its bytes; done unmaps it
// unless keep says to hold it.
func (w *backWorker) page(ref uint32, write bool) ([]byte, func(keep bool), error) {
	b := w.b
	f, err := b.grants.mapRef(backDom, gnttab.Ref(ref), write)
	if err != nil {
		return nil, nil, err
	}
	p, err := b.mem.Slice(f*PageSize, PageSize)
	if err != nil {
		b.grants.unmapRef(gnttab.Ref(ref))
		return nil, nil, err
	}
	return p, func(keep bool) {
		if keep {
			b.mu.Lock()
			b.kept = append(b.kept, gnttab.Ref(ref))
			b.mu.Unlock()
			return
		}
		b.grants.unmapRef(gnttab.Ref(ref))
	}, nil
}

// serveTx takes whole packets off the tx ring, as netback's
// xenvif_tx_build_gops does, and answers each slot.
func (w *backWorker) serveTx() bool {
	b := w.b
	buf := make([]byte, TxRequestSize)
	for {
		n, err := w.tx.Requests()
		if err != nil {
			b.t.Errorf("simulated backend: tx: %v", err)
			return false
		}
		for n > 0 {
			// Find the packet's last slot: the first request, its extra
			// info slots (xenvif_get_extras), then the more_data chain.
			var extras []Extra
			first := ParseTxRequest(w.tx.Request(0, buf))
			k := 1
			if first.Flags&TxExtraInfo != 0 {
				for k < n {
					e := ParseExtra(w.tx.Request(k, buf))
					extras = append(extras, e)
					k++
					if e.Flags&ExtraFlagMore == 0 {
						break
					}
				}
				if len(extras) == 0 || extras[len(extras)-1].Flags&ExtraFlagMore != 0 {
					break // the rest is not pushed yet
				}
			}
			last := first
			for last.Flags&TxMoreData != 0 && k < n {
				last = ParseTxRequest(w.tx.Request(k, buf))
				k++
			}
			if last.Flags&TxMoreData != 0 {
				break // the rest is not pushed yet
			}
			var reqs []TxRequest
			for i := range k {
				raw := w.tx.NextRequest(buf)
				if i == 0 || i > len(extras) {
					reqs = append(reqs, ParseTxRequest(raw))
				}
			}
			n -= k
			for _, e := range extras {
				if e.Type != ExtraGSO || e.GSOSize == 0 || (e.GSOType != GSOTypeTCPv4 && e.GSOType != GSOTypeTCPv6) {
					// Linux netback: xenvif_fatal_tx_err.
					b.t.Errorf("simulated backend: tx extra info %+v", e)
				}
			}
			b.mu.Lock()
			b.txMeta = append(b.txMeta, txMeta{Flags: first.Flags, Extras: extras})
			b.mu.Unlock()
			frame, status := w.readTx(reqs)
			if status == StatusOkay {
				b.sent <- frame
			}
			if b.opts.noAnswer.Load() {
				w.held = append(w.held, reqs...)
				continue
			}
			w.answerTx(reqs, status, len(extras))
		}
		if len(w.held) > 0 && !b.opts.noAnswer.Load() {
			held := w.held
			w.held = nil
			w.answerTx(held, StatusOkay, 0)
		}
		if !w.tx.FinalCheck() {
			return true
		}
	}
}

// answerTx answers a packet's requests in order; after the first come
// NULL responses for its extras slots, as netback's make_tx_response
// writes them.
func (w *backWorker) answerTx(reqs []TxRequest, status Status, extras int) {
	b := w.b
	var rsps []TxResponse
	for i, r := range reqs {
		rsps = append(rsps, TxResponse{ID: r.ID, Status: status})
		if i == 0 {
			for range extras {
				rsps = append(rsps, TxResponse{Status: StatusNull})
			}
		}
	}
	if b.opts.txMangle != nil {
		rsps = b.opts.txMangle(reqs, rsps)
	}
	for _, r := range rsps {
		s, err := w.tx.NextResponse()
		if err != nil {
			b.t.Errorf("simulated backend: tx: more responses than requests: %v", err)
			break
		}
		r.Put(s)
	}
	if w.tx.Push() {
		w.ch.kick()
	}
	if b.opts.txAfterPush != nil {
		b.opts.txAfterPush(w.tx)
		w.ch.kick()
	}
}

// readTx copies a packet out of its granted pages.
func (w *backWorker) readTx(reqs []TxRequest) ([]byte, Status) {
	b := w.b
	total := int(reqs[0].Size)
	rest := 0
	for _, r := range reqs[1:] {
		rest += int(r.Size)
	}
	if rest > total {
		b.t.Errorf("simulated backend: tx packet of %d bytes with %d in its later slots", total, rest)
		return nil, StatusError
	}
	frame := make([]byte, 0, total)
	b.mu.Lock()
	b.txSlots = append(b.txSlots, len(reqs))
	b.mu.Unlock()
	for i, r := range reqs {
		size := int(r.Size)
		if i == 0 {
			size = total - rest
		}
		if int(r.Offset)+size > PageSize {
			b.t.Errorf("simulated backend: tx slot of %d bytes at %d", size, r.Offset)
			return nil, StatusError
		}
		p, done, err := w.page(r.Gref, false)
		if err != nil {
			b.t.Errorf("simulated backend: tx page: %v", err)
			return nil, StatusError
		}
		frame = append(frame, p[r.Offset:int(r.Offset)+size]...)
		done(b.opts.keepTxMapped.CompareAndSwap(true, false))
	}
	return frame, StatusOkay
}

// serveRx copies queued frames into the pages the rx ring offers, as
// netback's xenvif_rx_action does: each frame in one or more slots from
// rxOffset, chained by RxMoreData, one response per request consumed.
func (w *backWorker) serveRx() bool {
	b := w.b
	buf := make([]byte, RxRequestSize)
	for {
		b.mu.Lock()
		if len(b.rxQueue) == 0 {
			b.mu.Unlock()
			return true
		}
		item := b.rxQueue[0]
		frame := item.frame
		b.mu.Unlock()
		per := PageSize - b.opts.rxOffset
		need := max(1, (len(frame)+per-1)/per)
		// Slot i of the packet holds data chunk data[i], or an extra
		// (-1): the first data slot, the extras, the other data slots.
		var data []int
		for i := range need {
			data = append(data, i)
			if i == 0 {
				for range item.extras {
					data = append(data, -1)
				}
			}
		}
		n, err := w.rx.Requests()
		if err != nil {
			b.t.Errorf("simulated backend: rx: %v", err)
			return false
		}
		if n < len(data) {
			// Wait for buffers; the frontend notifies when it posts
			// them (feature-rx-notify).
			if !w.rx.Await(len(data)) {
				return true
			}
			continue
		}
		var rsps []RxResponse
		slots := make([][RxResponseSize]byte, len(data))
		for i, d := range data {
			if d < 0 {
				e := item.extras[i-1]
				if i < len(item.extras) {
					e.Flags |= ExtraFlagMore
				}
				e.Put(slots[i][:])
				continue
			}
			chunk := min(per, len(frame)-d*per)
			id := ParseRxRequest(w.rx.Request(i, buf)).ID
			r := RxResponse{ID: id, Offset: uint16(b.opts.rxOffset), Status: Status(chunk)}
			if d < need-1 {
				r.Flags = RxMoreData
			}
			if d == 0 {
				r.Flags |= item.flags
				if len(item.extras) > 0 {
					r.Flags |= RxExtraInfo
				}
			}
			rsps = append(rsps, r)
			r.Put(slots[i][:])
		}
		if b.opts.rxMangle != nil {
			ids := make([]uint16, n)
			for i := range ids {
				ids[i] = ParseRxRequest(w.rx.Request(i, buf)).ID
			}
			slots = b.opts.rxMangle(frame, rsps, ids)
		}
		if total := max(len(data), len(slots)); n < total {
			if !w.rx.Await(total) {
				return true
			}
			continue
		}
		b.mu.Lock()
		b.rxQueue = b.rxQueue[1:]
		b.mu.Unlock()
		for i := range max(len(data), len(slots)) {
			req := ParseRxRequest(w.rx.NextRequest(buf))
			if i < len(data) && data[i] >= 0 {
				d := data[i]
				p, done, err := w.page(req.Gref, true)
				if err != nil {
					b.t.Errorf("simulated backend: rx page: %v", err)
					return false
				}
				chunk := frame[d*per : min(len(frame), (d+1)*per)]
				copy(p[b.opts.rxOffset:], chunk)
				done(b.opts.keepRxMapped.CompareAndSwap(true, false))
			}
			if i < len(slots) {
				s, err := w.rx.NextResponse()
				if err != nil {
					b.t.Errorf("simulated backend: rx: %v", err)
					return false
				}
				copy(s, slots[i][:])
			}
		}
		if w.rx.Push() {
			w.ch.kick()
		}
		if b.opts.rxAfterPush != nil {
			b.opts.rxAfterPush(w.rx)
			w.ch.kick()
		}
	}
}

// rig is a driver under test with everything around it.
type rig struct {
	t      testing.TB
	srv    *xenstoretest.Server
	mem    *dmatest.Memory
	grants *fakeGrants
	events *fakeEvents
	be     *simBackend
	cfg    Config
	ctx    context.Context
}

func newRig(t testing.TB, opts *backendOpts) *rig {
	if opts == nil {
		opts = &backendOpts{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	srv := xenstoretest.NewServer()
	r := &rig{t: t, srv: srv, mem: dmatest.New(testLimit), grants: newFakeGrants(), events: newFakeEvents(), ctx: ctx}
	c, closeFn := srv.Client(frontDom)
	t.Cleanup(closeFn)
	r.be = newSimBackend(t, srv, r.mem, r.grants, r.events, opts)
	r.cfg = Config{Store: c, Grants: r.grants, Events: r.events, Memory: r.mem, Device: vifID, ReconnectTimeout: 10 * time.Second}
	t.Cleanup(func() {
		for _, v := range r.grants.violations() {
			t.Errorf("grant violation: %s", v)
		}
	})
	return r
}

// open connects the driver and closes it at the end of the test.
func (r *rig) open() *NIC {
	r.t.Helper()
	n, err := New(r.ctx, r.cfg)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	r.t.Cleanup(func() { n.Close() })
	return n
}

// sent returns the next frame the driver transmitted.
func (r *rig) sent() []byte {
	r.t.Helper()
	select {
	case f := <-r.be.sent:
		return f
	case <-time.After(10 * time.Second):
		r.t.Fatal("no frame reached the backend")
		return nil
	}
}

// receive reads one frame with a deadline.
func (r *rig) receive(n *NIC, size int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	buf := make([]byte, size)
	k, err := n.Receive(ctx, buf)
	return buf[:k], err
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

// frame makes an Ethernet frame of n bytes whose contents depend on seed.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x00, 0x16, 0x3e, 0x5a, 0x01, 0x02, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = byte(i*7) ^ byte(i>>8) ^ seed
	}
	return f
}

var _ dma.Allocator = (*dmatest.Memory)(nil)

// waitQueue lets the backend catch up with frames handed to inject.
func waitQueue() { time.Sleep(50 * time.Microsecond) }
