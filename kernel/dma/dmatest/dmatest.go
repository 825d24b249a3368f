// Package dmatest simulates physical memory for host tests of drivers:
// regions are ordinary Go slices at made-up physical addresses, and a
// simulated device or peer resolves addresses back to bytes with Slice.
package dmatest

import (
	"fmt"
	"sort"
	"sync"

	"github.com/unikgo/unikgo/kernel/dma"
)

// base is the first simulated physical address: high enough that a driver
// which mistakes a physical address for an index or a length stands out.
const base = 0x1_0000_0000

// Memory is a simulated physical address space. The zero value is not
// ready; use New.
type Memory struct {
	mu      sync.Mutex
	next    uint64
	limit   int // bytes still allowed, for exhaustion tests
	regions map[uint64]*dma.Region
}

// New returns a memory that allows up to limit bytes of live regions.
func New(limit int) *Memory {
	return &Memory{next: base, limit: limit, regions: map[uint64]*dma.Region{}}
}

// Alloc implements dma.Allocator.
func (m *Memory) Alloc(size int) (*dma.Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("dmatest: allocate %d bytes: size must be positive", size)
	}
	n := (size + dma.PageSize - 1) &^ (dma.PageSize - 1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n > m.limit {
		return nil, fmt.Errorf("dmatest: allocate %d bytes: only %d left", size, m.limit)
	}
	m.limit -= n
	r := &dma.Region{Phys: m.next, Bytes: make([]byte, n)}
	m.regions[r.Phys] = r
	m.next += uint64(n) + dma.PageSize // a guard gap between regions
	return r, nil
}

// Free implements dma.Allocator.
func (m *Memory) Free(r *dma.Region) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.regions[r.Phys] != r {
		return fmt.Errorf("dmatest: free %#x: not allocated", r.Phys)
	}
	delete(m.regions, r.Phys)
	m.limit += len(r.Bytes)
	r.Bytes = nil
	return nil
}

// Live returns the number of regions not freed.
func (m *Memory) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.regions)
}

// Slice returns the n bytes at physical address phys, as a device would
// reach them, or an error if they are not inside one live region.
func (m *Memory) Slice(phys uint64, n int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]uint64, 0, len(m.regions))
	for k := range m.regions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	i := sort.Search(len(keys), func(i int) bool { return keys[i] > phys }) - 1
	if i < 0 || n < 0 {
		return nil, fmt.Errorf("dmatest: %d bytes at %#x: no region there", n, phys)
	}
	r := m.regions[keys[i]]
	off := phys - r.Phys
	if off+uint64(n) > uint64(len(r.Bytes)) {
		return nil, fmt.Errorf("dmatest: %d bytes at %#x: past the end of the region at %#x", n, phys, r.Phys)
	}
	return r.Bytes[off : off+uint64(n)], nil
}
