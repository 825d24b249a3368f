package nat

import (
	"encoding/binary"

	"github.com/unikgo/unikgo/services/packet"
)

// addrField returns the bytes of a as they appear in an IP header of the
// packet's family (4 or 16 bytes).
func addrField(a *packet.Addr, v4 bool) []byte {
	if v4 {
		return a[12:16]
	}
	return a[:]
}

// setAddr writes a into the source or destination field of the IP header at
// the start of l3, updating the IPv4 header checksum.
func setAddr(l3 []byte, v4, src bool, a packet.Addr) {
	switch {
	case v4 && src:
		packet.IPv4(l3).SetSrc(a.As4())
	case v4:
		packet.IPv4(l3).SetDst(a.As4())
	case src:
		packet.IPv6(l3).SetSrc(a)
	default:
		packet.IPv6(l3).SetDst(a)
	}
}

// rewriteOuter replaces the source (src) or destination address of the
// packet and, when withPort, the matching port or ICMP echo identifier,
// updating the transport checksum incrementally (its pseudo header covers
// the address, except for ICMPv4).
func rewriteOuter(frame []byte, p *packet.Packet, src bool, a packet.Addr, port uint16, withPort bool) {
	v4 := p.IsIPv4()
	old := p.Tuple.Dst
	if src {
		old = p.Tuple.Src
	}
	oldB, newB := addrField(&old, v4), addrField(&a, v4)
	if withPort {
		seg := frame[p.L4Off:p.L3End]
		switch p.Tuple.Proto {
		case packet.ProtoTCP:
			tcp := packet.TCP(seg)
			tcp.SetChecksum(packet.UpdateChecksumBytes(tcp.Checksum(), oldB, newB))
			if src {
				tcp.SetSrcPort(port)
			} else {
				tcp.SetDstPort(port)
			}
		case packet.ProtoUDP:
			u := packet.UDP(seg)
			u.UpdateChecksum(packet.UpdateChecksumBytes(u.Checksum(), oldB, newB))
			if src {
				u.SetSrcPort(port)
			} else {
				u.SetDstPort(port)
			}
		case packet.ProtoICMPv6:
			c := packet.ICMP(seg)
			c.SetChecksum(packet.UpdateChecksumBytes(c.Checksum(), oldB, newB))
			c.SetID(port)
		case packet.ProtoICMPv4:
			packet.ICMP(seg).SetID(port)
		}
	}
	setAddr(frame[p.L3Off:p.L3End], v4, src, a)
}

// Offsets within the first 8 bytes of a quoted transport header.
const (
	quotedSrcPortOff = 0
	quotedDstPortOff = 2
)

// rewriteInner replaces the source (src) or destination address and port of
// the packet quoted in an ICMP error, keeping the quote's own checksums
// consistent (IPv4 header, and the transport checksum when the quote
// reaches it), so the client's stack matches it against its own socket.
func rewriteInner(frame []byte, p *packet.Packet, src bool, a packet.Addr, port uint16) {
	in := &p.Inner
	v4 := p.IsIPv4()
	old := in.Tuple.Dst
	portOff := quotedDstPortOff
	if src {
		old, portOff = in.Tuple.Src, quotedSrcPortOff
	}
	oldB, newB := addrField(&old, v4), addrField(&a, v4)
	l4 := frame[in.L4Off:p.L3End] // Parse guarantees at least 8 bytes
	switch in.Tuple.Proto {
	case packet.ProtoTCP:
		rewritePort(l4, portOff, packet.TCPChecksumOff, oldB, newB, port, false)
	case packet.ProtoUDP:
		rewritePort(l4, portOff, packet.UDPChecksumOff, oldB, newB, port, true)
	case packet.ProtoICMPv6:
		c := packet.ICMP(l4)
		c.SetChecksum(packet.UpdateChecksumBytes(c.Checksum(), oldB, newB))
		c.SetID(port)
	case packet.ProtoICMPv4:
		packet.ICMP(l4).SetID(port)
	}
	setAddr(frame[in.L3Off:p.L3End], v4, src, a)
}

// rewritePort writes port at portOff of a possibly truncated transport
// header and updates its checksum at csumOff if the quote includes it. For
// UDP a zero checksum means none and stays zero.
func rewritePort(l4 []byte, portOff, csumOff int, oldAddr, newAddr []byte, port uint16, udp bool) {
	oldPort := binary.BigEndian.Uint16(l4[portOff:])
	binary.BigEndian.PutUint16(l4[portOff:], port)
	if len(l4) < csumOff+2 {
		return
	}
	c := binary.BigEndian.Uint16(l4[csumOff:])
	if udp && c == 0 {
		return
	}
	c = packet.UpdateChecksumBytes(c, oldAddr, newAddr)
	c = packet.UpdateChecksum(c, oldPort, port)
	if udp && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
}

// recomputeICMP recomputes an ICMP error's checksum after its quote and
// addresses changed. The message is at most one MTU and errors are rare, so
// a full sum is simpler than tracking every incremental change.
func recomputeICMP(frame []byte, p *packet.Packet) {
	c := packet.ICMP(frame[p.L4Off:p.L3End])
	c.SetChecksum(0)
	var acc uint32
	if p.IsIPv6() {
		ip := packet.IPv6(frame[p.L3Off:p.L3End])
		acc = packet.PseudoHeaderSum(packet.ProtoICMPv6, ip.Src(), ip.Dst(), len(c))
	}
	c.SetChecksum(packet.Finish(packet.Sum(c, acc)))
}
