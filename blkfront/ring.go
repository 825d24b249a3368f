package blkfront

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// frontRing is what the driver needs of the front end of an io/ring.h
// ring with 112-byte request and 16-byte response slots. It is not safe
// for concurrent use; the Device's mutex guards it.
type frontRing interface {
	// size is the number of slots (a power of two).
	size() int
	// free is how many requests can be produced before responses are
	// consumed.
	free() int
	// nextRequest returns the slot at the private producer index and
	// advances it; the request is not visible until push.
	nextRequest() []byte
	// push publishes the produced requests and reports whether the
	// backend must be notified (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY).
	push() bool
	// responses is the number of responses produced and not consumed. An
	// error means the backend's producer index is impossible (more
	// responses than requests outstanding).
	responses() (int, error)
	// response returns the next response's bytes (a copy) and consumes it.
	response() []byte
	// finalCheck asks for an event at the next response and reports
	// whether one arrived meanwhile (RING_FINAL_CHECK_FOR_RESPONSES).
	finalCheck() bool
}

// TEMPORARY: a private io/ring.h front end, because xenpv/ring had not
// landed when this driver was written. It follows shared/docs/xen-abi.md
// "Shared rings" and is tested in ring_test.go. To switch, xenpv/ring's
// front end must offer, over a caller-provided multi-page byte slice with
// 112-byte request and 16-byte response slots: the slot count; free
// request slots; the next request slot (advancing the private producer);
// push with the notify decision; the number of unconsumed responses with
// an error when rsp_prod claims more than were requested
// (RING_RESPONSE_PROD_OVERFLOW); a copy of the next response; and the
// final check. frontRing is that list; only newFrontRing and privFront go.
const ringHeader = 64

type privFront struct {
	page   []byte
	n      uint32
	reqPvt uint32
	rspCon uint32
}

func newFrontRing(page []byte) (frontRing, error) {
	slots := (len(page) - ringHeader) / RequestSize
	if slots < 1 {
		return nil, fmt.Errorf("blkfront: a %d-byte ring holds no request", len(page))
	}
	n := uint32(1)
	for n*2 <= uint32(slots) {
		n *= 2
	}
	r := &privFront{page: page, n: n}
	clear(page)
	r.word(4).Store(1) // req_event
	r.word(12).Store(1)
	return r, nil
}

func (r *privFront) word(off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&r.page[off]))
}

func (r *privFront) slot(i uint32) []byte {
	off := ringHeader + int(i&(r.n-1))*RequestSize
	return r.page[off : off+RequestSize]
}

func (r *privFront) size() int { return int(r.n) }
func (r *privFront) free() int { return int(r.n - (r.reqPvt - r.rspCon)) }

func (r *privFront) nextRequest() []byte {
	s := r.slot(r.reqPvt)
	r.reqPvt++
	return s
}

func (r *privFront) push() bool {
	old := r.word(0).Load()
	r.word(0).Store(r.reqPvt) // atomic store: release order on amd64
	ev := r.word(4).Load()
	return r.reqPvt-ev < r.reqPvt-old
}

func (r *privFront) responses() (int, error) {
	prod := r.word(8).Load()
	if n := prod - r.rspCon; n > r.reqPvt-r.rspCon {
		return 0, fmt.Errorf("the backend's rsp_prod %d is %d ahead of rsp_cons %d with only %d requests outstanding", prod, n, r.rspCon, r.reqPvt-r.rspCon)
	}
	return int(prod - r.rspCon), nil
}

func (r *privFront) response() []byte {
	b := make([]byte, ResponseSize)
	copy(b, r.slot(r.rspCon))
	r.rspCon++
	return b
}

func (r *privFront) finalCheck() bool {
	if r.word(8).Load() != r.rspCon {
		return true
	}
	r.word(12).Store(r.rspCon + 1)
	return r.word(8).Load() != r.rspCon
}
