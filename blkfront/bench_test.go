package blkfront

import (
	"math/rand/v2"
	"testing"
)

// The benchmarks go through the whole driver and the simulated backend
// (xenstore handshake once, then ring, grants and event channels per
// request), on a 64 MiB disk.

func benchDevice(b *testing.B) *Device {
	r := newRig(b, backendOpts{sectors: 64 << 20 / SectorUnit})
	return r.open()
}

func benchAccess(b *testing.B, write, random bool) {
	d := benchDevice(b)
	buf := make([]byte, 4096)
	pages := d.Size() / 4096
	rng := rand.New(rand.NewPCG(1, 1))
	b.SetBytes(4096)
	for i := 0; b.Loop(); i++ {
		off := int64(i) % pages * 4096
		if random {
			off = rng.Int64N(pages) * 4096
		}
		var err error
		if write {
			_, err = d.WriteAt(buf, off)
		} else {
			_, err = d.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSequentialRead4K(b *testing.B)  { benchAccess(b, false, false) }
func BenchmarkSequentialWrite4K(b *testing.B) { benchAccess(b, true, false) }
func BenchmarkRandomRead4K(b *testing.B)      { benchAccess(b, false, true) }
func BenchmarkRandomWrite4K(b *testing.B)     { benchAccess(b, true, true) }

// BenchmarkParallelRandomRead4K keeps many requests in flight.
func BenchmarkParallelRandomRead4K(b *testing.B) {
	d := benchDevice(b)
	pages := d.Size() / 4096
	b.SetBytes(4096)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
		for pb.Next() {
			if _, err := d.ReadAt(buf, rng.Int64N(pages)*4096); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
