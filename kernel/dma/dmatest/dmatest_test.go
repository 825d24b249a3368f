package dmatest

import (
	"testing"

	"github.com/unikgo/unikgo/kernel/dma"
)

var _ dma.Allocator = (*Memory)(nil)

func TestMemory(t *testing.T) {
	m := New(3 * dma.PageSize)
	a, err := m.Alloc(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Bytes) != dma.PageSize || a.Phys%dma.PageSize != 0 {
		t.Fatalf("region %#x len %d, want page aligned and one page", a.Phys, len(a.Bytes))
	}
	b, err := m.Alloc(2 * dma.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Alloc(1); err == nil {
		t.Fatal("allocation past the limit succeeded")
	}
	b.Bytes[dma.PageSize+5] = 42
	s, err := m.Slice(b.Phys+dma.PageSize+5, 1)
	if err != nil || s[0] != 42 {
		t.Fatalf("Slice = %v, %v; want the byte written through the region", s, err)
	}
	if _, err := m.Slice(b.Phys+dma.PageSize, dma.PageSize+1); err == nil {
		t.Fatal("Slice across the end of a region succeeded")
	}
	if _, err := m.Slice(a.Phys+dma.PageSize, 1); err == nil {
		t.Fatal("Slice in the guard gap succeeded")
	}
	if err := m.Free(a); err != nil {
		t.Fatal(err)
	}
	if err := m.Free(a); err == nil {
		t.Fatal("double free succeeded")
	}
	if _, err := m.Slice(a.Phys, 1); err == nil {
		t.Fatal("Slice of a freed region succeeded")
	}
	if m.Live() != 1 {
		t.Fatalf("Live = %d, want 1", m.Live())
	}
}
