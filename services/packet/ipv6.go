package packet

import "encoding/binary"

// IPv6 header layout (RFC 8200 section 3) and the extension headers this
// package walks (section 4).
const (
	IPv6HeaderSize        = 40
	ipv6VerOff            = 0
	ipv6PayloadLenOff     = 4
	ipv6NextHeaderOff     = 6
	ipv6HopLimitOff       = 7
	ipv6SrcOff            = 8
	ipv6DstOff            = 24
	IPv6AddrSize          = 16
	ipv6ExtUnit           = 8 // Hdr Ext Len counts 8-octet units beyond the first 8
	ipv6ExtMinSize        = 8
	ipv6FragHeaderSize    = 8
	ipv6FragOffOff        = 2 // offset(13 bits) res(2) M(1)
	ipv6FragIDOff         = 4
	ipv6FragOffMask       = 0xfff8
	ipv6FragMF            = 0x0001
	ipv6RoutingSegLeftOff = 3 // next(1) len(1) type(1) segments-left(1)

	// MaxIPv6ExtHeaders bounds the extension header walk. RFC 8200 section 4.1
	// allows each header type once (destination options twice); anything
	// longer is an attack on parsers, not a real packet.
	MaxIPv6ExtHeaders = 8
)

// Fragment tells whether an IP packet is a fragment and which kind. Only a
// first fragment (or an unfragmented packet) carries transport ports.
type Fragment uint8

// Fragment kinds.
const (
	NotFragment   Fragment = iota
	FirstFragment          // offset 0 with more fragments following
	LaterFragment          // offset > 0: no transport header
)

// FragmentInfo describes the fragment header of an IPv4 or IPv6 packet.
type FragmentInfo struct {
	Kind   Fragment
	ID     uint32 // IPv4 identification (16 bits) or IPv6 fragment identification
	Offset int    // in bytes
	More   bool
}

// IPv6 is a view of an IPv6 packet (fixed header, extension headers and
// payload, without link padding), obtained from ParseIPv6.
type IPv6 []byte

// ParseIPv6 checks the fixed header at the start of b (version, payload length,
// addresses) and returns a view cut to 40 + payload length.
func ParseIPv6(b []byte) (IPv6, error) {
	if err := checkIPv6Fixed(b); err != nil {
		return nil, err
	}
	end := IPv6HeaderSize + int(binary.BigEndian.Uint16(b[ipv6PayloadLenOff:]))
	if end > len(b) {
		return nil, errAt(LayerIPv6, KindTruncated)
	}
	return IPv6(b[:end]), nil
}

func checkIPv6Fixed(b []byte) error {
	if len(b) < IPv6HeaderSize {
		return errAt(LayerIPv6, KindTruncated)
	}
	if b[ipv6VerOff]>>4 != 6 {
		return errAt(LayerIPv6, KindBadVersion)
	}
	// IPv4-mapped addresses must not appear in IPv6 headers (RFC 4291
	// section 2.5.5.2); rejecting them keeps Addr's mapped form unambiguous.
	if Addr(b[ipv6SrcOff:]).Is4() || Addr(b[ipv6DstOff:]).Is4() {
		return errAt(LayerIPv6, KindBadAddress)
	}
	return nil
}

// PayloadLen returns the payload length field.
func (ip IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(ip[ipv6PayloadLenOff:])) }

// TrafficClass returns the traffic class byte.
func (ip IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(ip[ipv6VerOff:]) >> 4)
}

// FlowLabel returns the 20-bit flow label.
func (ip IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(ip[ipv6VerOff:]) & 0xfffff }

// NextHeader returns the Next Header field of the fixed header.
func (ip IPv6) NextHeader() uint8 { return ip[ipv6NextHeaderOff] }

// HopLimit returns the hop limit.
func (ip IPv6) HopLimit() uint8 { return ip[ipv6HopLimitOff] }

// SetHopLimit sets the hop limit (IPv6 has no header checksum).
func (ip IPv6) SetHopLimit(h uint8) { ip[ipv6HopLimitOff] = h }

// Src returns the source address.
func (ip IPv6) Src() Addr { return Addr(ip[ipv6SrcOff:]) }

// Dst returns the destination address.
func (ip IPv6) Dst() Addr { return Addr(ip[ipv6DstOff:]) }

// SetSrc rewrites the source address; the transport checksum (whose pseudo
// header covers it) is the caller's to update.
func (ip IPv6) SetSrc(a Addr) { copy(ip[ipv6SrcOff:], a[:]) }

// SetDst rewrites the destination address.
func (ip IPv6) SetDst(a Addr) { copy(ip[ipv6DstOff:], a[:]) }

// IPv6Ext is what the extension header walk finds.
type IPv6Ext struct {
	Proto        uint8        // upper-layer protocol (Next Header of the last extension)
	Off          int          // offset of the upper-layer header (for a later fragment, of its data)
	Frag         FragmentInfo // from a fragment header, if any
	SegmentsLeft uint8        // from a routing header, if any: nonzero means Dst is not the final destination
}

// Extensions walks the extension headers after the fixed header.
func (ip IPv6) Extensions() (IPv6Ext, error) {
	return walkIPv6Ext(ip, ip.NextHeader())
}

// walkIPv6Ext follows the Next Header chain starting after the fixed header
// of b. The loop visits at most MaxIPv6ExtHeaders headers and each step
// advances at least 8 bytes, so crafted chains cannot make it spin.
func walkIPv6Ext(b []byte, next uint8) (IPv6Ext, error) {
	x := IPv6Ext{Off: IPv6HeaderSize}
	for n := 0; ; n++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts, ProtoFragment:
		default:
			x.Proto = next
			return x, nil
		}
		if n == MaxIPv6ExtHeaders {
			return IPv6Ext{}, errAt(LayerIPv6, KindBadExtension)
		}
		// Hop-by-hop options may only follow the fixed header (RFC 8200 4.3).
		if next == ProtoHopByHop && n != 0 {
			return IPv6Ext{}, errAt(LayerIPv6, KindBadExtension)
		}
		if len(b)-x.Off < ipv6ExtMinSize {
			return IPv6Ext{}, errAt(LayerIPv6, KindTruncated)
		}
		h := b[x.Off:]
		if next == ProtoFragment {
			if x.Frag.Kind != NotFragment {
				return IPv6Ext{}, errAt(LayerIPv6, KindBadExtension)
			}
			fo := binary.BigEndian.Uint16(h[ipv6FragOffOff:])
			x.Frag = FragmentInfo{
				ID:     binary.BigEndian.Uint32(h[ipv6FragIDOff:]),
				Offset: int(fo & ipv6FragOffMask),
				More:   fo&ipv6FragMF != 0,
			}
			next = h[0]
			x.Off += ipv6FragHeaderSize
			switch {
			case x.Frag.Offset > 0:
				x.Frag.Kind = LaterFragment
				x.Proto = next
				return x, nil
			case x.Frag.More:
				x.Frag.Kind = FirstFragment
			default:
				// An atomic fragment (offset 0, no M) is a whole packet
				// (RFC 6946); keep NotFragment so it is treated as one.
			}
			continue
		}
		l := (int(h[1]) + 1) * ipv6ExtUnit
		if l > len(h) {
			return IPv6Ext{}, errAt(LayerIPv6, KindTruncated)
		}
		if next == ProtoRouting {
			x.SegmentsLeft = h[ipv6RoutingSegLeftOff]
		}
		next = h[0]
		x.Off += l
	}
}
