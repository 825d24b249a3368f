package vchan

import (
	"fmt"
	"math/bits"
)

// ringData is the byte area of one ring. A ring inside the shared page is
// one segment; a ring on granted pages is one segment per page, because the
// platform need not map the pages contiguously.
type ringData struct {
	segs     [][]byte
	segShift uint   // log2 of each segment's length
	size     uint32 // total bytes, a power of two
}

// newRingData checks that segs form a ring of 1<<order bytes made of equal,
// power-of-two segments.
func newRingData(order int, segs [][]byte) (ringData, error) {
	if len(segs) == 0 || bits.OnesCount(uint(len(segs))) != 1 || bits.TrailingZeros(uint(len(segs))) > order {
		return ringData{}, fmt.Errorf("vchan: ring of order %d given %d segments, want a power of two up to %d", order, len(segs), 1<<order)
	}
	segShift := uint(order - bits.TrailingZeros(uint(len(segs))))
	own := make([][]byte, len(segs))
	for i, s := range segs {
		if len(s) < 1<<segShift {
			return ringData{}, fmt.Errorf("vchan: ring of order %d: segment %d is %d bytes, want %d", order, i, len(s), 1<<segShift)
		}
		own[i] = s[: 1<<segShift : 1<<segShift]
	}
	return ringData{segs: own, segShift: segShift, size: 1 << order}, nil
}

// copyOut copies len(dst) bytes starting at ring position pos into dst.
// len(dst) must not exceed the ring size.
func (r *ringData) copyOut(dst []byte, pos uint32) {
	mask := r.size - 1
	segMask := uint32(1)<<r.segShift - 1
	for len(dst) > 0 {
		p := pos & mask
		n := copy(dst, r.segs[p>>r.segShift][p&segMask:])
		dst = dst[n:]
		pos += uint32(n)
	}
}

// copyIn copies src into the ring starting at position pos.
// len(src) must not exceed the ring size.
func (r *ringData) copyIn(pos uint32, src []byte) {
	mask := r.size - 1
	segMask := uint32(1)<<r.segShift - 1
	for len(src) > 0 {
		p := pos & mask
		n := copy(r.segs[p>>r.segShift][p&segMask:], src)
		src = src[n:]
		pos += uint32(n)
	}
}

// consumer is the reading end of one ring. It keeps its own copy of the
// consumer index: the shared copy is only published for the peer, and a
// peer that rewrites it is caught rather than believed.
type consumer struct {
	idx  *ringIndex
	data ringData
	cons uint32
	name string // "left" or "right", for errors
}

// ready returns how many bytes the producer has made available. The
// producer index is loaded once (an acquire: data reads come after it) and
// checked against the ring size.
func (c *consumer) ready() (uint32, error) {
	prod := c.idx.prod.Load()
	if shared := c.idx.cons.Load(); shared != c.cons {
		return 0, fmt.Errorf("vchan: peer rewrote our %s ring consumer index from %d to %d: %w", c.name, c.cons, shared, ErrProtocol)
	}
	n := prod - c.cons
	if n > c.data.size {
		return 0, fmt.Errorf("vchan: peer's %s ring producer index %d is %d bytes ahead of consumer %d in a %d-byte ring: %w", c.name, prod, n, c.cons, c.data.size, ErrProtocol)
	}
	return n, nil
}

// consume copies len(dst) bytes, which ready must have reported, and then
// publishes the new consumer index (a release: the copy happens before it).
func (c *consumer) consume(dst []byte) {
	c.data.copyOut(dst, c.cons)
	c.cons += uint32(len(dst))
	c.idx.cons.Store(c.cons)
}

// producer is the writing end of one ring, with its own copy of the
// producer index for the same reason as consumer.
type producer struct {
	idx  *ringIndex
	data ringData
	prod uint32
	name string
}

// space returns how many bytes may be written. The consumer index is loaded
// once and checked: it may trail prod by at most the ring size and never
// run ahead of it.
func (p *producer) space() (uint32, error) {
	cons := p.idx.cons.Load()
	if shared := p.idx.prod.Load(); shared != p.prod {
		return 0, fmt.Errorf("vchan: peer rewrote our %s ring producer index from %d to %d: %w", p.name, p.prod, shared, ErrProtocol)
	}
	used := p.prod - cons
	if used > p.data.size {
		return 0, fmt.Errorf("vchan: peer's %s ring consumer index %d is inconsistent with producer %d in a %d-byte ring: %w", p.name, cons, p.prod, p.data.size, ErrProtocol)
	}
	return p.data.size - used, nil
}

// produce copies src, which space must have allowed, and then publishes the
// new producer index (a release: the data is in place before the peer can
// see it).
func (p *producer) produce(src []byte) {
	p.data.copyIn(p.prod, src)
	p.prod += uint32(len(src))
	p.idx.prod.Store(p.prod)
}
