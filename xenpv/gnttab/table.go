// Package gnttab is this domain's Xen grant table (v1): it lets peer
// domains (backends, vchan peers) reach pages of ours, and maps or copies
// pages that peers granted to us.
//
// A PVH guest owns its grant table frames through add_to_physmap
// (XENMAPSPACE_grant_table) at guest frames it gives up for the purpose;
// entries are then plain memory shared with Xen. Granting writes the
// entry's domid and frame before its flags, so Xen never sees a valid
// entry with stale contents. Revoking clears the flags only while Xen
// reports no mapping or copy in progress (GTF_reading/GTF_writing), with a
// compare-and-swap against Xen's own updates; a grant still in use is
// never handed out again until a later revoke succeeds.
//
// Pages of peers are mapped at guest frames with no RAM behind them
// (returned to Xen with XENMEM_decrease_reservation), as Linux does with
// ballooned pages, and are kept in a pool for the next mapping.
package gnttab

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/dma"
)

// hypervisor is what the table needs from Xen; xen.go has the real one
// and the tests a simulation.
type hypervisor interface {
	// querySize returns the table's current and maximum number of frames.
	querySize() (nr, max uint32, err error)
	// mapTableFrame places table frame idx at guest frame gfn, growing
	// the table when idx is the next frame.
	mapTableFrame(idx uint32, gfn uint64) error
	mapGrants(ops []mapGrantRef) error
	unmapGrants(ops []unmapGrantRef) error
	copy(ops []copyOp) error
	// releaseFrames gives the RAM behind gfns back to Xen, leaving holes.
	releaseFrames(gfns []uint64) error
	// page returns the 4 KiB at guest frame gfn as Go code reaches them.
	page(gfn uint64) []byte
}

// Table is a domain's grant table. Its methods are safe for concurrent use.
type Table struct {
	hv  hypervisor
	mem dma.Allocator

	mu       sync.Mutex
	frames   [][]byte // table frames, entriesPerPage entries each
	maxFr    uint32
	granted  []bool // by ref: handed out by Grant and not yet revoked
	free     []Ref
	deferred []deferredRevoke
	retrying bool
	holes    []uint64      // guest frames with no RAM, for mapping peers' pages
	keep     []*dma.Region // memory given to Xen (table frames, holes): never freed
}

type deferredRevoke struct {
	ref  Ref
	done func()
}

// retryEvery is how often revokes of grants still in use are retried
// (Linux's gnttab retries deferred ends once a second; peers normally let
// go within milliseconds of being told).
const retryEvery = 20 * time.Millisecond

func newTable(hv hypervisor, mem dma.Allocator) (*Table, error) {
	nr, max, err := hv.querySize()
	if err != nil {
		return nil, err
	}
	if max == 0 || nr > max {
		return nil, fmt.Errorf("gnttab: Xen reports %d of at most %d table frames; want at least one", nr, max)
	}
	t := &Table{hv: hv, mem: mem, maxFr: max}
	if nr == 0 {
		nr = 1
	}
	for range nr {
		if err := t.grow(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// grow maps the next table frame and frees its entries. Called with mu
// held (or before the table is shared).
func (t *Table) grow() error {
	idx := uint32(len(t.frames))
	if idx >= t.maxFr {
		return ErrExhausted
	}
	r, err := t.mem.Alloc(pageSize)
	if err != nil {
		return fmt.Errorf("gnttab: memory for table frame %d: %w", idx, err)
	}
	if err := t.hv.mapTableFrame(idx, r.Frame()); err != nil {
		t.mem.Free(r)
		return fmt.Errorf("gnttab: map table frame %d at guest frame %#x: %w", idx, r.Frame(), err)
	}
	t.keep = append(t.keep, r)
	t.frames = append(t.frames, t.hv.page(r.Frame()))
	t.granted = append(t.granted, make([]bool, entriesPerPage)...)
	first := Ref(idx) * entriesPerPage
	// Hand out low refs first: push in reverse, pop from the end.
	for ref := first + entriesPerPage - 1; ref >= first && ref >= reservedRefs; ref-- {
		t.free = append(t.free, ref)
		if ref == 0 {
			break
		}
	}
	return nil
}

// words returns the entry's flags|domid word and its frame word.
func (t *Table) words(ref Ref) (hdr, frame *uint32) {
	b := t.frames[ref/entriesPerPage][(ref%entriesPerPage)*entrySize:]
	return (*uint32)(unsafe.Pointer(&b[0])), (*uint32)(unsafe.Pointer(&b[4]))
}

// Grant gives dom access to this domain's page frame (a guest frame
// number) and returns the ref that names it.
func (t *Table) Grant(dom DomID, frame uint64, readOnly bool) (Ref, error) {
	if frame > math.MaxUint32 {
		return 0, fmt.Errorf("gnttab: grant frame %#x: v1 entries hold 32-bit frame numbers", frame)
	}
	t.mu.Lock()
	if len(t.free) == 0 {
		if err := t.grow(); err != nil {
			t.mu.Unlock()
			if errors.Is(err, ErrExhausted) {
				return 0, ErrExhausted
			}
			return 0, err
		}
	}
	ref := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	t.granted[ref] = true
	t.mu.Unlock()

	flags := uint32(gtfPermitAccess)
	if readOnly {
		flags |= gtfReadOnly
	}
	hdr, fr := t.words(ref)
	atomic.StoreUint32(fr, uint32(frame))
	// The store above is ordered before this one (x86-TSO, and Go's
	// atomics are sequentially consistent): Xen sees the frame first.
	atomic.StoreUint32(hdr, uint32(dom)<<16|flags)
	return ref, nil
}

// Revoke ends the grant of ref. If the peer still maps or copies the page
// it returns ErrInUse and the grant stays in force: the caller must not
// reuse the page, and may retry or use RevokeLater.
func (t *Table) Revoke(ref Ref) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(ref); err != nil {
		return err
	}
	if !t.end(ref) {
		return ErrInUse
	}
	t.release(ref)
	return nil
}

func (t *Table) check(ref Ref) error {
	if int(ref) >= len(t.granted) || !t.granted[ref] {
		return fmt.Errorf("gnttab: revoke ref %d: not granted by this table", ref)
	}
	return nil
}

// end clears the entry's flags unless Xen marks it in use.
func (t *Table) end(ref Ref) bool {
	hdr, _ := t.words(ref)
	for {
		w := atomic.LoadUint32(hdr)
		if w&(gtfReading|gtfWriting) != 0 {
			return false
		}
		// Xen updates the 16-bit flags with its own cmpxchg; comparing the
		// whole word makes ours fail, and retry, if Xen got there first.
		if atomic.CompareAndSwapUint32(hdr, w, w&^0xffff) {
			return true
		}
	}
}

func (t *Table) release(ref Ref) {
	t.granted[ref] = false
	t.free = append(t.free, ref)
}

// RevokeLater ends the grant of ref as soon as the peer lets go, and then
// calls done (if not nil), from another goroutine unless the grant ended at
// once. Use it to free a page whose grant may still be in use.
func (t *Table) RevokeLater(ref Ref, done func()) error {
	err := t.Revoke(ref)
	if err == nil {
		if done != nil {
			done()
		}
		return nil
	}
	if !errors.Is(err, ErrInUse) {
		return err
	}
	t.mu.Lock()
	t.deferred = append(t.deferred, deferredRevoke{ref, done})
	if !t.retrying {
		t.retrying = true
		time.AfterFunc(retryEvery, t.retry)
	}
	t.mu.Unlock()
	return nil
}

func (t *Table) retry() {
	var ended []func()
	t.mu.Lock()
	keep := t.deferred[:0]
	for _, d := range t.deferred {
		if t.end(d.ref) {
			t.release(d.ref)
			if d.done != nil {
				ended = append(ended, d.done)
			}
		} else {
			keep = append(keep, d)
		}
	}
	t.deferred = keep
	t.retrying = len(keep) > 0
	if t.retrying {
		time.AfterFunc(retryEvery, t.retry)
	}
	t.mu.Unlock()
	for _, f := range ended {
		f()
	}
}

// Pending returns the number of grants whose revocation waits for a peer.
func (t *Table) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.deferred)
}

// Free returns the number of refs available without growing the table.
func (t *Table) Free() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.free)
}

// Mapping is a set of a peer's pages mapped into this domain.
type Mapping struct {
	t       *Table
	gfns    []uint64
	handles []uint32
	pages   [][]byte
}

// Pages returns the mapped pages, in the order of the refs given to Map.
func (m *Mapping) Pages() [][]byte { return m.pages }

// Map maps the pages dom granted under refs (backend side).
func (t *Table) Map(dom DomID, refs []Ref, readOnly bool) (*Mapping, error) {
	if len(refs) == 0 {
		return nil, errors.New("gnttab: map: no refs given")
	}
	gfns, err := t.takeHoles(len(refs))
	if err != nil {
		return nil, err
	}
	flags := uint32(gntmapHostMap)
	if readOnly {
		flags |= gntmapReadOnly
	}
	ops := make([]mapGrantRef, len(refs))
	for i, ref := range refs {
		ops[i] = mapGrantRef{hostAddr: gfns[i] * pageSize, flags: flags, ref: uint32(ref), dom: uint16(dom)}
	}
	if err := t.hv.mapGrants(ops); err != nil {
		t.putHoles(gfns)
		return nil, fmt.Errorf("gnttab: map %d refs of domain %d: %w", len(refs), dom, err)
	}
	m := &Mapping{t: t}
	var bad error
	for i, op := range ops {
		if op.status != 0 {
			if bad == nil {
				bad = fmt.Errorf("gnttab: map ref %d of domain %d: %w", refs[i], dom, Status(op.status))
			}
			t.putHoles(gfns[i : i+1])
			continue
		}
		m.gfns = append(m.gfns, gfns[i])
		m.handles = append(m.handles, op.handle)
		m.pages = append(m.pages, t.hv.page(gfns[i]))
	}
	if bad != nil {
		if err := m.Unmap(); err != nil {
			return nil, errors.Join(bad, err)
		}
		return nil, bad
	}
	return m, nil
}

// Unmap unmaps the pages. Nothing may touch them afterwards.
func (m *Mapping) Unmap() error {
	if len(m.gfns) == 0 {
		return nil
	}
	ops := make([]unmapGrantRef, len(m.gfns))
	for i := range ops {
		ops[i] = unmapGrantRef{hostAddr: m.gfns[i] * pageSize, handle: m.handles[i]}
	}
	err := m.t.hv.unmapGrants(ops)
	if err != nil {
		return fmt.Errorf("gnttab: unmap %d pages: %w", len(ops), err)
	}
	var bad error
	for i, op := range ops {
		if op.status != 0 {
			// The frame stays mapped: leave it out of the hole pool.
			bad = errors.Join(bad, fmt.Errorf("gnttab: unmap handle %d: %w", m.handles[i], Status(op.status)))
			continue
		}
		m.t.putHoles(m.gfns[i : i+1])
	}
	m.gfns, m.handles, m.pages = nil, nil, nil
	return bad
}

// takeHoles returns n guest frames with no RAM behind them.
func (t *Table) takeHoles(n int) ([]uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.holes) < n {
		need := n - len(t.holes)
		r, err := t.mem.Alloc(need * pageSize)
		if err != nil {
			return nil, fmt.Errorf("gnttab: frames to map %d pages at: %w", n, err)
		}
		gfns := make([]uint64, need)
		for i := range gfns {
			gfns[i] = r.Frame() + uint64(i)
		}
		if err := t.hv.releaseFrames(gfns); err != nil {
			// Some frames may be gone already; never give r back.
			t.keep = append(t.keep, r)
			return nil, fmt.Errorf("gnttab: return %d frames to Xen: %w", need, err)
		}
		t.keep = append(t.keep, r)
		t.holes = append(t.holes, gfns...)
	}
	h := make([]uint64, n)
	copy(h, t.holes[len(t.holes)-n:])
	t.holes = t.holes[:len(t.holes)-n]
	return h, nil
}

func (t *Table) putHoles(gfns []uint64) {
	t.mu.Lock()
	t.holes = append(t.holes, gfns...)
	t.mu.Unlock()
}

// DomIDSelf names this domain in a copy.
const DomIDSelf DomID = 0x7ff0

// CopyPtr is one side of a grant copy: a peer's granted page (Ref of
// domain Dom) or, with Local set, a frame of this domain.
type CopyPtr struct {
	Local  bool
	Dom    DomID // the granting domain, when !Local
	Ref    Ref
	Frame  uint64 // when Local
	Offset int
}

// CopyOp copies Len bytes; neither side may cross its page's end.
type CopyOp struct {
	Src, Dst CopyPtr
	Len      int
}

// Copy performs the copies in one hypercall (backend side: how a netback
// moves packets without mapping). Each op succeeds or fails on its own;
// the error names every failed op.
func (t *Table) Copy(ops []CopyOp) error {
	raw := make([]copyOp, len(ops))
	for i, op := range ops {
		if op.Len <= 0 || op.Len > pageSize || op.Src.Offset < 0 || op.Dst.Offset < 0 ||
			op.Src.Offset+op.Len > pageSize || op.Dst.Offset+op.Len > pageSize {
			return fmt.Errorf("gnttab: copy %d: %d bytes from offset %d to offset %d cross a page end", i, op.Len, op.Src.Offset, op.Dst.Offset)
		}
		raw[i] = copyOp{source: ptrOf(op.Src), dest: ptrOf(op.Dst), len: uint16(op.Len)}
		if !op.Src.Local {
			raw[i].flags |= gntcopySourceGref
		}
		if !op.Dst.Local {
			raw[i].flags |= gntcopyDestGref
		}
	}
	if len(raw) == 0 {
		return nil
	}
	if err := t.hv.copy(raw); err != nil {
		return fmt.Errorf("gnttab: copy %d ops: %w", len(raw), err)
	}
	var bad error
	for i, r := range raw {
		if r.status != 0 {
			bad = errors.Join(bad, fmt.Errorf("gnttab: copy %d: %w", i, Status(r.status)))
		}
	}
	return bad
}

func ptrOf(p CopyPtr) copyPtr {
	if p.Local {
		return copyPtr{refOrFrame: p.Frame, domid: uint16(DomIDSelf), offset: uint16(p.Offset)}
	}
	return copyPtr{refOrFrame: uint64(p.Ref), domid: uint16(p.Dom), offset: uint16(p.Offset)}
}
