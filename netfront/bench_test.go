package netfront

import (
	"context"
	"testing"

	"github.com/unikgo/unikgo/netdev"
)

// The benchmarks run the driver against the simulated backend, so they
// measure the driver and the simulation together (grant bookkeeping,
// copies through simulated memory, goroutine hand-offs); the per-packet
// cost of the driver alone shows in BenchmarkScanRx.

func BenchmarkTransmit(b *testing.B) {
	for _, size := range []int{64, 1514, 9018} {
		b.Run(sizeName(size), func(b *testing.B) {
			r := newRig(b, &backendOpts{frontKeys: map[string]string{"mtu": "9000"}})
			n := r.open()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range b.N {
					<-r.be.sent
				}
			}()
			f := frame(size, 1)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if err := n.Transmit(context.Background(), f); err != nil {
					b.Fatal(err)
				}
			}
			<-done
		})
	}
}

// BenchmarkTransmitGSO sends 64 KiB TCP segments with a GSO extra info
// slot; compare its bytes per second with BenchmarkTransmit/1514B, the
// frames the same payload takes without offload.
func BenchmarkTransmitGSO(b *testing.B) {
	r := newRig(b, &backendOpts{keys: map[string]string{keyGSOTCPv6: "1"}})
	r.cfg.Offload = true
	n := r.open()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			<-r.be.sent
		}
	}()
	f := frame(MaxTxSize, 1)
	m := netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true}
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for range b.N {
		if err := n.TransmitMeta(context.Background(), f, m); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

func BenchmarkReceive(b *testing.B) {
	for _, size := range []int{64, 1514, 9018} {
		b.Run(sizeName(size), func(b *testing.B) {
			r := newRig(b, &backendOpts{frontKeys: map[string]string{"mtu": "9000"}})
			n := r.open()
			f := frame(size, 1)
			go func() {
				for i := range b.N {
					r.be.inject(f)
					if i%128 == 127 {
						for r.be.queued() > 256 {
							waitQueue()
						}
					}
				}
			}()
			buf := make([]byte, 9018)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if _, err := n.Receive(context.Background(), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScanRx is the validation of one received packet's responses.
func BenchmarkScanRx(b *testing.B) {
	one := [][RxResponseSize]byte{slot(RxResponse{ID: 7, Status: 1514})}
	chain := [][RxResponseSize]byte{
		slot(RxResponse{ID: 7, Flags: RxMoreData, Status: 4096}),
		slot(RxResponse{ID: 8, Flags: RxMoreData, Status: 4096}),
		slot(RxResponse{ID: 9, Status: 826}),
	}
	for _, tc := range []struct {
		name string
		raw  [][RxResponseSize]byte
	}{{"one slot", one}, {"three slots", chain}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				if s := scanRx(tc.raw, 7, 9018, false); s.bad != nil || !s.complete {
					b.Fatal(s.bad)
				}
			}
		})
	}
}

func sizeName(n int) string {
	switch n {
	case 64:
		return "64B"
	case 1514:
		return "1514B"
	}
	return "9018B"
}
