package serve

import (
	"sync/atomic"
	"unsafe"
)

// RxRingSize is the bytes an RxRing holds.
const RxRingSize = 32 << 10

// RxRing is a stream socket's receive ring, shared with the kernel. The
// server moves what the socket received into it ahead of the program's
// reads, and the kernel answers read(2) from it without a round trip to
// the server: Go's io.Copy and io.Discard read 8 or 32 KiB at a time, and
// each forwarded read costs two thread switches and a goroutine wake-up.
//
// The server is the only producer. Consumers are the kernel (read) and
// the server (the other receive calls, which must take what the ring
// holds first so that bytes come out in order); each copies from Cons and
// then advances it by compare-and-swap, retrying if another consumer
// moved it meanwhile. The bytes stay in place until Prod passes them
// again, which only the server does, after Cons.
//
// Layout, as the kernel reads it (kernel.rxProd and its neighbours):
//
//	+0  Prod u32: bytes put in, free-running
//	+4  Cons u32: bytes taken out, free-running
//	+8  Want u32: 1 while the server waits for space: the ring filled up
//	    with the socket still holding more. A consumer that takes bytes
//	    swaps it to 0 and, if it was 1, tells the server (RxSpace).
//	+16 Data [RxRingSize]byte
type RxRing struct {
	Prod atomic.Uint32
	Cons atomic.Uint32
	Want atomic.Uint32
	_    uint32
	Data [RxRingSize]byte
}

// Len returns how many bytes the ring holds.
func (r *RxRing) Len() int { return int(r.Prod.Load() - r.Cons.Load()) }

// Free returns the ring's free space as up to two slices, in order, for
// the producer to fill before Put.
func (r *RxRing) Free() (a, b []byte) {
	prod, cons := r.Prod.Load(), r.Cons.Load()
	free := RxRingSize - int(prod-cons)
	at := int(prod % RxRingSize)
	if n := RxRingSize - at; free > n {
		return r.Data[at:], r.Data[:free-n]
	}
	return r.Data[at : at+free], nil
}

// Put publishes n bytes the producer wrote into the slices Free returned.
func (r *RxRing) Put(n int) { r.Prod.Add(uint32(n)) }

// Take copies up to the vectors' total length out of the ring, in order,
// and returns how many bytes it copied; with peek it leaves them there.
// space reports whether the server waited for space (Want was 1): it
// should fill the ring again.
func (r *RxRing) Take(dst [][]byte, peek bool) (n int, space bool) {
	for {
		cons := r.Cons.Load()
		avail := int(r.Prod.Load() - cons)
		if avail <= 0 || avail > RxRingSize {
			return 0, false
		}
		n = 0
		at := int(cons % RxRingSize)
		for _, d := range dst {
			for len(d) > 0 && n < avail {
				k := copy(d[:min(len(d), avail-n)], r.Data[at:])
				d, n, at = d[k:], n+k, (at+k)%RxRingSize
			}
		}
		if n == 0 || peek {
			return n, false
		}
		if r.Cons.CompareAndSwap(cons, cons+uint32(n)) {
			return n, r.Want.Swap(0) == 1
		}
	}
}

// Attach hands the kernel a stream socket object's receive ring; the
// ring must stay allocated, and its socket open, until the object's close
// is answered. Reads then come from it while it holds bytes, and readiness
// counts them; RxSpace requests ask for more.
func (s *Server) Attach(o Obj, r *RxRing) error {
	return s.write(uint64(o), int64(uintptr(unsafe.Pointer(r))), replyRx)
}
