package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

var (
	c4 = netip.MustParseAddr("10.137.0.5")
	r4 = netip.MustParseAddr("93.184.216.34")
	g4 = netip.MustParseAddr("192.0.2.1") // a router sending ICMP errors
	c6 = netip.MustParseAddr("2001:db8::5")
	r6 = netip.MustParseAddr("2001:db8:1::1")
	g6 = netip.MustParseAddr("2001:db8:ffff::1")
)

func A(a netip.Addr) Addr { return AddrFromNetIP(a) }

func TestParse(t *testing.T) {
	payload := []byte("hello")
	quoteUDP4 := pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 40000, 53, payload))
	quoteTCP6 := pt.IP(c6, r6, ProtoTCP, pt.TCP(c6, r6, 40001, 443, TCPFlagSYN, nil))
	quoteEcho4 := pt.IP(c4, r4, ProtoICMPv4, pt.Echo(c4, r4, ICMPv4EchoRequest, 77, 1, nil))
	ipv4Opts := []byte{1, 1, 7, 7, 4, 0, 0, 0, 0, 0, 0, 0} // NOP NOP record-route(7) EOL pad
	frag4 := func(off int, more bool) []byte {
		ip := pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 1000, 2000, make([]byte, 32)))
		fo := uint16(off / 8)
		if more {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], fo)
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], pt.Checksum(ip[:20]))
		return pt.Ether(EtherTypeIPv4, ip)
	}
	arp := make([]byte, ARPSize)
	ARP(arp).SetSender(MAC(pt.SrcMAC), c4.As4())
	ARP(arp).SetTarget(MAC{}, r4.As4())
	binary.BigEndian.PutUint16(arp[0:], 1)
	binary.BigEndian.PutUint16(arp[2:], 0x0800)
	arp[4], arp[5] = 6, 4
	ARP(arp).SetOp(ARPOpRequest)

	tests := []struct {
		name  string
		frame []byte
		want  Packet
	}{
		{
			name:  "ipv4 tcp syn",
			frame: pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 40000, 443, TCPFlagSYN, payload)),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 20 + 5, L4Off: 34, PayloadOff: 54, HasL4: true,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 40000, DstPort: 443, Proto: ProtoTCP}, HopLimit: 64, TCPFlags: TCPFlagSYN},
		},
		{
			name:  "ipv4 udp in 802.1Q tag, padded to 60 bytes",
			frame: append(pt.EtherVLAN(0x2005, EtherTypeIPv4, pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 5353, 53, nil))), make([]byte, 14)...),
			want: Packet{EtherType: EtherTypeIPv4, Tagged: true, VLANTCI: 0x2005, L3Off: 18, L3End: 18 + 28, L4Off: 38, PayloadOff: 46, HasL4: true,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 5353, DstPort: 53, Proto: ProtoUDP}, HopLimit: 64},
		},
		{
			name:  "ipv4 with options",
			frame: pt.Ether(EtherTypeIPv4, pt.IPOpts(c4, r4, ProtoUDP, ipv4Opts, pt.UDP(c4, r4, 1, 2, nil))),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 32 + 8, L4Off: 46, PayloadOff: 54, HasL4: true,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 1, DstPort: 2, Proto: ProtoUDP}, HopLimit: 64},
		},
		{
			name:  "icmpv4 echo request",
			frame: pt.Frame(c4, r4, ProtoICMPv4, pt.Echo(c4, r4, ICMPv4EchoRequest, 77, 1, payload)),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 8 + 5, L4Off: 34, PayloadOff: 42, HasL4: true,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 77, Proto: ProtoICMPv4}, HopLimit: 64, ICMPType: ICMPv4EchoRequest, ICMPID: 77},
		},
		{
			name:  "icmpv4 echo reply",
			frame: pt.Frame(r4, c4, ProtoICMPv4, pt.Echo(r4, c4, ICMPv4EchoReply, 77, 1, nil)),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 28, L4Off: 34, PayloadOff: 42, HasL4: true,
				Tuple: Tuple{Src: A(r4), Dst: A(c4), DstPort: 77, Proto: ProtoICMPv4}, HopLimit: 64, ICMPID: 77},
		},
		{
			name:  "icmpv4 port unreachable quoting udp",
			frame: pt.Frame(r4, c4, ProtoICMPv4, pt.ICMP(r4, c4, ICMPv4DestUnreach, 3, 0, quoteUDP4)),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 8 + len(quoteUDP4), L4Off: 34, PayloadOff: 42, HasL4: true,
				Tuple: Tuple{Src: A(r4), Dst: A(c4), Proto: ProtoICMPv4}, HopLimit: 64, ICMPType: ICMPv4DestUnreach, ICMPCode: 3,
				Inner: Inner{Valid: true, L3Off: 42, L4Off: 62, HasPorts: true, Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 40000, DstPort: 53, Proto: ProtoUDP}}},
		},
		{
			name:  "icmpv4 time exceeded quoting echo, quote cut to 8 bytes",
			frame: pt.Frame(g4, c4, ProtoICMPv4, pt.ICMP(g4, c4, ICMPv4TimeExceeded, 0, 0, quoteEcho4[:28])),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 8 + 28, L4Off: 34, PayloadOff: 42, HasL4: true,
				Tuple: Tuple{Src: A(g4), Dst: A(c4), Proto: ProtoICMPv4}, HopLimit: 64, ICMPType: ICMPv4TimeExceeded,
				Inner: Inner{Valid: true, L3Off: 42, L4Off: 62, HasPorts: true, ICMPType: ICMPv4EchoRequest, Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 77, Proto: ProtoICMPv4}}},
		},
		{
			name:  "ipv4 first fragment",
			frame: frag4(0, true),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 40, L4Off: 34, PayloadOff: 42, HasL4: true,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), SrcPort: 1000, DstPort: 2000, Proto: ProtoUDP}, HopLimit: 64,
				Frag: FragmentInfo{Kind: FirstFragment, ID: 0x1234, More: true}},
		},
		{
			name:  "ipv4 later fragment has no ports",
			frame: frag4(1480, false),
			want: Packet{EtherType: EtherTypeIPv4, L3Off: 14, L3End: 14 + 20 + 40, L4Off: 34,
				Tuple: Tuple{Src: A(c4), Dst: A(r4), Proto: ProtoUDP}, HopLimit: 64,
				Frag: FragmentInfo{Kind: LaterFragment, ID: 0x1234, Offset: 1480}},
		},
		{
			name:  "ipv6 tcp",
			frame: pt.Frame(c6, r6, ProtoTCP, pt.TCP(c6, r6, 40001, 443, TCPFlagSYN|TCPFlagACK, nil)),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 40 + 20, L4Off: 54, PayloadOff: 74, HasL4: true,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 40001, DstPort: 443, Proto: ProtoTCP}, HopLimit: 64, TCPFlags: TCPFlagSYN | TCPFlagACK},
		},
		{
			name: "ipv6 hop-by-hop, destination options, routing, udp",
			frame: pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoHopByHop,
				append(append(pt.ExtHeader(ProtoDestOpts, 0), pt.ExtHeader(ProtoRouting, 1)...), pt.RoutingHeader(ProtoUDP, 0)...),
				pt.UDP(c6, r6, 546, 547, payload))),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 40 + 32 + 13, L4Off: 86, PayloadOff: 94, HasL4: true,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 546, DstPort: 547, Proto: ProtoUDP}, HopLimit: 64},
		},
		{
			name:  "ipv6 routing header with segments left",
			frame: pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoRouting, pt.RoutingHeader(ProtoTCP, 2), pt.TCP(c6, r6, 1, 2, TCPFlagSYN, nil))),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 48 + 20, L4Off: 62, PayloadOff: 82, HasL4: true, SegmentsLeft: 2,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 1, DstPort: 2, Proto: ProtoTCP}, HopLimit: 64, TCPFlags: TCPFlagSYN},
		},
		{
			name:  "ipv6 first fragment",
			frame: pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoFragment, pt.FragHeader(ProtoUDP, 0, true, 99), pt.UDP(c6, r6, 7, 8, nil))),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 48 + 8, L4Off: 62, PayloadOff: 70, HasL4: true,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 7, DstPort: 8, Proto: ProtoUDP}, HopLimit: 64,
				Frag: FragmentInfo{Kind: FirstFragment, ID: 99, More: true}},
		},
		{
			name:  "ipv6 later fragment",
			frame: pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoFragment, pt.FragHeader(ProtoUDP, 1232, false, 99), make([]byte, 16))),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 48 + 16, L4Off: 62,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), Proto: ProtoUDP}, HopLimit: 64,
				Frag: FragmentInfo{Kind: LaterFragment, ID: 99, Offset: 1232}},
		},
		{
			name:  "icmpv6 echo request",
			frame: pt.Frame(c6, r6, ProtoICMPv6, pt.Echo(c6, r6, ICMPv6EchoRequest, 9, 1, payload)),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 40 + 13, L4Off: 54, PayloadOff: 62, HasL4: true,
				Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 9, Proto: ProtoICMPv6}, HopLimit: 64, ICMPType: ICMPv6EchoRequest, ICMPID: 9},
		},
		{
			name:  "icmpv6 packet too big quoting tcp",
			frame: pt.Frame(g6, c6, ProtoICMPv6, pt.ICMP(g6, c6, ICMPv6PacketTooBig, 0, 1280, quoteTCP6)),
			want: Packet{EtherType: EtherTypeIPv6, L3Off: 14, L3End: 14 + 40 + 8 + len(quoteTCP6), L4Off: 54, PayloadOff: 62, HasL4: true,
				Tuple: Tuple{Src: A(g6), Dst: A(c6), Proto: ProtoICMPv6}, HopLimit: 64, ICMPType: ICMPv6PacketTooBig,
				Inner: Inner{Valid: true, L3Off: 62, L4Off: 102, HasPorts: true, Tuple: Tuple{Src: A(c6), Dst: A(r6), SrcPort: 40001, DstPort: 443, Proto: ProtoTCP}}},
		},
		{
			name:  "arp request",
			frame: pt.Ether(EtherTypeARP, arp),
			want:  Packet{EtherType: EtherTypeARP, L3Off: 14, L3End: 14 + 28},
		},
		{
			name:  "unknown ethertype is not an error",
			frame: pt.Ether(0x88cc, make([]byte, 46)),
			want:  Packet{EtherType: 0x88cc, L3Off: 14, L3End: 60},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Packet
			got.L3Off = 999 // Parse must reset stale fields
			if err := Parse(tc.frame, &got); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// mutate returns a copy of b changed by f.
func mutate(b []byte, f func(b []byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

// fixIPv4 recomputes the IPv4 header checksum of an untagged frame so that a
// test reaches the check after it.
func fixIPv4(b []byte) {
	ip := IPv4(b[14:])
	ip.SetChecksum(0)
	ip.SetChecksum(pt.Checksum(b[14 : 14+int(b[14]&0xf)*4]))
}

func TestParseErrors(t *testing.T) {
	udp4 := pt.Frame(c4, r4, ProtoUDP, pt.UDP(c4, r4, 1, 2, []byte("x")))
	tcp4 := pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 1, 2, 0, nil))
	udp6 := pt.Frame(c6, r6, ProtoUDP, pt.UDP(c6, r6, 1, 2, nil))
	ext6 := func(first uint8, ext []byte) []byte {
		return pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, first, ext, pt.UDP(c6, r6, 1, 2, nil)))
	}
	var longChain []byte
	for range MaxIPv6ExtHeaders {
		longChain = append(longChain, pt.ExtHeader(ProtoDestOpts, 0)...)
	}
	longChain = append(longChain, pt.ExtHeader(ProtoUDP, 0)...)
	quote := pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 1, 2, nil))

	tests := []struct {
		name  string
		frame []byte
		want  Error
	}{
		{"empty frame", nil, Error{LayerEthernet, KindTruncated}},
		{"short ethernet", udp4[:13], Error{LayerEthernet, KindTruncated}},
		{"truncated vlan tag", pt.EtherVLAN(1, EtherTypeIPv4, nil)[:16], Error{LayerEthernet, KindTruncated}},
		{"stacked vlan tags", pt.EtherVLAN(1, EtherTypeVLAN, make([]byte, 40)), Error{LayerEthernet, KindUnsupported}},
		{"802.1ad outer tag", pt.Ether(EtherTypeQinQ, make([]byte, 40)), Error{LayerEthernet, KindUnsupported}},
		{"802.3 length field", pt.Ether(0x05dc, make([]byte, 40)), Error{LayerEthernet, KindUnsupported}},
		{"arp truncated", pt.Ether(EtherTypeARP, make([]byte, 27)), Error{LayerARP, KindTruncated}},
		{"arp not ethernet/ipv4", pt.Ether(EtherTypeARP, make([]byte, 28)), Error{LayerARP, KindUnsupported}},
		{"ipv4 truncated header", udp4[:14+19], Error{LayerIPv4, KindTruncated}},
		{"ipv4 bad version", mutate(udp4, func(b []byte) { b[14] = 0x55 }), Error{LayerIPv4, KindBadVersion}},
		{"ipv4 ihl below 5", mutate(udp4, func(b []byte) { b[14] = 0x44 }), Error{LayerIPv4, KindBadHeaderLength}},
		{"ipv4 ihl beyond frame", mutate(udp4, func(b []byte) { b[14] = 0x4f }), Error{LayerIPv4, KindTruncated}},
		{"ipv4 total length below header", mutate(udp4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19); fixIPv4(b) }), Error{LayerIPv4, KindBadTotalLength}},
		{"ipv4 total length beyond frame", udp4[:len(udp4)-1], Error{LayerIPv4, KindTruncated}},
		{"ipv4 bad checksum", mutate(udp4, func(b []byte) { b[14+8]-- }), Error{LayerIPv4, KindBadChecksum}},
		{"ipv4 option length 1", pt.Ether(EtherTypeIPv4, pt.IPOpts(c4, r4, ProtoUDP, []byte{7, 1, 0, 0}, pt.UDP(c4, r4, 1, 2, nil))), Error{LayerIPv4, KindBadOption}},
		{"ipv4 option overruns header", pt.Ether(EtherTypeIPv4, pt.IPOpts(c4, r4, ProtoUDP, []byte{1, 7, 9, 0}, pt.UDP(c4, r4, 1, 2, nil))), Error{LayerIPv4, KindBadOption}},
		{"ipv4 option without length", pt.Ether(EtherTypeIPv4, pt.IPOpts(c4, r4, ProtoUDP, []byte{1, 1, 1, 7}, pt.UDP(c4, r4, 1, 2, nil))), Error{LayerIPv4, KindBadOption}},
		{"ipv6 truncated header", udp6[:14+39], Error{LayerIPv6, KindTruncated}},
		{"ipv6 bad version", mutate(udp6, func(b []byte) { b[14] = 0x40 }), Error{LayerIPv6, KindBadVersion}},
		{"ipv6 payload beyond frame", udp6[:len(udp6)-1], Error{LayerIPv6, KindTruncated}},
		{"ipv6 v4-mapped source", mutate(udp6, func(b []byte) { copy(b[14+8:], make([]byte, 10)); b[14+18], b[14+19] = 0xff, 0xff }), Error{LayerIPv6, KindBadAddress}},
		{"ipv6 extension chain too long", ext6(ProtoDestOpts, longChain), Error{LayerIPv6, KindBadExtension}},
		{"ipv6 hop-by-hop not first", ext6(ProtoDestOpts, append(pt.ExtHeader(ProtoHopByHop, 0), pt.ExtHeader(ProtoUDP, 0)...)), Error{LayerIPv6, KindBadExtension}},
		{"ipv6 two fragment headers", ext6(ProtoFragment, append(pt.FragHeader(ProtoFragment, 0, true, 1), pt.FragHeader(ProtoUDP, 0, true, 1)...)), Error{LayerIPv6, KindBadExtension}},
		{"ipv6 extension header beyond payload", pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoDestOpts, pt.ExtHeader(ProtoUDP, 3)[:16], nil)), Error{LayerIPv6, KindTruncated}},
		{"ipv6 extension header cut at 4 bytes", pt.Ether(EtherTypeIPv6, pt.IPOpts(c6, r6, ProtoRouting, []byte{17, 0, 0, 0}, nil)), Error{LayerIPv6, KindTruncated}},
		{"tcp truncated", mutate(tcp4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 20+19); fixIPv4(b) })[:14+39], Error{LayerTCP, KindTruncated}},
		{"tcp data offset below 5", mutate(tcp4, func(b []byte) { b[14+20+12] = 4 << 4 }), Error{LayerTCP, KindBadHeaderLength}},
		{"tcp data offset beyond segment", mutate(tcp4, func(b []byte) { b[14+20+12] = 6 << 4 }), Error{LayerTCP, KindTruncated}},
		{"udp length below 8", mutate(udp4, func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 7) }), Error{LayerUDP, KindBadLength}},
		{"udp length beyond packet", mutate(udp4, func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 10) }), Error{LayerUDP, KindTruncated}},
		{"icmpv4 truncated", pt.Frame(c4, r4, ProtoICMPv4, []byte{8, 0, 0, 0}), Error{LayerICMPv4, KindTruncated}},
		{"icmpv6 truncated", pt.Frame(c6, r6, ProtoICMPv6, []byte{128, 0, 0, 0, 0, 0, 0}), Error{LayerICMPv6, KindTruncated}},
		{"icmpv4 error with short quote", pt.Frame(r4, c4, ProtoICMPv4, pt.ICMP(r4, c4, ICMPv4DestUnreach, 1, 0, quote[:24])), Error{LayerICMPv4, KindTruncated}},
		{"icmpv4 error quoting garbage", pt.Frame(r4, c4, ProtoICMPv4, pt.ICMP(r4, c4, ICMPv4DestUnreach, 1, 0, make([]byte, 28))), Error{LayerIPv4, KindBadVersion}},
		{"icmpv6 error quoting ipv4", pt.Frame(r6, c6, ProtoICMPv6, pt.ICMP(r6, c6, ICMPv6DestUnreach, 1, 0, append(quote, make([]byte, 20)...))), Error{LayerIPv6, KindBadVersion}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			err := Parse(tc.frame, &p)
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("Parse error = %v, want %v", err, &tc.want)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if !errors.Is(err, &Error{Kind: tc.want.Kind}) || !errors.Is(err, &Error{Layer: tc.want.Layer}) {
				t.Errorf("errors.Is does not match kind/layer wildcards for %v", err)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	got := errAt(LayerIPv4, KindBadChecksum).Error()
	want := "packet: ipv4 header: bad header checksum; drop the frame"
	if got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(errAt(LayerUDP, KindTruncated), ErrTruncated) || errors.Is(errAt(LayerUDP, KindTruncated), ErrBadLength) {
		t.Error("sentinel matching by kind is wrong")
	}
}
