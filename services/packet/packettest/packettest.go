// Package packettest builds well-formed Ethernet frames for tests and fuzz
// seeds, and checks their checksums with a deliberately naive
// implementation that shares no code with package packet, so tests of
// in-place rewriting compare against an independent recompute.
package packettest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Fixed test hardware addresses.
var (
	SrcMAC = [6]byte{0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x01}
	DstMAC = [6]byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// Protocol numbers used by the builders (kept local so this package does not
// depend on the package under test).
const (
	protoICMPv4 = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Checksum is the RFC 1071 checksum computed 16 bits at a time.
func Checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
	}
	return ^uint16(s)
}

func pseudo(src, dst netip.Addr, proto uint8, length int) []byte {
	var p []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		p = append(append(p, s[:]...), d[:]...)
		p = append(p, 0, proto, byte(length>>8), byte(length))
	} else {
		s, d := src.As16(), dst.As16()
		p = append(append(p, s[:]...), d[:]...)
		p = binary.BigEndian.AppendUint32(p, uint32(length))
		p = append(p, 0, 0, 0, proto)
	}
	return p
}

func l4Checksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	if proto == protoICMPv4 {
		return Checksum(seg)
	}
	return Checksum(append(pseudo(src, dst, proto, len(seg)), seg...))
}

// TCP returns a TCP segment (20-byte header) with a valid checksum.
func TCP(src, dst netip.Addr, sport, dport uint16, flags uint8, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	binary.BigEndian.PutUint32(b[8:], 0x0a0b0c0d)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 64240)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[16:], l4Checksum(src, dst, protoTCP, b))
	return b
}

// UDP returns a UDP datagram with a valid checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	c := l4Checksum(src, dst, protoUDP, b)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// ICMPProto returns the ICMP protocol number for the address family.
func ICMPProto(a netip.Addr) uint8 {
	if a.Is4() {
		return protoICMPv4
	}
	return protoICMPv6
}

// ICMP returns an ICMP message of the family of src: type, code, the 4-byte
// rest-of-header word, then body; the checksum is valid.
func ICMP(src, dst netip.Addr, typ, code uint8, rest uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[2:], l4Checksum(src, dst, ICMPProto(src), b))
	return b
}

// Echo returns an ICMP echo request or reply (typ) with identifier and
// sequence number.
func Echo(src, dst netip.Addr, typ uint8, id, seq uint16, data []byte) []byte {
	return ICMP(src, dst, typ, 0, uint32(id)<<16|uint32(seq), data)
}

// IP returns an IPv4 (TTL 64, DF, valid header checksum) or IPv6 (hop limit
// 64) packet of the family of src carrying l4.
func IP(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	return IPOpts(src, dst, proto, nil, l4)
}

// IPOpts is IP with extra bytes after the fixed header: IPv4 options (a
// multiple of 4 bytes), or for IPv6 encoded extension headers, in which case
// proto is the fixed header's Next Header (the first extension's type) and
// the last extension names the protocol of l4.
func IPOpts(src, dst netip.Addr, proto uint8, opts, l4 []byte) []byte {
	if src.Is4() {
		hl := 20 + len(opts)
		b := make([]byte, hl, hl+len(l4))
		b[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(b[2:], uint16(hl+len(l4)))
		binary.BigEndian.PutUint16(b[4:], 0x1234)
		binary.BigEndian.PutUint16(b[6:], 0x4000)
		b[8], b[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], opts)
		binary.BigEndian.PutUint16(b[10:], Checksum(b))
		return append(b, l4...)
	}
	b := make([]byte, 40, 40+len(opts)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(opts)+len(l4)))
	b[6], b[7] = proto, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(append(b, opts...), l4...)
}

// ExtHeader encodes a hop-by-hop, routing or destination options header of
// 8*(units+1) bytes (contents zero padded) naming next.
func ExtHeader(next uint8, units int) []byte {
	h := make([]byte, 8*(units+1))
	h[0], h[1] = next, byte(units)
	if len(h) > 2 {
		h[2] = 1 // PadN option covering the rest
		h[3] = byte(len(h) - 4)
	}
	return h
}

// FragHeader encodes an IPv6 fragment header.
func FragHeader(next uint8, offset int, more bool, id uint32) []byte {
	h := make([]byte, 8)
	h[0] = next
	fo := uint16(offset) &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:], fo)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// Ether wraps l3 in an untagged Ethernet II header of the given type.
func Ether(etherType uint16, l3 []byte) []byte {
	b := make([]byte, 14, 14+len(l3))
	copy(b[0:], DstMAC[:])
	copy(b[6:], SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, l3...)
}

// EtherVLAN wraps l3 in an Ethernet header with one 802.1Q tag.
func EtherVLAN(tci, etherType uint16, l3 []byte) []byte {
	b := make([]byte, 18, 18+len(l3))
	copy(b[0:], DstMAC[:])
	copy(b[6:], SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x8100)
	binary.BigEndian.PutUint16(b[14:], tci)
	binary.BigEndian.PutUint16(b[16:], etherType)
	return append(b, l3...)
}

// Frame returns an untagged Ethernet frame carrying an IP packet of the
// family of src.
func Frame(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	return Ether(EtherType(src), IP(src, dst, proto, l4))
}

// EtherType returns 0x0800 or 0x86dd for the family of a.
func EtherType(a netip.Addr) uint16 {
	if a.Is4() {
		return 0x0800
	}
	return 0x86dd
}

// Verify recomputes every checksum of an untagged frame built by this
// package (IPv4 header, TCP/UDP/ICMP, and for ICMP errors the quoted IPv4
// header) and reports the first mismatch. It handles IPv4 options but not
// IPv6 extension headers.
func Verify(frame []byte) error {
	if len(frame) < 14 {
		return fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	l3 := frame[14:]
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		hl := int(l3[0]&0xf) * 4
		if c := Checksum(l3[:hl]); c != 0 {
			return fmt.Errorf("IPv4 header checksum does not verify (residue %#04x)", c)
		}
		tl := int(binary.BigEndian.Uint16(l3[2:]))
		src, dst = netip.AddrFrom4([4]byte(l3[12:])), netip.AddrFrom4([4]byte(l3[16:]))
		proto, l4 = l3[9], l3[hl:tl]
	case 0x86dd:
		src, dst = netip.AddrFrom16([16]byte(l3[8:])), netip.AddrFrom16([16]byte(l3[24:]))
		proto, l4 = l3[6], l3[40:40+int(binary.BigEndian.Uint16(l3[4:]))]
	default:
		return fmt.Errorf("EtherType %#04x is not IP", binary.BigEndian.Uint16(frame[12:]))
	}
	if proto == protoUDP && src.Is4() && binary.BigEndian.Uint16(l4[6:]) == 0 {
		return nil
	}
	var c uint16
	if proto == protoICMPv4 {
		c = Checksum(l4)
	} else {
		c = Checksum(append(pseudo(src, dst, proto, len(l4)), l4...))
	}
	if c != 0 {
		return fmt.Errorf("protocol %d checksum does not verify (residue %#04x)", proto, c)
	}
	if proto == protoICMPv4 && len(l4) >= 28 && l4[0] != 0 && l4[0] != 8 {
		q := l4[8:]
		hl := int(q[0]&0xf) * 4
		if len(q) >= hl {
			if c := Checksum(q[:hl]); c != 0 {
				return fmt.Errorf("quoted IPv4 header checksum does not verify (residue %#04x)", c)
			}
		}
	}
	return nil
}

// RoutingHeader encodes an 8-byte IPv6 routing header (type 4, segment
// routing, without segment list) naming next, with the given Segments Left.
func RoutingHeader(next, segmentsLeft uint8) []byte {
	return []byte{next, 0, 4, segmentsLeft, 0, 0, 0, 0}
}
