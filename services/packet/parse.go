package packet

// Packet is what Parse learns about a frame. All offsets are relative to the
// start of the frame. Parse overwrites every field, so one Packet can be
// reused for every frame without allocating.
type Packet struct {
	EtherType uint16 // after the VLAN tag, if any
	Tagged    bool   // the frame carries one 802.1Q tag
	VLANTCI   uint16 // the tag's control information when Tagged

	L3Off int // start of the ARP or IP header
	L3End int // end of the ARP message or IP packet (excluding link padding)

	// L4Off is where the upper-layer protocol starts (after IPv4 options or
	// IPv6 extension headers; for a later fragment, where its data starts).
	// HasL4 is true when that header was parsed (TCP, UDP, ICMPv4, ICMPv6 in
	// an unfragmented packet or a first fragment), and PayloadOff then points
	// past it.
	L4Off      int
	PayloadOff int
	HasL4      bool

	// Tuple holds the addresses, protocol and (when HasL4) ports or echo
	// identifier; see Tuple for the ICMP convention.
	Tuple    Tuple
	HopLimit uint8 // IPv4 TTL or IPv6 hop limit
	Frag     FragmentInfo

	// SegmentsLeft is the Segments Left field of an IPv6 routing header
	// (0 without one). Nonzero means Tuple.Dst is an intermediate hop, not
	// the final destination the transport checksum covers.
	SegmentsLeft uint8

	TCPFlags uint8 // TCPFlagSYN, ... for TCP

	ICMPType uint8
	ICMPCode uint8
	ICMPID   uint16 // echo identifier for echo request/reply

	// Inner describes the packet quoted by an ICMP error message.
	Inner Inner
}

// Inner is the offending packet quoted inside an ICMP error. NAT rewrites it
// so that errors about translated flows reach the right client.
type Inner struct {
	Valid    bool  // the message is an ICMP error and its quote parsed
	L3Off    int   // start of the quoted IP header
	L4Off    int   // start of its transport header
	HasPorts bool  // the quote holds ports or an echo identifier in Tuple
	Tuple    Tuple // the quoted packet's own tuple (from the original sender's view)
	ICMPType uint8 // for a quoted ICMP message
}

// IsIPv4 reports whether the frame is an IPv4 packet.
func (p *Packet) IsIPv4() bool { return p.EtherType == EtherTypeIPv4 }

// IsIPv6 reports whether the frame is an IPv6 packet.
func (p *Packet) IsIPv6() bool { return p.EtherType == EtherTypeIPv6 }

// Parse parses an Ethernet frame into p. Frames whose EtherType is not ARP,
// IPv4 or IPv6 parse successfully with only the Ethernet fields set. Parse
// verifies the IPv4 header checksum but not transport checksums: the
// endpoints check those, and NAT's incremental updates preserve an error.
func Parse(frame []byte, p *Packet) error {
	*p = Packet{}
	eth, err := ParseEthernet(frame)
	if err != nil {
		return err
	}
	p.EtherType = eth.EtherType()
	p.Tagged = eth.Tagged()
	p.VLANTCI = eth.VLANTCI()
	p.L3Off = eth.HeaderLen()
	switch p.EtherType {
	case EtherTypeARP:
		if _, err := ParseARP(frame[p.L3Off:]); err != nil {
			return err
		}
		p.L3End = p.L3Off + ARPSize
		return nil
	case EtherTypeIPv4:
		return parseIPv4(frame, p)
	case EtherTypeIPv6:
		return parseIPv6(frame, p)
	}
	p.L3End = len(frame)
	return nil
}

func parseIPv4(frame []byte, p *Packet) error {
	ip, err := ParseIPv4(frame[p.L3Off:])
	if err != nil {
		return err
	}
	p.L3End = p.L3Off + len(ip)
	p.L4Off = p.L3Off + ip.HeaderLen()
	p.HopLimit = ip.TTL()
	// Field-by-field stores avoid building and copying a temporary Tuple.
	p.Tuple.Src.set4(ip[ipv4SrcOff:])
	p.Tuple.Dst.set4(ip[ipv4DstOff:])
	p.Tuple.Proto = ip.Protocol()
	if off, more := ip.FragmentOffset(), ip.MoreFragments(); off > 0 || more {
		p.Frag = FragmentInfo{Kind: FirstFragment, ID: uint32(ip.ID()), Offset: off, More: more}
		if off > 0 {
			p.Frag.Kind = LaterFragment
			return nil
		}
	}
	return parseTransport(frame[:p.L3End], p, false)
}

func parseIPv6(frame []byte, p *Packet) error {
	ip, err := ParseIPv6(frame[p.L3Off:])
	if err != nil {
		return err
	}
	p.L3End = p.L3Off + len(ip)
	p.HopLimit = ip.HopLimit()
	x, err := ip.Extensions()
	if err != nil {
		return err
	}
	p.L4Off = p.L3Off + x.Off
	p.Frag = x.Frag
	p.SegmentsLeft = x.SegmentsLeft
	p.Tuple.Src, p.Tuple.Dst, p.Tuple.Proto = ip.Src(), ip.Dst(), x.Proto
	if x.Frag.Kind == LaterFragment {
		return nil
	}
	return parseTransport(frame[:p.L3End], p, true)
}

// parseTransport parses the header at p.L4Off of b (which ends at the end of
// the IP packet).
func parseTransport(b []byte, p *Packet, v6 bool) error {
	l4 := b[p.L4Off:]
	switch {
	case p.Tuple.Proto == ProtoTCP:
		t, err := ParseTCP(l4)
		if err != nil {
			return err
		}
		p.Tuple.SrcPort, p.Tuple.DstPort = t.SrcPort(), t.DstPort()
		p.TCPFlags = t.Flags()
		p.PayloadOff = p.L4Off + t.HeaderLen()
	case p.Tuple.Proto == ProtoUDP:
		u, err := ParseUDP(l4)
		if err != nil {
			return err
		}
		p.Tuple.SrcPort, p.Tuple.DstPort = u.SrcPort(), u.DstPort()
		p.PayloadOff = p.L4Off + UDPHeaderSize
	case p.Tuple.Proto == ProtoICMPv4 && !v6:
		c, err := ParseICMPv4(l4)
		if err != nil {
			return err
		}
		p.PayloadOff = p.L4Off + ICMPHeaderSize
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		switch p.ICMPType {
		case ICMPv4EchoRequest:
			p.ICMPID, p.Tuple.SrcPort = c.ID(), c.ID()
		case ICMPv4EchoReply:
			p.ICMPID, p.Tuple.DstPort = c.ID(), c.ID()
		default:
			if IsICMPv4Error(p.ICMPType) && p.Frag.Kind == NotFragment {
				if err := parseInner(b, p, false); err != nil {
					return err
				}
			}
		}
	case p.Tuple.Proto == ProtoICMPv6 && v6:
		c, err := ParseICMPv6(l4)
		if err != nil {
			return err
		}
		p.PayloadOff = p.L4Off + ICMPHeaderSize
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		switch p.ICMPType {
		case ICMPv6EchoRequest:
			p.ICMPID, p.Tuple.SrcPort = c.ID(), c.ID()
		case ICMPv6EchoReply:
			p.ICMPID, p.Tuple.DstPort = c.ID(), c.ID()
		default:
			if IsICMPv6Error(p.ICMPType) && p.Frag.Kind == NotFragment {
				if err := parseInner(b, p, true); err != nil {
					return err
				}
			}
		}
	default:
		return nil
	}
	p.HasL4 = true
	return nil
}

// parseInner parses the packet quoted after the ICMP error header at
// p.L4Off. The quote is usually cut short, so only the IP header (and IPv6
// extension headers) and the first 8 bytes of the transport header must be
// present; the quoted lengths are not checked against the quote.
func parseInner(b []byte, p *Packet, v6 bool) error {
	in := &p.Inner
	in.L3Off = p.L4Off + ICMPHeaderSize
	q := b[in.L3Off:]
	layer := LayerICMPv4
	var frag Fragment
	if v6 {
		layer = LayerICMPv6
		if err := checkIPv6Fixed(q); err != nil {
			return err
		}
		x, err := walkIPv6Ext(q, q[ipv6NextHeaderOff])
		if err != nil {
			return err
		}
		in.Tuple = Tuple{Src: Addr(q[ipv6SrcOff:]), Dst: Addr(q[ipv6DstOff:]), Proto: x.Proto}
		in.L4Off = in.L3Off + x.Off
		frag = x.Frag.Kind
	} else {
		hl, err := checkIPv4Header(q)
		if err != nil {
			return err
		}
		ip := IPv4(q)
		in.Tuple = Tuple{Src: ip.Src(), Dst: ip.Dst(), Proto: ip.Protocol()}
		in.L4Off = in.L3Off + hl
		if ip.FragmentOffset() > 0 {
			frag = LaterFragment
		}
	}
	in.Valid = true
	if frag == LaterFragment {
		return nil
	}
	l4 := b[in.L4Off:]
	if len(l4) < icmpQuotedTransport {
		return errAt(layer, KindTruncated)
	}
	switch proto := in.Tuple.Proto; {
	case proto == ProtoTCP || proto == ProtoUDP:
		// Source and destination port sit at the same offsets in both.
		in.Tuple.SrcPort, in.Tuple.DstPort = TCP(l4).SrcPort(), TCP(l4).DstPort()
		in.HasPorts = true
	case proto == ProtoICMPv4 && !v6, proto == ProtoICMPv6 && v6:
		c := ICMP(l4)
		in.ICMPType = c.Type()
		req, rep := ICMPv4EchoRequest, ICMPv4EchoReply
		if v6 {
			req, rep = ICMPv6EchoRequest, ICMPv6EchoReply
		}
		switch in.ICMPType {
		case req:
			in.Tuple.SrcPort, in.HasPorts = c.ID(), true
		case rep:
			in.Tuple.DstPort, in.HasPorts = c.ID(), true
		}
	}
	return nil
}

// TransportChecksum computes from scratch the checksum that the transport
// header of a parsed packet should carry. ok is false when the packet has no
// complete transport segment (no L4 header, or a fragment).
func TransportChecksum(frame []byte, p *Packet) (sum uint16, ok bool) {
	if !p.HasL4 || p.Frag.Kind != NotFragment {
		return 0, false
	}
	seg := frame[p.L4Off:p.L3End]
	var csumOff int
	var acc uint32
	switch p.Tuple.Proto {
	case ProtoTCP:
		csumOff = TCPChecksumOff
		acc = PseudoHeaderSum(ProtoTCP, p.Tuple.Src, p.Tuple.Dst, len(seg))
	case ProtoUDP:
		seg = seg[:UDP(seg).Length()]
		csumOff = UDPChecksumOff
		acc = PseudoHeaderSum(ProtoUDP, p.Tuple.Src, p.Tuple.Dst, len(seg))
	case ProtoICMPv4:
		csumOff = ICMPChecksumOff
	case ProtoICMPv6:
		csumOff = ICMPChecksumOff
		acc = PseudoHeaderSum(ProtoICMPv6, p.Tuple.Src, p.Tuple.Dst, len(seg))
	default:
		return 0, false
	}
	acc = Sum(seg[:csumOff], acc)
	acc = Sum(seg[csumOff+2:], acc)
	sum = Finish(acc)
	if sum == 0 && p.Tuple.Proto == ProtoUDP {
		sum = 0xffff
	}
	return sum, true
}

// TransportChecksumValid reports whether the stored transport checksum of a
// parsed packet matches its contents. A zero UDP checksum over IPv4 means
// "none" and is valid. ok is false when it cannot be checked.
func TransportChecksumValid(frame []byte, p *Packet) (valid, ok bool) {
	want, ok := TransportChecksum(frame, p)
	if !ok {
		return false, false
	}
	got := uint16(frame[p.L4Off+checksumOff(p.Tuple.Proto)])<<8 | uint16(frame[p.L4Off+checksumOff(p.Tuple.Proto)+1])
	if p.Tuple.Proto == ProtoUDP && got == 0 && p.IsIPv4() {
		return true, true
	}
	return got == want, true
}

func checksumOff(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return TCPChecksumOff
	case ProtoUDP:
		return UDPChecksumOff
	}
	return ICMPChecksumOff
}
