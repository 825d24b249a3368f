package blkfront

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
// channels, and a blkback-like backend that maps the driver's grants
// through simulated physical memory and serves a disk held in a slice.

const (
	frontDom  = 5
	backDom   = 0
	vbdID     = "51712"
	feDirAbs  = "/local/domain/5/device/vbd/51712"
	beDirAbs  = "/local/domain/0/backend/vbd/5/51712"
	testLimit = 64 << 20 // simulated memory
)

// fakeGrants is a grant table with Linux's rules: a grant still mapped
// cannot be revoked.
type fakeGrants struct {
	mu      sync.Mutex
	next    gnttab.Ref
	max     int // live grants allowed, 0 = no limit
	live    map[gnttab.Ref]*fakeGrant
	granted int
	// wantReadOnly refuses a read-only mapping of a writable grant.
	wantReadOnly bool
}

type fakeGrant struct {
	dom      gnttab.DomID
	frame    uint64
	readOnly bool
	maps     int
}

func newFakeGrants() *fakeGrants {
	return &fakeGrants{next: 8, live: map[gnttab.Ref]*fakeGrant{}, wantReadOnly: true} // refs 0-7 are reserved
}

func (g *fakeGrants) Grant(dom gnttab.DomID, frame uint64, readOnly bool) (gnttab.Ref, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max > 0 && len(g.live) >= g.max {
		return 0, gnttab.ErrExhausted
	}
	ref := g.next
	g.next++
	g.live[ref] = &fakeGrant{dom: dom, frame: frame, readOnly: readOnly}
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
	return nil
}

// mapRef is the backend's GNTTABOP_map_grant_ref.
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
	if !write && !e.readOnly && g.wantReadOnly {
		// blkback maps write data and indirect pages read-only: the
		// driver must not grant more than that.
		return 0, fmt.Errorf("grant %d gives write access to a page the backend only reads", ref)
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
}

func (c *fakeChannel) Port() uint32 { return c.port }

func (c *fakeChannel) Wait(ctx context.Context) error {
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
	sectors    uint64 // 512-byte units
	sectorSize int
	// keys overrides or adds backend keys written before InitWait
	// (transport) or Connected (the rest); a value of "<absent>" removes
	// a key.
	keys map[string]string
	// flushNotSupported answers flushes and barriers with EOPNOTSUPP.
	flushNotSupported bool
	// flushError answers flushes with ERROR.
	flushError bool
	// mangle, if set, replaces each response by the ones it returns.
	mangle func(req backReq, rsp Response) []Response
	// afterPush, if set, runs after each answer, with the ring.
	afterPush func(r *ring.Back)
	// goneAfterClose removes the backend directory once the frontend
	// has closed: the disk was detached.
	goneAfterClose bool
	// goneAfterReinit removes the backend directory when the frontend
	// comes back to Initialising after a close.
	goneAfterReinit bool
	// stuckAfterClose stays Closed instead of coming back.
	stuckAfterClose bool
	// keepMapped keeps the first data page of the first write mapped.
	keepMapped bool
}

// backReq is a request as the backend parsed it.
type backReq struct {
	op           Operation
	indirect     bool
	id           uint64
	sector       uint64
	segs         []Segment
	indirectRefs []uint32
	discard      DiscardRequest
}

// simBackend is a blkback: it follows the xenbus protocol in xenstore,
// maps the ring and data grants through fakeGrants and dmatest memory,
// and serves reads, writes, flushes and discards from disk.
type simBackend struct {
	t      testing.TB
	srv    *xenstoretest.Server
	mem    *dmatest.Memory
	grants *fakeGrants
	events *fakeEvents
	opts   backendOpts

	mu          sync.Mutex
	disk        []byte
	ops         map[Operation]int
	maxSegs     int // most data segments seen in one request
	maxInFlight int // most requests seen outstanding at once
	ringPages   int
	hold        bool      // accept requests but do not answer
	held        []backReq // held requests, answered on release
	flushes     int
	published   map[string]string // frontend keys at connect
	kept        gnttab.Ref        // data grant kept mapped (keepMapped)
	segCounts   []int             // data segments of each read or write

	worker *backWorker
	stop   chan struct{}
	done   chan struct{}
	state  atomic.Int32
}

func newSimBackend(t testing.TB, srv *xenstoretest.Server, mem *dmatest.Memory, g *fakeGrants, e *fakeEvents, opts backendOpts) *simBackend {
	if opts.sectorSize == 0 {
		opts.sectorSize = 512
	}
	if opts.sectors == 0 {
		opts.sectors = 2048 // 1 MiB
	}
	b := &simBackend{
		t: t, srv: srv, mem: mem, grants: g, events: e, opts: opts,
		disk: make([]byte, opts.sectors*SectorUnit),
		ops:  map[Operation]int{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	// The toolstack's part.
	srv.Set(feDirAbs+"/backend", beDirAbs)
	srv.Set(feDirAbs+"/backend-id", strconv.Itoa(backDom))
	srv.Set(feDirAbs+"/virtual-device", vbdID)
	srv.Set(feDirAbs+"/device-type", "disk")
	srv.Set(feDirAbs+"/state", "1")
	srv.Set(beDirAbs+"/frontend", feDirAbs)
	srv.Set(beDirAbs+"/frontend-id", strconv.Itoa(frontDom))
	srv.Set(beDirAbs+"/mode", "w")
	srv.Set(beDirAbs+"/state", "1")
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

// setKey changes a key the backend publishes at its next InitWait or
// Connected.
func (b *simBackend) setKey(key, value string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := map[string]string{}
	for k, v := range b.opts.keys {
		keys[k] = v
	}
	keys[key] = value
	b.opts.keys = keys
}

func (b *simBackend) keys() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.keys
}

func (b *simBackend) set(key, def string) {
	if v, ok := b.keys()[key]; ok {
		if v == "<absent>" {
			b.srv.Remove(beDirAbs + "/" + key)
			return
		}
		def = v
	}
	if def != "" {
		b.srv.Set(beDirAbs+"/"+key, def)
	}
}

// publishTransport writes what blkback writes before InitWait.
func (b *simBackend) publishTransport() {
	b.set("max-ring-page-order", "")
	b.set("feature-max-indirect-segments", "")
	b.set("feature-flush-cache", "1")
	b.set("feature-barrier", "")
	b.set("feature-discard", "")
}

// publishDisk writes what blkback writes before Connected.
func (b *simBackend) publishDisk() {
	b.set("sectors", strconv.FormatUint(b.opts.sectors, 10))
	b.set("sector-size", strconv.Itoa(b.opts.sectorSize))
	b.set("info", "0")
	for k, v := range b.keys() {
		if v != "<absent>" {
			b.srv.Set(beDirAbs+"/"+k, v)
		}
	}
}

// run follows the frontend's state as Linux blkback's frontend_changed
// does.
func (b *simBackend) run() {
	defer close(b.done)
	b.publishTransport()
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
		case fs == "3" && bs == 2:
			if err := b.connect(); err != nil {
				b.t.Errorf("simulated backend: connect: %v", err)
				b.setState(5)
				continue
			}
			b.publishDisk()
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
		case fs == "1" && bs == 6 && b.opts.goneAfterReinit:
			b.srv.Remove(beDirAbs)
			return
		case fs == "1" && bs == 6 && !b.opts.stuckAfterClose:
			b.publishTransport()
			b.setState(2)
		}
	}
}

// closeBackend starts a backend-initiated teardown (Closing); requests
// held and not released are dropped, never performed.
func (b *simBackend) closeBackend() {
	b.mu.Lock()
	b.held = nil
	b.mu.Unlock()
	b.setState(5)
}

func (b *simBackend) connect() error {
	read := func(k string) (string, bool) { return b.srv.Get(feDirAbs + "/" + k) }
	pub := map[string]string{}
	for _, k := range []string{"ring-ref", "ring-page-order", "event-channel", "protocol", "ring-ref0", "ring-ref1", "ring-ref2", "ring-ref3"} {
		if v, ok := read(k); ok {
			pub[k] = v
		}
	}
	if pub["protocol"] != "x86_64-abi" {
		return fmt.Errorf("protocol %q", pub["protocol"])
	}
	order := 0
	if v, ok := pub["ring-page-order"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		order = n
	}
	var refs []gnttab.Ref
	if order == 0 {
		n, err := strconv.ParseUint(pub["ring-ref"], 10, 32)
		if err != nil {
			return fmt.Errorf("ring-ref %q", pub["ring-ref"])
		}
		refs = append(refs, gnttab.Ref(n))
	} else {
		for i := 0; i < 1<<order; i++ {
			v, _ := read("ring-ref" + strconv.Itoa(i))
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("ring-ref%d %q", i, v)
			}
			refs = append(refs, gnttab.Ref(n))
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
	// Map the ring: the pages must be contiguous in our simulation only
	// because dmatest hands them out so; a real backend maps each.
	var frames []uint64
	for _, ref := range refs {
		f, err := b.grants.mapRef(backDom, ref, true)
		if err != nil {
			return err
		}
		frames = append(frames, f)
	}
	for i := range frames {
		if frames[i] != frames[0]+uint64(i) {
			return errors.New("ring pages are not contiguous")
		}
	}
	page, err := b.mem.Slice(frames[0]*PageSize, len(frames)*PageSize)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.ringPages = len(refs)
	b.published = pub
	b.mu.Unlock()
	br, err := ring.NewBack(page, RequestSize)
	if err != nil {
		return err
	}
	w := &backWorker{b: b, ring: br, ch: ch, refs: refs, stop: make(chan struct{}), done: make(chan struct{})}
	b.mu.Lock()
	b.worker = w
	b.mu.Unlock()
	go w.run()
	return nil
}

func (b *simBackend) stopWorker() {
	b.mu.Lock()
	w := b.worker
	b.worker = nil
	b.mu.Unlock()
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
	for _, ref := range w.refs {
		b.grants.unmapRef(ref)
	}
}

// setHold makes the backend accept requests without answering them;
// releasing answers the held ones.
func (b *simBackend) setHold(hold bool) {
	b.mu.Lock()
	b.hold = hold
	w := b.worker
	b.mu.Unlock()
	if !hold {
		if w != nil {
			select {
			case w.ch.toBack <- struct{}{}:
			default:
			}
		}
	}
}

func (b *simBackend) heldCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held)
}

func (b *simBackend) diskCopy() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.disk...)
}

func (b *simBackend) fill(seed byte) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.disk {
		b.disk[i] = byte(i*7) ^ byte(i>>9) ^ seed
	}
	return append([]byte(nil), b.disk...)
}

func (b *simBackend) count(op Operation) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ops[op]
}

// backWorker serves one ring.
type backWorker struct {
	b    *simBackend
	ring *ring.Back
	ch   *fakeChannel
	refs []gnttab.Ref
	stop chan struct{}
	done chan struct{}
}

func (w *backWorker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.ch.toBack:
		case <-time.After(5 * time.Millisecond): // a missed event must not hang a test
		}
		w.serve()
	}
}

func (w *backWorker) serve() {
	b := w.b
	for {
		n, err := w.ring.Requests()
		if err != nil {
			b.t.Errorf("simulated backend: %v", err)
			return
		}
		for ; n > 0; n-- {
			slot := w.ring.NextRequest(make([]byte, RequestSize))
			req := parseBackReq(slot)
			b.mu.Lock()
			hold := b.hold
			if hold {
				b.held = append(b.held, req)
			}
			// Requests the frontend has outstanding: produced, not answered.
			b.maxInFlight = max(b.maxInFlight, int(w.ring.Shared().Load(ring.ReqProd)-w.ring.ProducedIndex()))
			b.mu.Unlock()
			if !hold {
				w.answer(req)
			}
		}
		b.mu.Lock()
		var release []backReq
		if !b.hold {
			release, b.held = b.held, nil
		}
		b.mu.Unlock()
		for _, r := range release {
			w.answer(r)
		}
		if !w.ring.FinalCheck() {
			return
		}
	}
}

func parseBackReq(slot []byte) backReq {
	op := Operation(slot[0])
	switch op {
	case OpIndirect:
		r := parseIndirectForTest(slot)
		return backReq{op: r.Op, indirect: true, id: r.ID, sector: r.Sector, segs: make([]Segment, r.NrSegments), indirectRefs: r.IndirectRef}
	case OpDiscard:
		r := parseDiscardForTest(slot)
		return backReq{op: op, id: r.ID, sector: r.Sector, discard: r}
	}
	r := parseRequestForTest(slot)
	return backReq{op: op, id: r.ID, sector: r.Sector, segs: r.Segments}
}

// answer performs req and produces its response.
func (w *backWorker) answer(req backReq) {
	b := w.b
	status := w.perform(&req)
	rsp := Response{ID: req.id, Operation: req.op, Status: status}
	rsps := []Response{rsp}
	if b.opts.mangle != nil {
		rsps = b.opts.mangle(req, rsp)
	}
	for _, rsp := range rsps {
		slot, err := w.ring.NextResponse()
		if err != nil {
			b.t.Errorf("simulated backend: %v", err)
			break
		}
		rsp.Put(slot)
	}
	if len(rsps) > 0 && w.ring.Push() {
		w.ch.kick()
	}
	if b.opts.afterPush != nil {
		b.opts.afterPush(w.ring)
		w.ch.kick()
	}
}

func (w *backWorker) perform(req *backReq) Status {
	b := w.b
	b.mu.Lock()
	b.ops[req.op]++
	b.mu.Unlock()
	switch req.op {
	case OpFlushDiskCache, OpWriteBarrier:
		if b.opts.flushNotSupported {
			return StatusEOPNOTSUPP
		}
		if b.opts.flushError {
			return StatusError
		}
		b.mu.Lock()
		b.flushes++
		b.mu.Unlock()
		return StatusOkay
	case OpDiscard:
		b.mu.Lock()
		defer b.mu.Unlock()
		start, n := req.discard.Sector*SectorUnit, req.discard.NrSectors*SectorUnit
		if start+n > uint64(len(b.disk)) {
			return StatusError
		}
		clear(b.disk[start : start+n])
		return StatusOkay
	case OpRead, OpWrite:
	default:
		return StatusError
	}
	if req.indirect {
		// Map the descriptor pages and read the segments.
		nseg := len(req.segs)
		for p, r := range req.indirectRefs {
			ref := gnttab.Ref(r)
			f, err := b.grants.mapRef(backDom, ref, false)
			if err != nil {
				b.t.Errorf("simulated backend: indirect page: %v", err)
				return StatusError
			}
			pg, _ := b.mem.Slice(f*PageSize, PageSize)
			for i := p * SegmentsPerIndirectPage; i < min(nseg, (p+1)*SegmentsPerIndirectPage); i++ {
				req.segs[i] = parseSegment(pg[(i%SegmentsPerIndirectPage)*SegmentSize:])
			}
			b.grants.unmapRef(ref)
		}
	}
	b.mu.Lock()
	b.maxSegs = max(b.maxSegs, len(req.segs))
	b.segCounts = append(b.segCounts, len(req.segs))
	b.mu.Unlock()
	off := req.sector * SectorUnit
	for _, s := range req.segs {
		if s.LastSect >= SectorsPerPage || s.FirstSect > s.LastSect {
			return StatusError
		}
		n := uint64(s.LastSect-s.FirstSect+1) * SectorUnit
		f, err := b.grants.mapRef(backDom, gnttab.Ref(s.Gref), req.op == OpRead)
		if err != nil {
			b.t.Errorf("simulated backend: data page: %v", err)
			return StatusError
		}
		pg, _ := b.mem.Slice(f*PageSize+uint64(s.FirstSect)*SectorUnit, int(n))
		b.mu.Lock()
		if off+n > uint64(len(b.disk)) {
			b.mu.Unlock()
			b.grants.unmapRef(gnttab.Ref(s.Gref))
			return StatusError
		}
		if req.op == OpRead {
			copy(pg, b.disk[off:off+n])
		} else {
			copy(b.disk[off:off+n], pg)
		}
		keep := b.opts.keepMapped && req.op == OpWrite && b.kept == 0
		if keep {
			b.kept = gnttab.Ref(s.Gref)
		}
		b.mu.Unlock()
		if !keep {
			b.grants.unmapRef(gnttab.Ref(s.Gref))
		}
		off += n
	}
	return StatusOkay
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

func newRig(t testing.TB, opts backendOpts) *rig {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	srv := xenstoretest.NewServer()
	r := &rig{t: t, srv: srv, mem: dmatest.New(testLimit), grants: newFakeGrants(), events: newFakeEvents(), ctx: ctx}
	c, closeFn := srv.Client(frontDom)
	t.Cleanup(closeFn)
	r.be = newSimBackend(t, srv, r.mem, r.grants, r.events, opts)
	r.cfg = Config{Store: c, Grants: r.grants, Events: r.events, Memory: r.mem, Device: vbdID, ReconnectTimeout: 10 * time.Second}
	return r
}

// open connects the driver and closes it at the end of the test.
func (r *rig) open() *Device {
	r.t.Helper()
	d, err := New(r.ctx, r.cfg)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	r.t.Cleanup(func() {
		// Close waits for calls in flight: let a failed test's held
		// requests go first.
		r.be.setHold(false)
		d.Close()
	})
	return d
}

var _ dma.Allocator = (*dmatest.Memory)(nil)
