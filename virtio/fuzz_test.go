package virtio

import (
	"errors"
	"testing"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/pci"
)

// testQueue is a queue of n entries on no device, for driving the ring by
// hand.
func testQueue(t testing.TB, n uint16) (*Queue, *dmatest.Memory) {
	mem := dmatest.New(1 << 20)
	d := &Device{PCI: &pci.Device{}, opts: Options{Mem: mem}}
	q, err := newQueue(d, 0, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return q, mem
}

// FuzzParseCap parses arbitrary capability bytes: a capability that
// parses names a BAR 0-5 and a range that does not pass 4 GiB.
func FuzzParseCap(f *testing.F) {
	f.Add([]byte{9, 0, 16, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0})
	f.Add([]byte{9, 0, 20, 2, 4, 0, 0, 0, 0, 0x30, 0, 0, 0, 0x10, 0, 0, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCap(b)
		if err != nil {
			return
		}
		if c.BAR > 5 || uint64(c.Offset)+uint64(c.Length) > 1<<32 || len(b) < 16 {
			t.Fatalf("accepted %+v from %x", c, b)
		}
		if c.Type == CapNotifyCfg && len(b) < 20 {
			t.Fatalf("notify capability from %d bytes", len(b))
		}
	})
}

// FuzzUsedRing fills the used ring with arbitrary bytes while chains are
// outstanding: Next must never panic, must return only outstanding
// tokens and each once, must report lengths past the buffers, and once
// it says the ring is broken it must keep saying so. Descriptors are
// never lost: free plus outstanding always make the whole table.
func FuzzUsedRing(f *testing.F) {
	// idx 2, elements (0, 4) and (3, 16).
	f.Add(uint8(3), []byte{0, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 16, 0, 0, 0})
	f.Add(uint8(1), []byte{0, 0, 9, 0})
	f.Fuzz(func(t *testing.T, nchains uint8, used []byte) {
		const size = 8
		q, mem := testQueue(t, size)
		buf, _ := mem.Alloc(4096)
		type tok struct {
			n        int
			writable uint32
		}
		out := map[*tok]bool{}
		descs := 0
		for i := 0; i < int(nchains%6); i++ {
			k := &tok{n: 1 + i%3, writable: uint32(16 * (i % 3))}
			bufs := []Buffer{{Addr: buf.Phys, Len: 16}}
			for j := 1; j < k.n; j++ {
				bufs = append(bufs, Buffer{Addr: buf.Phys, Len: 16, Writable: true})
			}
			if err := q.Add(k, bufs...); err != nil {
				break
			}
			out[k] = true
			descs += k.n
		}
		copy(q.ring[q.usedOff:q.usedOff+4+8*size], used)
		broken := false
		for i := 0; i < 2*size; i++ {
			u, ok, err := q.Next()
			if broken && !errors.Is(err, ErrBroken) {
				t.Fatalf("Next after breakage: %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrBroken) {
					t.Fatalf("Next: %v", err)
				}
				broken = true
				continue
			}
			if !ok {
				break
			}
			k := u.Token.(*tok)
			if !out[k] {
				t.Fatalf("token %+v returned twice or never added", k)
			}
			delete(out, k)
			descs -= k.n
			if (u.Len > k.writable) != (u.Err != nil) {
				t.Fatalf("len %d of %d writable: err %v", u.Len, k.writable, u.Err)
			}
		}
		if q.Free()+descs != size || q.Outstanding() != len(out) {
			t.Fatalf("free %d + outstanding descriptors %d != %d (chains %d vs %d)", q.Free(), descs, size, q.Outstanding(), len(out))
		}
		if !broken {
			// Whatever happened, the free list still works.
			for q.Free() > 0 {
				if err := q.Add(1, Buffer{Addr: buf.Phys, Len: 1}); err != nil {
					t.Fatalf("Add with %d free: %v", q.Free(), err)
				}
			}
			if err := q.Add(1, Buffer{Addr: buf.Phys, Len: 1}); !errors.Is(err, ErrFull) {
				t.Fatalf("Add on a full ring: %v", err)
			}
		}
		if broken {
			if tokens := q.Drain(); len(tokens) != len(out) {
				t.Fatalf("Drain returned %d tokens, %d outstanding", len(tokens), len(out))
			}
		}
	})
}
