package blkfront

import (
	"errors"
	"fmt"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// page is one 4 KiB page of a pool chunk, the unit a segment, an indirect
// descriptor page or a ring page is granted in.
type page struct {
	chunk *chunk
	off   int
}

func (p page) bytes() []byte { return p.chunk.r.Bytes[p.off : p.off+PageSize] }
func (p page) frame() uint64 { return (p.chunk.r.Phys + uint64(p.off)) / PageSize }

// chunk is one DMA region carved into pages. It is returned to the
// allocator only when every page is back: a page the backend may still map
// must never be handed to anyone else (see quarantine).
type chunk struct {
	r   *dma.Region
	out int // pages handed out or quarantined
}

// chunkPages is how many pages the pool allocates at a time.
const chunkPages = 16

// pool hands out the pages requests copy their data through. Pages are
// granted per request and revoked at completion (no persistent grants);
// a page whose grant the backend still holds is quarantined until a later
// Revoke succeeds, as gnttab requires. The pool is guarded by the
// Device's mutex.
type pool struct {
	mem    dma.Allocator
	grants GrantTable
	max    int // pages, not counting quarantined ones
	total  int
	free   []page
	chunks []*chunk
	// quarantine holds grants that were still in use when revoked.
	quarantine []grantedPage
}

type grantedPage struct {
	ref  gnttab.Ref
	page page
}

// take returns n pages, or false if fewer than n can be had now (the
// caller waits for completions). An allocator failure is an error.
func (p *pool) take(n int) ([]page, bool, error) {
	if len(p.free) < n && len(p.quarantine) > 0 {
		p.retryQuarantine()
	}
	// Quarantined pages do not count against the cap: they are lost to
	// the backend, and must not starve the disk.
	for len(p.free) < n && p.total-len(p.quarantine) < p.max {
		np := min(chunkPages, p.max-(p.total-len(p.quarantine)))
		r, err := p.mem.Alloc(np * PageSize)
		if err != nil {
			if len(p.free)+p.inUse() >= n {
				return nil, false, nil // wait for pages to come back
			}
			return nil, false, fmt.Errorf("blkfront: allocating %d buffer pages: %w", np, err)
		}
		c := &chunk{r: r}
		p.chunks = append(p.chunks, c)
		for i := 0; i < np; i++ {
			p.free = append(p.free, page{chunk: c, off: i * PageSize})
		}
		p.total += np
	}
	if len(p.free) < n {
		return nil, false, nil
	}
	out := make([]page, n)
	copy(out, p.free[len(p.free)-n:])
	p.free = p.free[:len(p.free)-n]
	for _, pg := range out {
		pg.chunk.out++
	}
	return out, true, nil
}

// inUse is the number of pages handed out (and not quarantined).
func (p *pool) inUse() int {
	n := 0
	for _, c := range p.chunks {
		n += c.out
	}
	return n - len(p.quarantine)
}

// put returns pages that are not granted.
func (p *pool) put(pages []page) {
	for _, pg := range pages {
		pg.chunk.out--
		p.free = append(p.free, pg)
	}
}

// revoke ends the grant of pg. If the backend still maps it, pg goes into
// quarantine and reports false; the caller must not reuse pg.
func (p *pool) revoke(ref gnttab.Ref, pg page) bool {
	if err := p.grants.Revoke(ref); err != nil {
		p.quarantine = append(p.quarantine, grantedPage{ref, pg})
		return false
	}
	return true
}

// release revokes each page's grant and returns the pages that could be
// revoked to the free list.
func (p *pool) release(refs []gnttab.Ref, pages []page) {
	for i, pg := range pages {
		if i < len(refs) {
			if !p.revoke(refs[i], pg) {
				continue
			}
		}
		p.put([]page{pg})
	}
}

// retryQuarantine revokes quarantined grants again.
func (p *pool) retryQuarantine() {
	q := p.quarantine
	p.quarantine = nil
	for _, g := range q {
		if p.revoke(g.ref, g.page) {
			p.put([]page{g.page})
		}
	}
}

// errLeaked is returned by close when pages stayed granted.
var errLeaked = errors.New("blkfront: the backend still maps some pages; they are leaked rather than reused")

// close frees every chunk whose pages are all back. Chunks with
// quarantined pages are leaked on purpose.
func (p *pool) close() error {
	p.retryQuarantine()
	var errs []error
	for _, c := range p.chunks {
		if c.out != 0 {
			continue
		}
		if err := p.mem.Free(c.r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(p.quarantine) > 0 {
		errs = append(errs, fmt.Errorf("%w (%d pages)", errLeaked, len(p.quarantine)))
	}
	p.chunks, p.free, p.total = nil, nil, 0
	return errors.Join(errs...)
}
