package netfront

import (
	"errors"
	"fmt"

	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// Why a received packet is dropped (wrapped by rxScan.bad).
var (
	// errRxStatus: the backend answered a slot with an error status.
	errRxStatus = errors.New("netfront: the backend reported a receive error")
	// errRxMalformed: a response breaks the protocol (id, offset, size,
	// flags, chain, extra info).
	errRxMalformed = errors.New("netfront: malformed receive response")
	// errRxSize: a frame shorter than an Ethernet header or longer than
	// the MTU allows.
	errRxSize = errors.New("netfront: received frame size out of range")
)

// maxExtras is how many extra info slots a packet can carry: one of each
// type.
const maxExtras = ExtraTypeMax - 1

// maxRxSlots bounds the slots one packet may take: extra info and data.
const maxRxSlots = SlotsMin + maxExtras

// rxFrag is a data slot of a received packet: its place among the
// packet's slots and the bytes it holds.
type rxFrag struct {
	slot     uint8
	off, len uint16
}

// rxScan is one received packet as its responses describe it.
type rxScan struct {
	// slots is how many responses the packet takes (data and extra
	// info): to consume if complete, seen so far if not.
	slots    int
	complete bool // false: the packet's last response is not there yet
	bad      error
	length   int
	meta     netdev.Meta
	nfrag    int // frag[:nfrag] are the data slots holding bytes
	frag     [SlotsMin]rxFrag
}

// scanRx reads the packet whose first response is raw[0], at ring index
// base. raw are copies of the responses available, in ring order. A
// packet is a response, then the extra info slots it announces
// (RxExtraInfo, chained by ExtraFlagMore), then the responses its
// RxMoreData flags chain, at most SlotsMin data slots. Each data response
// must carry the id of the request at its ring index (the driver uses the
// index's low 16 bits), flags the driver negotiated (RxDataValidated,
// RxMoreData, RxExtraInfo and, with offload, RxCsumBlank on the first
// only), and a non-negative status with offset+status within the page;
// the frame must be an Ethernet header to maxFrame bytes. Without offload
// no extra info type was negotiated, so a packet that has some is
// dropped; its slots are still counted so the next packet is found. With
// offload one GSO extra is allowed (type TCPv4 or TCPv6, a non-zero size,
// as Linux netfront's xennet_set_skb_gso checks), and the frame may then
// be up to MaxRxGSOFrame bytes; the first slot's checksum flags become
// the packet's Meta.
func scanRx(raw [][RxResponseSize]byte, base uint32, maxFrame int, offload bool) (s rxScan) {
	setBad := func(err error, format string, args ...any) {
		if s.bad == nil {
			s.bad = fmt.Errorf("%w: %s", err, fmt.Sprintf(format, args...))
		}
	}
	if len(raw) == 0 {
		return s
	}
	first := ParseRxResponse(raw[0][:])
	next := 1 // the slot after the current data slot
	if first.Flags&RxExtraInfo != 0 {
		for j := 1; ; j++ {
			if j >= len(raw) {
				s.slots = j
				return s
			}
			if j > maxExtras {
				setBad(errRxMalformed, "more than %d extra info slots", maxExtras)
				s.slots, s.complete = j, true
				return s
			}
			e := ParseExtra(raw[j][:])
			switch {
			case e.Type == 0 || e.Type >= ExtraTypeMax:
				setBad(errRxMalformed, "extra info of unknown type %d", e.Type)
			case e.Type != ExtraGSO || !offload:
				setBad(errRxMalformed, "extra info of type %d, which was not negotiated", e.Type)
			case s.meta.GSOType != netdev.GSONone:
				setBad(errRxMalformed, "a second GSO extra info")
			case e.GSOSize == 0:
				setBad(errRxMalformed, "GSO extra info with size 0")
			case e.GSOType == GSOTypeTCPv4:
				s.meta.GSOType, s.meta.GSOSize = netdev.GSOTCPv4, e.GSOSize
			case e.GSOType == GSOTypeTCPv6:
				s.meta.GSOType, s.meta.GSOSize = netdev.GSOTCPv6, e.GSOSize
			default:
				setBad(errRxMalformed, "GSO extra info of type %d", e.GSOType)
			}
			if e.Flags&ExtraFlagMore == 0 {
				next = j + 1
				break
			}
		}
	}
	idx, r, ndata := 0, first, 0
	for {
		if ndata == SlotsMin {
			setBad(errRxMalformed, "more than %d data slots", SlotsMin)
			s.slots, s.complete = idx+1, true
			return s
		}
		if want := uint16(base + uint32(idx)); r.ID != want {
			setBad(errRxMalformed, "response at ring index %d has id %d, want %d", base+uint32(idx), r.ID, want)
		}
		known := uint16(RxDataValidated | RxMoreData | RxExtraInfo)
		if offload && idx == 0 {
			known |= RxCsumBlank
		}
		switch {
		case r.Flags&^known != 0:
			setBad(errRxMalformed, "flags %#x at slot %d (offloads negotiated: %v)", r.Flags, idx, offload)
		case idx != 0 && r.Flags&RxExtraInfo != 0:
			setBad(errRxMalformed, "extra info flag past the first slot")
		}
		if offload && idx == 0 {
			s.meta.NeedsCsum = r.Flags&RxCsumBlank != 0
			s.meta.CsumValidated = r.Flags&RxDataValidated != 0
		}
		switch {
		case r.Status < 0:
			setBad(errRxStatus, "status %v", r.Status)
		case int(r.Offset)+int(r.Status) > PageSize:
			setBad(errRxMalformed, "%d bytes at offset %d run past the page", r.Status, r.Offset)
		case r.Status > 0:
			s.frag[s.nfrag] = rxFrag{slot: uint8(idx), off: r.Offset, len: uint16(r.Status)}
			s.length += int(r.Status)
			s.nfrag++
		}
		ndata++
		if r.Flags&RxMoreData == 0 {
			// A one-slot packet ends after its extra info slots.
			s.slots, s.complete = max(idx+1, next), true
			break
		}
		if idx == 0 {
			idx = next
		} else {
			idx++
		}
		if idx >= len(raw) {
			s.slots = idx
			return s
		}
		r = ParseRxResponse(raw[idx][:])
	}
	limit := maxFrame
	if s.meta.GSOType != netdev.GSONone {
		limit = MaxRxGSOFrame
	}
	if s.bad == nil && (s.length < EthHeader || s.length > limit) {
		setBad(errRxSize, "%d-byte frame, want %d to %d", s.length, EthHeader, limit)
	}
	return s
}

// drainRxLocked takes every complete packet on c's rx ring: its grants
// are revoked and it is queued for Receive, or dropped and counted. A
// packet whose last slot is not there yet waits for it (the backend is
// asked for an event when it comes), unless it cannot come. With refill,
// freed pages are posted again as it goes.
func (n *NIC) drainRxLocked(c *conn, refill bool) error {
	for {
		avail, err := c.rx.Responses()
		if err != nil {
			return err
		}
		for i := range avail {
			c.rx.Response(i, c.rxRaw[i][:])
		}
		done := 0
		for done < avail {
			s := scanRx(c.rxRaw[done:avail], c.rx.ConsumedIndex(), n.maxFrame, c.offload)
			if !s.complete {
				// The rest of the packet can only come on requests the
				// backend has not used yet; if there are none even after
				// a refill, or the packet is already longer than any can
				// be, it is broken.
				if refill {
					n.refillLocked(c)
				}
				if s.slots < maxRxSlots && c.rx.Outstanding() > avail-done {
					break
				}
				s.complete = true
				s.bad = fmt.Errorf("%w: a %d-slot chain the backend cannot finish", errRxMalformed, s.slots)
			}
			n.takeRxLocked(c, c.rx.ConsumedIndex(), &s)
			c.rx.Consume(s.slots)
			done += s.slots
		}
		if refill {
			n.refillLocked(c)
		}
		if !c.rx.Await(avail - done + 1) {
			return nil
		}
	}
}

// takeRxLocked ends the grants of the packet's slots and queues the frame
// for Receive, or drops it. A page the backend still holds is
// quarantined, and its packet dropped: its bytes may still change.
func (n *NIC) takeRxLocked(c *conn, base uint32, s *rxScan) {
	mask := uint32(len(c.rxPosted) - 1)
	var p rxPacket
	data := uint64(0) // bit i: slot i holds data of a good frame
	if s.bad == nil {
		for _, f := range s.frag[:s.nfrag] {
			if f.len > 0 {
				data |= 1 << f.slot
			}
		}
	}
	bad := s.bad
	for i := 0; i < s.slots; i++ {
		post := c.rxPosted[(base+uint32(i))&mask]
		if !n.revokeRxLocked(int(post.buf), post.ref) {
			if bad == nil {
				bad = fmt.Errorf("%w: the backend still holds a receive page", errRxMalformed)
			}
			data &^= 1 << i
			continue
		}
		if data&(1<<i) == 0 {
			n.putRxLocked(int(post.buf))
		}
	}
	if bad != nil {
		if data != 0 {
			for i := 0; i < s.slots; i++ {
				if data&(1<<i) != 0 {
					n.putRxLocked(int(c.rxPosted[(base+uint32(i))&mask].buf))
				}
			}
		}
		switch {
		case errors.Is(bad, errRxStatus):
			n.stats.RxErrors++
		case errors.Is(bad, errRxSize):
			n.stats.RxOversize++
		default:
			n.stats.RxBad++
		}
		return
	}
	for _, f := range s.frag[:s.nfrag] {
		if f.len == 0 {
			continue
		}
		buf := c.rxPosted[(base+uint32(f.slot))&mask].buf
		n.rxState[buf] = rxReady
		p.seg[p.n] = rxSeg{buf: buf, off: f.off, len: f.len}
		p.n++
	}
	p.length = s.length
	p.meta = s.meta
	select {
	case n.rxReady <- p:
	default:
		// Cannot happen: the queue holds as many packets as there are
		// pages. Drop rather than block the ring.
		for _, sg := range p.seg[:p.n] {
			n.putRxLocked(int(sg.buf))
		}
		n.stats.RxDropped++
	}
}

// revokeRxLocked ends the grant of receive page buf. If the backend still
// holds it, the page is quarantined and revokeRxLocked reports false;
// otherwise the caller owns the page (and puts it back or queues it).
func (n *NIC) revokeRxLocked(buf int, ref gnttab.Ref) bool {
	if err := n.cfg.Grants.Revoke(ref); err != nil {
		n.rxState[buf] = rxQuarantined
		n.rxQuar = append(n.rxQuar, quarantined{buf, ref})
		return false
	}
	return true
}

// putRxLocked returns receive page buf, which is not granted, to the free
// list. The rx state of a page on the free list is rxFree.
func (n *NIC) putRxLocked(buf int) {
	n.rxState[buf] = rxFree
	n.rxFree = append(n.rxFree, uint16(buf))
}

// refillLocked posts free receive pages on c's rx ring, each granted
// writable to the backend for one response, and notifies the backend if
// it asked to be.
func (n *NIC) refillLocked(c *conn) {
	if c.dead {
		return
	}
	c.starved = false
	mask := uint32(len(c.rxPosted) - 1)
	posted := false
	for c.rx.Free() > 0 && len(n.rxFree) > 0 {
		buf := n.rxFree[len(n.rxFree)-1]
		ref, err := n.cfg.Grants.Grant(n.grantDom(), n.rxPages.frame(int(buf)), false)
		if err != nil {
			c.starved = true // retried by poll
			break
		}
		idx := c.rx.ProducedIndex()
		slot, err := c.rx.NextRequest()
		if err != nil { // Free was checked
			n.cfg.Grants.Revoke(ref)
			break
		}
		n.rxFree = n.rxFree[:len(n.rxFree)-1]
		req := RxRequest{ID: uint16(idx), Gref: uint32(ref)}
		req.Put(slot)
		c.rxPosted[idx&mask] = rxPost{buf: buf, ref: ref}
		n.rxState[buf] = rxPosted
		posted = true
	}
	if posted && c.rx.Push() {
		c.ch.Notify()
	}
}

// retryQuarantineLocked revokes quarantined grants again; pages the
// backend let go of are free again.
func (n *NIC) retryQuarantineLocked() {
	if len(n.rxQuar) > 0 {
		q := n.rxQuar
		n.rxQuar = nil
		for _, g := range q {
			if n.revokeRxLocked(g.buf, g.ref) {
				n.putRxLocked(g.buf)
			}
		}
	}
	if len(n.txQuar) > 0 {
		q := n.txQuar
		n.txQuar = nil
		freed := false
		for _, g := range q {
			n.tx[g.buf].state = txInflight
			n.tx[g.buf].ref = g.ref
			freed = n.releaseTxLocked(g.buf) || freed
		}
		if freed {
			n.wakeTxLocked()
		}
	}
}
