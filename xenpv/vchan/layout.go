package vchan

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Page geometry. Grants are per 4 KiB page on every architecture Xen runs
// vchan on.
const (
	PageShift = 12
	PageSize  = 1 << PageShift
)

// Byte offsets of struct vchan_interface (Xen io/libxenvchan.h) in the
// shared page. The page is little endian, like every architecture Xen
// supports; the package reads it with native atomics.
const (
	OffsetLeftCons   = 0  // u32: server's read index of the client-to-server ring
	OffsetLeftProd   = 4  // u32: client's write index of the client-to-server ring
	OffsetRightCons  = 8  // u32: client's read index of the server-to-client ring
	OffsetRightProd  = 12 // u32: server's write index of the server-to-client ring
	OffsetLeftOrder  = 16 // u16: log2 of the left ring size
	OffsetRightOrder = 18 // u16: log2 of the right ring size
	OffsetCliLive    = 20 // u8: client's Live state
	OffsetSrvLive    = 21 // u8: server's Live state
	OffsetCliNotify  = 22 // u8: notify bits the server asks of the client
	OffsetSrvNotify  = 23 // u8: notify bits the client asks of the server
	OffsetGrants     = 24 // u32[]: grant refs of the left ring pages, then the right ring pages
	HeaderSize       = 24
	GrantRefSize     = 4
)

// Ring orders (log2 of the ring size in bytes) and where each ring lives.
// Orders 10 and 11 sit inside the shared page at fixed offsets; orders from
// PageShift up use separately granted pages listed in the grant array.
const (
	SmallRingOrder  = 10
	SmallRingOffset = 1024
	LargeRingOrder  = 11
	LargeRingOffset = 2048
	// MaxRingOrder bounds a ring at 1 MiB, as libxenvchan does: beyond it the
	// grant refs of two rings would no longer fit in the shared page.
	MaxRingOrder = 20
	MaxRingSize  = 1 << MaxRingOrder
)

// Xenstore keys a server publishes in its vchan directory (see Dir).
const (
	KeyRingRef      = "ring-ref"      // grant ref of the shared page, decimal
	KeyEventChannel = "event-channel" // server's unbound event channel port, decimal
)

// Live is the value of cli_live or srv_live: whether that side is there.
type Live uint8

// Live values, as libxenvchan defines them.
const (
	LiveExited    Live = 0 // closed its end (or never will connect)
	LiveConnected Live = 1 // attached and running
	LiveWaiting   Live = 2 // client only: the server set up the page, no client yet
)

func (l Live) String() string {
	switch l {
	case LiveExited:
		return "exited"
	case LiveConnected:
		return "connected"
	case LiveWaiting:
		return "waiting"
	}
	return fmt.Sprintf("invalid(%d)", uint8(l))
}

// Notify bits in cli_notify/srv_notify: set by a side that is about to sleep,
// cleared by the peer when it sends the event.
const (
	NotifyWrite uint8 = 1 // wake me when you have written (produced) data
	NotifyRead  uint8 = 2 // wake me when you have read (consumed) data
)

// ringIndex is struct ring_shared: one ring's consumer and producer indices.
// Both are free-running u32 counters; the position in the ring is index mod size.
type ringIndex struct {
	cons atomic.Uint32
	prod atomic.Uint32
}

// sharedHeader is struct vchan_interface as it sits at the start of the
// shared page. Its field offsets are the Offset constants above (checked by
// the tests). The four one-byte fields share one aligned 32-bit word so that
// they can be updated with the 32-bit atomics Go offers; libxenvchan updates
// the notify bytes with byte-wide atomics, which is coherent with this.
type sharedHeader struct {
	left       ringIndex
	right      ringIndex
	leftOrder  uint16
	rightOrder uint16
	status     atomic.Uint32 // cli_live, srv_live, cli_notify, srv_notify
}

// statusByte names one byte of the status word by its shift within it.
type statusByte uint

// Shifts of the status bytes within the little-endian status word.
const (
	cliLive   statusByte = (OffsetCliLive - OffsetCliLive) * 8
	srvLive   statusByte = (OffsetSrvLive - OffsetCliLive) * 8
	cliNotify statusByte = (OffsetCliNotify - OffsetCliLive) * 8
	srvNotify statusByte = (OffsetSrvNotify - OffsetCliLive) * 8
)

// headerOf overlays the header on a shared page. The page must be a whole,
// 8-byte aligned page (Memory implementations guarantee this).
func headerOf(page []byte) (*sharedHeader, error) {
	if len(page) < PageSize {
		return nil, fmt.Errorf("vchan: shared page is %d bytes, want %d: the Memory implementation must return whole pages", len(page), PageSize)
	}
	if uintptr(unsafe.Pointer(&page[0]))%8 != 0 {
		return nil, fmt.Errorf("vchan: shared page at %p is not 8-byte aligned: the Memory implementation must return aligned pages", &page[0])
	}
	return (*sharedHeader)(unsafe.Pointer(&page[0])), nil
}

// load returns one status byte.
func (h *sharedHeader) load(b statusByte) uint8 {
	return uint8(h.status.Load() >> b)
}

// store sets one status byte without disturbing the other three, which the
// peer may be changing at the same time.
func (h *sharedHeader) store(b statusByte, v uint8) {
	for {
		old := h.status.Load()
		n := old&^(0xff<<b) | uint32(v)<<b
		if h.status.CompareAndSwap(old, n) {
			return
		}
	}
}

// or sets bits in one status byte (libxenvchan's __sync_or_and_fetch).
func (h *sharedHeader) or(b statusByte, bits uint8) {
	h.status.Or(uint32(bits) << b)
}

// clear clears bits in one status byte and returns the byte's previous value
// (libxenvchan's __sync_fetch_and_and).
func (h *sharedHeader) clear(b statusByte, bits uint8) uint8 {
	return uint8(h.status.And(^(uint32(bits) << b)) >> b)
}

// ringPlace says where a ring of a given order lives.
type ringPlace struct {
	inPage bool // inside the shared page at offset
	offset int  // offset in the shared page, when inPage
	pages  int  // number of separately granted pages, when !inPage
}

// placeOf returns where a ring of the given order lives, or an error for an
// order libxenvchan would not accept.
func placeOf(order int) (ringPlace, error) {
	switch {
	case order == SmallRingOrder:
		return ringPlace{inPage: true, offset: SmallRingOffset}, nil
	case order == LargeRingOrder:
		return ringPlace{inPage: true, offset: LargeRingOffset}, nil
	case order >= PageShift && order <= MaxRingOrder:
		return ringPlace{pages: 1 << (order - PageShift)}, nil
	}
	return ringPlace{}, fmt.Errorf("vchan: ring order %d outside %d..%d: %w", order, SmallRingOrder, MaxRingOrder, ErrProtocol)
}

// Orders is the pair of ring orders of one vchan: Left carries client to
// server, Right carries server to client.
type Orders struct {
	Left, Right int
}

// ChooseOrders returns the ring orders libxenvchan_server_init picks for a
// server that wants to read at least readMin bytes (left ring) and write at
// least writeMin bytes (right ring) without blocking. Rings are at least one
// page unless both fit inside the shared page, which saves grants: one ring
// then gets the 1 KiB slot and the other the 2 KiB slot, or the one that fits
// in 2 KiB gets that slot.
func ChooseOrders(readMin, writeMin int) (Orders, error) {
	if readMin < 0 || writeMin < 0 || readMin > MaxRingSize || writeMin > MaxRingSize {
		return Orders{}, fmt.Errorf("vchan: ring sizes %d/%d outside 0..%d bytes: ask for less", readMin, writeMin, MaxRingSize)
	}
	o := Orders{Left: minOrder(readMin), Right: minOrder(writeMin)}
	const small, large = 1 << SmallRingOrder, 1 << LargeRingOrder
	switch {
	case readMin <= small && writeMin <= large:
		o = Orders{Left: SmallRingOrder, Right: LargeRingOrder}
	case readMin <= large && writeMin <= small:
		o = Orders{Left: LargeRingOrder, Right: SmallRingOrder}
	case readMin <= large:
		o.Left = LargeRingOrder
	case writeMin <= large:
		o.Right = LargeRingOrder
	}
	return o, nil
}

// minOrder is the smallest page-or-larger order holding size bytes.
func minOrder(size int) int {
	o := PageShift
	for size > 1<<o {
		o++
	}
	return o
}

// layout is the validated geometry of a shared page: both ring places and
// the extent of the grant array.
type layout struct {
	orders      Orders
	left, right ringPlace
}

// grantCount is the number of grant refs in the shared page's array.
func (l layout) grantCount() int { return l.left.pages + l.right.pages }

// checkLayout validates a pair of orders as a client must before trusting a
// server's page: each order in range, the two in-page rings not overlapping,
// and the grant array ending before any in-page ring and inside the page.
func checkLayout(o Orders) (layout, error) {
	l := layout{orders: o}
	var err error
	if l.left, err = placeOf(o.Left); err != nil {
		return layout{}, fmt.Errorf("vchan: left ring: %w", err)
	}
	if l.right, err = placeOf(o.Right); err != nil {
		return layout{}, fmt.Errorf("vchan: right ring: %w", err)
	}
	if l.left.inPage && l.right.inPage && o.Left == o.Right {
		return layout{}, fmt.Errorf("vchan: both rings have in-page order %d and would overlap: %w", o.Left, ErrProtocol)
	}
	limit := PageSize
	for _, p := range []ringPlace{l.left, l.right} {
		if p.inPage && p.offset < limit {
			limit = p.offset
		}
	}
	if end := OffsetGrants + GrantRefSize*l.grantCount(); end > limit {
		return layout{}, fmt.Errorf("vchan: orders %d/%d need grant refs up to byte %d, past %d: %w", o.Left, o.Right, end, limit, ErrProtocol)
	}
	return l, nil
}
