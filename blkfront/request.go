package blkfront

import (
	"fmt"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// op is one piece of work for the backend: a read or write of whole
// sectors, a flush or a discard. A caller's access becomes one op per
// ring request; an op that loses its connection is re-issued whole (and
// re-split if the new connection takes smaller requests).
type op struct {
	kind      Operation // OpRead, OpWrite, OpFlushDiskCache (any flush), OpDiscard
	sector    uint64    // 512-byte units
	buf       []byte    // read or write data, whole logical sectors
	nrSectors uint64    // discard length, 512-byte units

	// While on the ring (guarded by Device.mu).
	wire  Operation // the operation the response must carry
	tag   uint64    // the request id on the wire: slot | generation<<idSlotBits
	pages []page    // data pages, then indirect pages
	refs  []gnttab.Ref

	done    chan struct{}
	err     error
	reissue bool // the connection went away first: issue again
}

// idSlotBits is how many low bits of a request id index the slot table.
// The bits above carry a generation, so a stale or repeated response that
// names a slot since reused matches nothing (Linux blkfront keys on the
// slot alone).
const idSlotBits = 16

// run issues ops and waits for all of them, re-issuing those whose
// connection went away. It returns the first error; it never returns while
// a request it issued may still touch the caller's buffers.
func (d *Device) run(ops []*op) error {
	var first error
	for len(ops) > 0 {
		var started []*op
		for _, o := range ops {
			s, err := d.start(o)
			started = append(started, s...)
			if err != nil {
				first = err
				break
			}
		}
		ops = nil
		for _, o := range started {
			<-o.done
			switch {
			case o.reissue && first == nil:
				o.reissue, o.err, o.done = false, nil, nil
				ops = append(ops, o)
			case o.err != nil && first == nil:
				first = o.err
			}
		}
		if first != nil {
			return first
		}
	}
	return nil
}

// pagesFor is how many pages o needs on c: one per 4 KiB of data, plus the
// indirect descriptor pages.
func (c *conn) pagesFor(o *op) int {
	n := (len(o.buf) + PageSize - 1) / PageSize
	if n > MaxSegments {
		n += indirectPages(n)
	}
	return n
}

// start puts o on the ring, splitting it if the connection takes smaller
// requests, and returns the ops it issued (o, or its pieces). It waits
// for a connection, a free request id and buffer pages. An op the driver
// can answer itself (a flush with nothing to flush) is returned done.
func (d *Device) start(o *op) ([]*op, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	queue := []*op{o}
	var started []*op
	for len(queue) > 0 {
		o := queue[0]
		if d.failed != nil {
			return started, d.failed
		}
		c := d.conn
		if c == nil {
			d.cond.Wait()
			continue
		}
		o.done = make(chan struct{})
		switch o.kind {
		case OpFlushDiskCache:
			if c.flush == FlushNone {
				close(o.done)
				started = append(started, o)
				queue = queue[1:]
				continue
			}
		case OpDiscard:
			if !c.info.Discard {
				o.err = fmt.Errorf("blkfront: vbd %s: discard: %w", d.cfg.Device, ErrNotSupported)
				close(o.done)
				started = append(started, o)
				queue = queue[1:]
				continue
			}
		case OpRead, OpWrite:
			if limit := c.segs * PageSize; len(o.buf) > limit {
				var pieces []*op
				for off := 0; off < len(o.buf); off += limit {
					end := min(off+limit, len(o.buf))
					pieces = append(pieces, &op{kind: o.kind, sector: o.sector + uint64(off>>SectorShift), buf: o.buf[off:end]})
				}
				queue = append(pieces, queue[1:]...)
				continue
			}
		}
		if len(c.freeIDs) == 0 || c.ring.Free() == 0 {
			d.cond.Wait()
			continue
		}
		pages, ok, err := d.pool.take(c.pagesFor(o))
		if err != nil {
			return started, err
		}
		if !ok {
			d.cond.Wait()
			continue
		}
		if err := d.issueLocked(c, o, pages); err != nil {
			return started, err
		}
		started = append(started, o)
		queue = queue[1:]
	}
	return started, nil
}

// issueLocked copies o's data into pages, grants them and writes the
// request onto c's ring. On error the pages are back in the pool.
func (d *Device) issueLocked(c *conn, o *op, pages []page) error {
	ndata := (len(o.buf) + PageSize - 1) / PageSize
	if o.kind == OpWrite {
		for i := 0; i < ndata; i++ {
			copy(pages[i].bytes(), o.buf[i*PageSize:])
		}
	}
	segs := make([]Segment, ndata)
	for i := range segs {
		n := min(PageSize, len(o.buf)-i*PageSize)
		segs[i] = Segment{FirstSect: 0, LastSect: uint8((n - 1) >> SectorShift)}
	}
	indirect := ndata > MaxSegments
	if indirect {
		// Unused descriptor slots must read as zero, not as an earlier
		// request's segments.
		for _, pg := range pages[ndata:] {
			clear(pg.bytes())
		}
	}
	refs := make([]gnttab.Ref, 0, len(pages))
	for i, pg := range pages {
		// Linux blkback maps write data and indirect pages read-only; only
		// read data needs write access.
		readOnly := i >= ndata || o.kind != OpRead
		ref, err := d.cfg.Grants.Grant(d.grantDom(), pg.frame(), readOnly)
		if err != nil {
			d.pool.put(pages[len(refs):])
			d.pool.release(refs, pages[:len(refs)])
			return fmt.Errorf("blkfront: vbd %s: granting a buffer page: %w", d.cfg.Device, err)
		}
		refs = append(refs, ref)
		if i < ndata {
			segs[i].Gref = uint32(ref)
		}
	}
	if indirect {
		for i, s := range segs {
			pg := pages[ndata+i/SegmentsPerIndirectPage]
			s.put(pg.bytes()[(i%SegmentsPerIndirectPage)*SegmentSize:])
		}
	}

	slot, err := c.ring.NextRequest()
	if err != nil { // start checked for a free slot: a driver bug
		d.pool.release(refs, pages)
		return fmt.Errorf("blkfront: vbd %s: %w", d.cfg.Device, err)
	}
	slotIdx := c.freeIDs[len(c.freeIDs)-1]
	c.freeIDs = c.freeIDs[:len(c.freeIDs)-1]
	c.gen++
	id := uint64(slotIdx) | c.gen<<idSlotBits
	o.tag, o.pages, o.refs = id, pages, refs
	c.slots[slotIdx] = o
	switch {
	case o.kind == OpFlushDiskCache:
		o.wire = OpFlushDiskCache
		if c.flush == FlushBarrier {
			o.wire = OpWriteBarrier
		}
		r := Request{Operation: o.wire, Handle: d.handle, ID: id, Sector: 0}
		r.Put(slot)
	case o.kind == OpDiscard:
		o.wire = OpDiscard
		r := DiscardRequest{Handle: d.handle, ID: id, Sector: o.sector, NrSectors: o.nrSectors}
		r.Put(slot)
	case indirect:
		// The response to an indirect request carries the inner operation
		// (Linux blkback answers with pending_req->operation, and Linux
		// blkfront checks for it).
		o.wire = o.kind
		r := IndirectRequest{Op: o.kind, NrSegments: uint16(ndata), ID: id, Sector: o.sector, Handle: d.handle}
		for _, ref := range refs[ndata:] {
			r.IndirectRef = append(r.IndirectRef, uint32(ref))
		}
		r.Put(slot)
	default:
		o.wire = o.kind
		r := Request{Operation: o.kind, Handle: d.handle, ID: id, Sector: o.sector, Segments: segs}
		r.Put(slot)
	}
	d.stats.Requests++
	if c.ring.Push() {
		// A failed notify leaves the request on the ring; the backend
		// finds it at its next check, and a dead port shows up as the
		// backend's state change.
		c.ch.Notify()
	}
	return nil
}

// drainLocked consumes every response on c's ring, then does the ring's
// final check so that the next response raises an event.
func (d *Device) drainLocked(c *conn) {
	progressed := false
	var buf [ResponseSize]byte
	for !c.dead {
		n, err := c.ring.Responses()
		if err != nil {
			d.stats.BadResponses++
			d.failLocked(fmt.Errorf("%w (%w): vbd %s: %v", ErrBackendBroken, blockdev.ErrClosed, d.cfg.Device, err))
			d.abortLocked(c, d.failed)
			break
		}
		for ; n > 0; n-- {
			d.completeLocked(c, ParseResponse(c.ring.NextResponse(buf[:])))
			progressed = true
		}
		if !c.ring.FinalCheck() {
			break
		}
	}
	if progressed {
		d.cond.Broadcast()
	}
}

// completeLocked matches a response to its request. A response naming no
// outstanding request is dropped and counted; one that does not fit its
// request fails that request.
func (d *Device) completeLocked(c *conn, rsp Response) {
	slotIdx := rsp.ID & (1<<idSlotBits - 1)
	if slotIdx >= uint64(len(c.slots)) || c.slots[slotIdx] == nil || c.slots[slotIdx].tag != rsp.ID {
		d.stats.DroppedResponses++
		return
	}
	o := c.slots[slotIdx]
	c.slots[slotIdx] = nil
	c.freeIDs = append(c.freeIDs, uint16(slotIdx))
	o.err = d.checkResponse(c, o, rsp)
	if o.err == nil && o.kind == OpRead {
		for i := 0; i*PageSize < len(o.buf); i++ {
			copy(o.buf[i*PageSize:], o.pages[i].bytes())
		}
	}
	d.pool.release(o.refs, o.pages)
	o.pages, o.refs = nil, nil
	close(o.done)
}

// checkResponse turns a response into o's outcome.
func (d *Device) checkResponse(c *conn, o *op, rsp Response) error {
	what := func() string {
		if o.kind == OpRead || o.kind == OpWrite {
			return fmt.Sprintf("vbd %s: %v of %d bytes at sector %d", d.cfg.Device, o.kind, len(o.buf), o.sector)
		}
		return fmt.Sprintf("vbd %s: %v", d.cfg.Device, o.wire)
	}
	if rsp.Operation != o.wire {
		d.stats.BadResponses++
		return fmt.Errorf("%w: %s answered as %v", ErrBadResponse, what(), rsp.Operation)
	}
	status := rsp.Status
	// An old backend answers an unsupported barrier with ERROR; Linux
	// blkfront treats an error on a data-less barrier as EOPNOTSUPP.
	if status == StatusError && o.wire == OpWriteBarrier {
		status = StatusEOPNOTSUPP
	}
	switch status {
	case StatusOkay:
		return nil
	case StatusError:
		return fmt.Errorf("%w: %s", ErrIO, what())
	case StatusEOPNOTSUPP:
		switch o.kind {
		case OpFlushDiskCache:
			// As Linux blkfront: stop flushing (the backend says it cannot).
			c.flush = FlushNone
			return fmt.Errorf("%w: %s: the backend refused it; later flushes on this connection are skipped", ErrNotSupported, what())
		case OpDiscard:
			c.info.Discard = false
			return fmt.Errorf("%w: %s: the backend refused it; discard is now off", ErrNotSupported, what())
		}
		return fmt.Errorf("%w: %s", ErrNotSupported, what())
	}
	d.stats.BadResponses++
	return fmt.Errorf("%w: %s: unknown status %d", ErrBadResponse, what(), rsp.Status)
}

// abortLocked ends every request outstanding on c with err, or marks it
// for re-issue if err is nil, and revokes its grants.
func (d *Device) abortLocked(c *conn, err error) {
	for id, o := range c.slots {
		if o == nil {
			continue
		}
		c.slots[id] = nil
		c.freeIDs = append(c.freeIDs, uint16(id))
		d.pool.release(o.refs, o.pages)
		o.pages, o.refs = nil, nil
		if err == nil {
			o.reissue = true
			d.stats.Reissued++
		} else {
			o.err = err
		}
		close(o.done)
	}
	d.cond.Broadcast()
}
