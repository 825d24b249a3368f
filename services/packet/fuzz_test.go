package packet

import (
	"testing"

	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

// seedFrames returns realistic frames of every kind Parse understands.
func seedFrames() [][]byte {
	quote4 := pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 40000, 53, []byte("q")))
	quote6 := pt.IP(c6, r6, ProtoTCP, pt.TCP(c6, r6, 40001, 443, TCPFlagSYN, nil))
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 1, 0, 0x16, 0x3e, 0, 0, 1, 10, 137, 0, 5, 0, 0, 0, 0, 0, 0, 10, 137, 0, 1}
	return [][]byte{
		pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 40000, 443, TCPFlagSYN, []byte("hello"))),
		pt.Frame(c4, r4, ProtoUDP, pt.UDP(c4, r4, 5353, 53, []byte("query"))),
		pt.Frame(c4, r4, ProtoICMPv4, pt.Echo(c4, r4, ICMPv4EchoRequest, 7, 1, []byte("ping"))),
		pt.Frame(r4, c4, ProtoICMPv4, pt.ICMP(r4, c4, ICMPv4DestUnreach, 3, 0, quote4)),
		pt.EtherVLAN(5, EtherTypeIPv4, pt.IPOpts(c4, r4, ProtoUDP, []byte{1, 1, 7, 7, 4, 0, 0, 0, 0, 0, 0, 0}, pt.UDP(c4, r4, 1, 2, nil))),
		pt.Frame(c6, r6, ProtoTCP, pt.TCP(c6, r6, 40001, 443, TCPFlagSYN|TCPFlagACK, nil)),
		pt.Frame(c6, r6, ProtoUDP, pt.UDP(c6, r6, 546, 547, []byte("dhcp"))),
		pt.Frame(c6, r6, ProtoICMPv6, pt.Echo(c6, r6, ICMPv6EchoRequest, 9, 1, nil)),
		pt.Frame(g6, c6, ProtoICMPv6, pt.ICMP(g6, c6, ICMPv6PacketTooBig, 0, 1280, quote6)),
		pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoHopByHop,
			append(append(pt.ExtHeader(ProtoDestOpts, 0), pt.ExtHeader(ProtoRouting, 1)...), pt.RoutingHeader(ProtoUDP, 1)...),
			pt.UDP(c6, r6, 546, 547, nil))),
		pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoFragment, pt.FragHeader(ProtoUDP, 0, true, 99), pt.UDP(c6, r6, 7, 8, nil))),
		pt.Ether(EtherTypeARP, arp),
	}
}

// addSeeds adds each seed frame cut at the given layer offset.
func addSeeds(f *testing.F, cut func(frame []byte) []byte) {
	for _, fr := range seedFrames() {
		f.Add(cut(fr))
	}
}

func l3Of(frame []byte) []byte {
	e, err := ParseEthernet(frame)
	if err != nil {
		return frame
	}
	return e.Payload()
}

func l4Of(frame []byte) []byte {
	var p Packet
	if Parse(frame, &p) != nil || !p.HasL4 {
		return frame
	}
	return frame[p.L4Off:p.L3End]
}

func FuzzParse(f *testing.F) {
	addSeeds(f, func(b []byte) []byte { return b })
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p, q Packet
		err := Parse(frame, &p)
		if err2 := Parse(frame, &q); err != err2 || p != q {
			t.Fatalf("Parse is not deterministic")
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T, want *Error", err)
			}
			return
		}
		if p.L3Off < 0 || p.L3Off > p.L3End || p.L3End > len(frame) {
			t.Fatalf("L3 [%d,%d) outside frame of %d", p.L3Off, p.L3End, len(frame))
		}
		if p.HasL4 && (p.L4Off < p.L3Off || p.L4Off > p.PayloadOff || p.PayloadOff > p.L3End) {
			t.Fatalf("L4 %d payload %d outside L3 [%d,%d)", p.L4Off, p.PayloadOff, p.L3Off, p.L3End)
		}
		if in := p.Inner; in.Valid && (in.L3Off < p.PayloadOff || in.L4Off < in.L3Off || in.L4Off > p.L3End) {
			t.Fatalf("inner offsets %d/%d outside [%d,%d)", in.L3Off, in.L4Off, p.PayloadOff, p.L3End)
		}
		TransportChecksum(frame, &p)
		TransportChecksumValid(frame, &p)
	})
}

func FuzzEthernet(f *testing.F) {
	addSeeds(f, func(b []byte) []byte { return b })
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEthernet(b)
		if err != nil {
			return
		}
		_, _, _, _ = e.Dst(), e.Src(), e.VLANTCI(), e.EtherType()
		if len(e.Payload())+e.HeaderLen() != len(b) {
			t.Fatalf("header %d + payload %d != frame %d", e.HeaderLen(), len(e.Payload()), len(b))
		}
	})
}

func FuzzARP(f *testing.F) {
	addSeeds(f, l3Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseARP(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP()
	})
}

func FuzzIPv4(f *testing.F) {
	addSeeds(f, l3Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, err := ParseIPv4(b)
		if err != nil {
			return
		}
		if ip.TotalLen() != len(ip) || ip.HeaderLen() > len(ip) {
			t.Fatalf("view of %d bytes, total length %d, header %d", len(ip), ip.TotalLen(), ip.HeaderLen())
		}
		if ip.ComputeChecksum() != ip.Checksum() {
			t.Fatalf("accepted a header whose checksum does not verify")
		}
		_, _, _, _ = ip.Options(), ip.Payload(), ip.Src(), ip.Dst()
		_, _, _, _ = ip.ID(), ip.FragmentOffset(), ip.MoreFragments(), ip.DontFragment()
	})
}

func FuzzIPv6(f *testing.F) {
	addSeeds(f, l3Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, err := ParseIPv6(b)
		if err != nil {
			return
		}
		if IPv6HeaderSize+ip.PayloadLen() != len(ip) {
			t.Fatalf("view of %d bytes, payload length %d", len(ip), ip.PayloadLen())
		}
		x, err := ip.Extensions()
		if err == nil && (x.Off < IPv6HeaderSize || x.Off > len(ip)) {
			t.Fatalf("transport offset %d outside packet of %d", x.Off, len(ip))
		}
	})
}

func FuzzTCP(f *testing.F) {
	addSeeds(f, l4Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseTCP(b)
		if err != nil {
			return
		}
		_ = s.Payload()
		s.SetSrcPort(s.DstPort())
	})
}

func FuzzUDP(f *testing.F) {
	addSeeds(f, l4Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUDP(b)
		if err != nil {
			return
		}
		if u.Length() != len(u) {
			t.Fatalf("view of %d bytes, length field %d", len(u), u.Length())
		}
		u.SetDstPort(u.SrcPort())
	})
}

func FuzzICMP(f *testing.F) {
	addSeeds(f, l4Of)
	f.Fuzz(func(t *testing.T, b []byte) {
		c4, err4 := ParseICMPv4(b)
		c6, err6 := ParseICMPv6(b)
		if (err4 == nil) != (err6 == nil) {
			t.Fatalf("ICMPv4 and ICMPv6 disagree on the header length")
		}
		if err4 != nil {
			return
		}
		_, _, _ = c4.Type(), c4.Code(), c4.Body()
		c6.SetID(c6.Seq())
	})
}
