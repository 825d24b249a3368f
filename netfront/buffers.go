package netfront

import (
	"errors"
	"fmt"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// chunkPages is how many buffer pages one DMA allocation holds.
const chunkPages = 16

// pageSet is a fixed number of buffer pages, allocated in chunks. A chunk
// goes back to the allocator only when none of its pages is still granted
// to the backend (see quarantine).
type pageSet struct {
	regions []*dma.Region
	n       int
}

func allocPages(mem dma.Allocator, n int) (*pageSet, error) {
	s := &pageSet{n: n}
	for i := 0; i < n; i += chunkPages {
		r, err := mem.Alloc(min(chunkPages, n-i) * PageSize)
		if err != nil {
			s.free(mem, nil)
			return nil, err
		}
		s.regions = append(s.regions, r)
	}
	return s, nil
}

// bytes is page i.
func (s *pageSet) bytes(i int) []byte {
	r := s.regions[i/chunkPages]
	off := (i % chunkPages) * PageSize
	return r.Bytes[off : off+PageSize : off+PageSize]
}

// frame is page i's GFN.
func (s *pageSet) frame(i int) uint64 {
	return s.regions[i/chunkPages].Frame() + uint64(i%chunkPages)
}

// free returns every chunk none of whose pages held says the backend
// still holds; the others are leaked. It returns how many pages leaked.
func (s *pageSet) free(mem dma.Allocator, held func(i int) bool) (int, error) {
	var errs []error
	leaked := 0
	for c, r := range s.regions {
		if r == nil {
			continue
		}
		keep := 0
		for i := c * chunkPages; i < min(s.n, (c+1)*chunkPages); i++ {
			if held != nil && held(i) {
				keep++
			}
		}
		if keep > 0 {
			leaked += keep
			continue
		}
		if err := mem.Free(r); err != nil {
			errs = append(errs, err)
		}
		s.regions[c] = nil
	}
	return leaked, errors.Join(errs...)
}

// quarantined is a page whose grant the backend still held when the
// driver revoked it: neither may be reused until a later Revoke succeeds.
type quarantined struct {
	buf int
	ref gnttab.Ref
}

// errLeaked is returned by Close when pages stayed granted.
var errLeaked = errors.New("netfront: the backend still holds some pages; they are leaked rather than reused")

func leakedError(n int) error {
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w (%d pages)", errLeaked, n)
}
