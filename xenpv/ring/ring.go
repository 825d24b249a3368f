// Package ring is the shared ring of Xen's public io/ring.h, the transport
// of the split drivers (blkif, netif and others): a header of four
// free-running 32-bit indexes followed by a power-of-two number of
// fixed-size entry slots, in memory shared by a front end, which produces
// requests and consumes responses, and a back end, which does the mirror.
//
// Layout (shared/docs/xen-abi.md, "Shared rings"): req_prod at 0,
// req_event at 4, rsp_prod at 8, rsp_event at 12, padding to 64 bytes,
// then the entries. A slot holds a request or, once the request has been
// consumed, its response (io/ring.h declares the slot as a union of the
// two), so the slot size is the larger of the two. A ring of n bytes has
// 2^floor(log2((n-64)/slot)) entries; rings of several pages are one
// contiguous byte slice.
//
// Ordering. Indexes are read and written with sync/atomic: on amd64 an
// atomic store is an XCHG, a full barrier, and loads are not reordered
// with other loads. That gives each step of io/ring.h the barrier it
// needs: slots are written before the producer index is published (wmb),
// the event index is read after it (mb), and slots are read after the
// peer's producer index (rmb).
//
// Trust. The peer writes the shared page whenever it likes. Its producer
// index is checked against what it can possibly have produced: a front
// end's responses cannot outnumber the requests it pushed, and a back
// end's unconsumed requests cannot run past the ring's free space. An
// impossible index is an error (ErrOverrun), never a panic or a loop; the
// ring then stays broken. The peer's event index only decides whether to
// notify, so every value is acceptable. Slots are copied out before use,
// so a peer that rewrites one cannot change what was validated. The
// ring's own private indexes are never read back from shared memory.
//
// A Front or Back is not safe for concurrent use; the driver serializes
// calls (one producer and one consumer side may not run at once either).
package ring

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Offsets of the shared ring header (struct xen_sring).
const (
	ReqProdOffset  = 0
	ReqEventOffset = 4
	RspProdOffset  = 8
	RspEventOffset = 12
	// HeaderSize is where the entries start: the indexes, then padding
	// (private fields of some protocols) to 64 bytes.
	HeaderSize = 64
)

// Index names one of the four header words.
type Index int

// The header words, by offset.
const (
	ReqProd  Index = ReqProdOffset
	ReqEvent Index = ReqEventOffset
	RspProd  Index = RspProdOffset
	RspEvent Index = RspEventOffset
)

func (i Index) String() string {
	switch i {
	case ReqProd:
		return "req_prod"
	case ReqEvent:
		return "req_event"
	case RspProd:
		return "rsp_prod"
	case RspEvent:
		return "rsp_event"
	}
	return fmt.Sprintf("Index(%d)", int(i))
}

var (
	// ErrOverrun means the peer's producer index claims entries it cannot
	// have produced (more responses than requests pushed, more requests
	// than free slots, or an index that went backwards). The ring is
	// broken from then on.
	ErrOverrun = errors.New("ring: the peer's producer index is impossible")
	// ErrFull means there is no free slot to produce into.
	ErrFull = errors.New("ring: no free slot")
)

// Slots returns how many entries a ring of size bytes with slotSize-byte
// entries holds: the largest power of two that fits after the header
// (io/ring.h's __CONST_RING_SIZE), or 0 if not even one fits.
func Slots(size, slotSize int) int {
	if slotSize <= 0 || size < HeaderSize+slotSize {
		return 0
	}
	n := (size - HeaderSize) / slotSize
	if n > 1<<31 {
		n = 1 << 31
	}
	return 1 << (bits.Len(uint(n)) - 1)
}

// Shared is the header of a ring, read and written atomically. Drivers do
// not need it; it is for simulated peers and tests, which may also write
// nonsense into it.
type Shared struct {
	mem []byte
}

// NewShared returns the header of the ring in mem. mem must hold the
// header and be 4-byte aligned.
func NewShared(mem []byte) (*Shared, error) {
	if len(mem) < HeaderSize {
		return nil, fmt.Errorf("ring: %d bytes cannot hold the %d-byte header", len(mem), HeaderSize)
	}
	if uintptr(unsafe.Pointer(&mem[0]))%4 != 0 {
		return nil, errors.New("ring: memory is not 4-byte aligned")
	}
	return &Shared{mem: mem}, nil
}

func (s *Shared) word(i Index) *atomic.Uint32 {
	switch i {
	case ReqProd, ReqEvent, RspProd, RspEvent:
	default:
		panic(fmt.Sprintf("ring: %v is not a header index", i))
	}
	return (*atomic.Uint32)(unsafe.Pointer(&s.mem[i]))
}

// Load reads header word i.
func (s *Shared) Load(i Index) uint32 { return s.word(i).Load() }

// Store writes header word i.
func (s *Shared) Store(i Index, v uint32) { s.word(i).Store(v) }

// layout is what both ends share: the memory and its geometry.
type layout struct {
	sh       Shared
	size     uint32 // entries, a power of two
	slotSize int
}

func newLayout(mem []byte, slotSize int) (layout, error) {
	n := Slots(len(mem), slotSize)
	if n == 0 {
		return layout{}, fmt.Errorf("ring: %d bytes hold no %d-byte entry after the %d-byte header", len(mem), slotSize, HeaderSize)
	}
	sh, err := NewShared(mem)
	if err != nil {
		return layout{}, err
	}
	return layout{sh: *sh, size: uint32(n), slotSize: slotSize}, nil
}

// slot returns entry i (a free-running index) in shared memory.
func (l *layout) slot(i uint32) []byte {
	off := HeaderSize + int(i&(l.size-1))*l.slotSize
	return l.sh.mem[off : off+l.slotSize : off+l.slotSize]
}

// copySlot copies entry i into dst (at most one slot) and returns the
// copied part of dst.
func (l *layout) copySlot(dst []byte, i uint32) []byte {
	return dst[:copy(dst, l.slot(i))]
}

// notify is RING_PUSH_*_AND_CHECK_NOTIFY's test: the peer asked for an
// event at index ev, and the indexes (old, new] were just published.
func notify(old, new, ev uint32) bool { return new-ev < new-old }

// Front is the front end of a ring: it produces requests and consumes
// responses (FRONT_RING in io/ring.h).
type Front struct {
	l       layout
	reqPvt  uint32 // requests produced, published or not
	reqPush uint32 // requests published (our copy of req_prod)
	rspCons uint32 // responses consumed
	rspSeen uint32 // responses validated by the last Responses
	err     error
}

// NewFront initializes the ring in mem (SHARED_RING_INIT and
// FRONT_RING_INIT): the memory is zeroed, both producer indexes are 0 and
// both event indexes 1. slotSize is the larger of the request and
// response sizes. The back end attaches to the ring after the front end
// has published it.
func NewFront(mem []byte, slotSize int) (*Front, error) {
	l, err := newLayout(mem, slotSize)
	if err != nil {
		return nil, err
	}
	clear(mem)
	l.sh.Store(ReqEvent, 1)
	l.sh.Store(RspEvent, 1)
	return &Front{l: l}, nil
}

// Size is the number of entries.
func (f *Front) Size() int { return int(f.l.size) }

// SlotSize is the size of one entry.
func (f *Front) SlotSize() int { return f.l.slotSize }

// Shared is the ring's header.
func (f *Front) Shared() *Shared { return &f.l.sh }

// Err is the error that broke the ring, or nil.
func (f *Front) Err() error { return f.err }

// Free is how many requests can be produced before responses are consumed
// (RING_FREE_REQUESTS).
func (f *Front) Free() int { return int(f.l.size - (f.reqPvt - f.rspCons)) }

// Outstanding is how many requests were produced and have no consumed
// response yet.
func (f *Front) Outstanding() int { return int(f.reqPvt - f.rspCons) }

// ProducedIndex is the private request producer index: the free-running
// index the next NextRequest slot will have.
func (f *Front) ProducedIndex() uint32 { return f.reqPvt }

// ConsumedIndex is the response consumer index: the free-running index of
// the next response.
func (f *Front) ConsumedIndex() uint32 { return f.rspCons }

// NextRequest returns the slot at the private producer index, in shared
// memory, and advances the index. The request becomes visible to the back
// end at the next Push. The caller writes the whole request; the slot
// still holds an old response. It fails with ErrFull when Free is 0.
func (f *Front) NextRequest() ([]byte, error) {
	if f.Free() <= 0 {
		return nil, ErrFull
	}
	s := f.l.slot(f.reqPvt)
	f.reqPvt++
	return s, nil
}

// Push publishes the requests produced since the last Push and reports
// whether the back end must be notified
// (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY).
func (f *Front) Push() bool {
	old, new := f.reqPush, f.reqPvt
	if old == new {
		return false
	}
	f.reqPush = new
	f.l.sh.Store(ReqProd, new) // XCHG: slots before, req_event after
	return notify(old, new, f.l.sh.Load(ReqEvent))
}

// Responses reads the back end's producer index and returns how many
// responses are ready to consume. An index claiming more responses than
// requests were pushed (RING_RESPONSE_PROD_OVERFLOW), or going back
// behind responses an earlier call reported, breaks the ring: Responses
// then returns ErrOverrun, now and on every later call.
func (f *Front) Responses() (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	prod := f.l.sh.Load(RspProd)
	n, outstanding := prod-f.rspCons, f.reqPush-f.rspCons
	if n > outstanding {
		f.err = fmt.Errorf("%w: rsp_prod %d is %d past rsp_cons %d with %d requests pushed and unanswered", ErrOverrun, prod, int32(n), f.rspCons, outstanding)
		return 0, f.err
	}
	if seen := f.rspSeen - f.rspCons; n < seen {
		f.err = fmt.Errorf("%w: rsp_prod went back from %d to %d", ErrOverrun, f.rspSeen, prod)
		return 0, f.err
	}
	f.rspSeen = prod
	return int(n), nil
}

// Response copies the i-th unconsumed response (0 is the next) into dst,
// at most one slot, and returns the copied part of dst. i must be below
// the count the last Responses returned; otherwise Response returns nil.
func (f *Front) Response(i int, dst []byte) []byte {
	if f.err != nil || i < 0 || uint32(i) >= f.rspSeen-f.rspCons {
		return nil
	}
	return f.l.copySlot(dst, f.rspCons+uint32(i))
}

// Consume marks the next n responses consumed. n may not exceed the count
// the last Responses returned; a larger n consumes only those.
func (f *Front) Consume(n int) {
	if n <= 0 || f.err != nil {
		return
	}
	f.rspCons += min(uint32(n), f.rspSeen-f.rspCons)
}

// NextResponse copies the next response into dst and consumes it: Response
// followed by Consume(1). It returns nil if no validated response is left.
func (f *Front) NextResponse(dst []byte) []byte {
	b := f.Response(0, dst)
	if b != nil {
		f.rspCons++
	}
	return b
}

// FinalCheck asks the back end for an event at the next response and
// reports whether one arrived meanwhile (RING_FINAL_CHECK_FOR_RESPONSES):
// when it returns false, the back end's next push will notify.
func (f *Front) FinalCheck() bool { return f.Await(1) }

// Await asks the back end for an event once n responses are unconsumed
// (n from 1 to Size) and reports whether there are n already. A consumer
// that found a partial batch (say the start of a packet whose last slot
// is not there yet) awaits one more than it has. On a broken ring it
// returns false, so a drain loop ending on Await always ends.
func (f *Front) Await(n int) bool {
	if f.err != nil {
		return false
	}
	n = max(1, min(n, int(f.l.size)))
	want := f.rspCons + uint32(n)
	if f.l.sh.Load(RspProd)-f.rspCons >= uint32(n) {
		return true
	}
	f.l.sh.Store(RspEvent, want) // XCHG: the re-read below comes after
	return f.l.sh.Load(RspProd)-f.rspCons >= uint32(n)
}

// Back is the back end of a ring: it consumes requests and produces
// responses (BACK_RING in io/ring.h).
type Back struct {
	l       layout
	reqCons uint32 // requests consumed
	reqSeen uint32 // requests validated by the last Requests
	rspPvt  uint32 // responses produced, published or not
	rspPush uint32 // responses published (our copy of rsp_prod)
	err     error
}

// NewBack attaches to a ring the front end initialized in mem
// (BACK_RING_INIT): both private indexes start at 0. slotSize must be the
// front end's.
func NewBack(mem []byte, slotSize int) (*Back, error) {
	return AttachBack(mem, slotSize, 0)
}

// AttachBack attaches to a ring whose indexes are at start, as after a
// back end restart (BACK_RING_ATTACH): the front end has pushed requests
// up to some index, and responses up to start were produced.
func AttachBack(mem []byte, slotSize int, start uint32) (*Back, error) {
	l, err := newLayout(mem, slotSize)
	if err != nil {
		return nil, err
	}
	return &Back{l: l, reqCons: start, reqSeen: start, rspPvt: start, rspPush: start}, nil
}

// Size is the number of entries.
func (b *Back) Size() int { return int(b.l.size) }

// SlotSize is the size of one entry.
func (b *Back) SlotSize() int { return b.l.slotSize }

// Shared is the ring's header.
func (b *Back) Shared() *Shared { return &b.l.sh }

// Err is the error that broke the ring, or nil.
func (b *Back) Err() error { return b.err }

// ConsumedIndex is the request consumer index.
func (b *Back) ConsumedIndex() uint32 { return b.reqCons }

// ProducedIndex is the private response producer index.
func (b *Back) ProducedIndex() uint32 { return b.rspPvt }

// Unanswered is how many requests were consumed and have no response yet.
func (b *Back) Unanswered() int { return int(b.reqCons - b.rspPvt) }

// Requests reads the front end's producer index and returns how many
// requests are ready to consume (RING_HAS_UNCONSUMED_REQUESTS). An index
// that claims more requests than there are free slots (the front end may
// not overwrite slots whose responses were not produced;
// RING_REQUEST_PROD_OVERFLOW), or that goes back behind requests an
// earlier call reported, breaks the ring: Requests then returns
// ErrOverrun, now and on every later call.
func (b *Back) Requests() (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	prod := b.l.sh.Load(ReqProd)
	n, room := prod-b.reqCons, b.l.size-(b.reqCons-b.rspPvt)
	if n > room {
		b.err = fmt.Errorf("%w: req_prod %d is %d past req_cons %d with room for %d", ErrOverrun, prod, int32(n), b.reqCons, room)
		return 0, b.err
	}
	if seen := b.reqSeen - b.reqCons; n < seen {
		b.err = fmt.Errorf("%w: req_prod went back from %d to %d", ErrOverrun, b.reqSeen, prod)
		return 0, b.err
	}
	b.reqSeen = prod
	return int(n), nil
}

// Request copies the i-th unconsumed request (0 is the next) into dst, at
// most one slot, and returns the copied part of dst. i must be below the
// count the last Requests returned; otherwise Request returns nil.
func (b *Back) Request(i int, dst []byte) []byte {
	if b.err != nil || i < 0 || uint32(i) >= b.reqSeen-b.reqCons {
		return nil
	}
	return b.l.copySlot(dst, b.reqCons+uint32(i))
}

// Consume marks the next n requests consumed, at most the count the last
// Requests returned.
func (b *Back) Consume(n int) {
	if n <= 0 || b.err != nil {
		return
	}
	b.reqCons += min(uint32(n), b.reqSeen-b.reqCons)
}

// NextRequest copies the next request into dst and consumes it. It returns
// nil if no validated request is left.
func (b *Back) NextRequest(dst []byte) []byte {
	r := b.Request(0, dst)
	if r != nil {
		b.reqCons++
	}
	return r
}

// NextResponse returns the slot at the private response producer index,
// in shared memory, and advances the index. A response answers a consumed
// request, so it fails with ErrFull when every consumed request already
// has one.
func (b *Back) NextResponse() ([]byte, error) {
	if b.reqCons == b.rspPvt {
		return nil, ErrFull
	}
	s := b.l.slot(b.rspPvt)
	b.rspPvt++
	return s, nil
}

// Push publishes the responses produced since the last Push and reports
// whether the front end must be notified
// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
func (b *Back) Push() bool {
	old, new := b.rspPush, b.rspPvt
	if old == new {
		return false
	}
	b.rspPush = new
	b.l.sh.Store(RspProd, new)
	return notify(old, new, b.l.sh.Load(RspEvent))
}

// FinalCheck asks the front end for an event at the next request and
// reports whether one arrived meanwhile (RING_FINAL_CHECK_FOR_REQUESTS).
func (b *Back) FinalCheck() bool { return b.Await(1) }

// Await asks the front end for an event once n requests are unconsumed
// (n from 1 to Size) and reports whether there are n already.
func (b *Back) Await(n int) bool {
	if b.err != nil {
		return false
	}
	n = max(1, min(n, int(b.l.size)))
	if b.l.sh.Load(ReqProd)-b.reqCons >= uint32(n) {
		return true
	}
	b.l.sh.Store(ReqEvent, b.reqCons+uint32(n))
	return b.l.sh.Load(ReqProd)-b.reqCons >= uint32(n)
}
