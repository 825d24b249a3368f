package nat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/services/packet"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

// flowCase describes one client flow and how to build its packets.
type flowCase struct {
	name           string
	client, remote netip.Addr
	pub            netip.Addr
	proto          uint8
	cport, rport   uint16 // for echo: cport is the identifier, rport 0
	out            func() []byte
	in             func(port uint16) []byte // reply to the public address and outside port
}

func roundTripCases() []flowCase {
	payload := []byte("some application data")
	mk := func(name string, client, remote, pub netip.Addr, proto uint8, cport, rport uint16) flowCase {
		c := flowCase{name: name, client: client, remote: remote, pub: pub, proto: proto, cport: cport, rport: rport}
		switch proto {
		case packet.ProtoTCP:
			c.out = func() []byte {
				return pt.Frame(client, remote, proto, pt.TCP(client, remote, cport, rport, packet.TCPFlagSYN, payload))
			}
			c.in = func(port uint16) []byte {
				return pt.Frame(remote, pub, proto, pt.TCP(remote, pub, rport, port, packet.TCPFlagSYN|packet.TCPFlagACK, payload))
			}
		case packet.ProtoUDP:
			c.out = func() []byte { return pt.Frame(client, remote, proto, pt.UDP(client, remote, cport, rport, payload)) }
			c.in = func(port uint16) []byte {
				return pt.Frame(remote, pub, proto, pt.UDP(remote, pub, rport, port, payload))
			}
		default:
			req, rep := packet.ICMPv4EchoRequest, packet.ICMPv4EchoReply
			if proto == packet.ProtoICMPv6 {
				req, rep = packet.ICMPv6EchoRequest, packet.ICMPv6EchoReply
			}
			c.out = func() []byte { return pt.Frame(client, remote, proto, pt.Echo(client, remote, req, cport, 7, payload)) }
			c.in = func(port uint16) []byte {
				return pt.Frame(remote, pub, proto, pt.Echo(remote, pub, rep, port, 7, payload))
			}
		}
		return c
	}
	return []flowCase{
		mk("tcp4", client4, remote4, pub4, packet.ProtoTCP, 40000, 443),
		mk("udp4", client4, remote4, pub4, packet.ProtoUDP, 5353, 53),
		mk("icmp4 echo", client4, remote4, pub4, packet.ProtoICMPv4, 77, 0),
		mk("tcp6", client6, remote6, pub6, packet.ProtoTCP, 40000, 443),
		mk("udp6", client6, remote6, pub6, packet.ProtoUDP, 5353, 53),
		mk("icmp6 echo", client6, remote6, pub6, packet.ProtoICMPv6, 77, 0),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, testConfig())
			frame := tc.out()
			orig := append([]byte(nil), frame...)
			port := outbound(t, tb, frame, t0)

			want := packet.Tuple{Src: addr(tc.pub), Dst: addr(tc.remote), SrcPort: port, DstPort: tc.rport, Proto: tc.proto}
			if diff := cmp.Diff(want, tupleOf(t, frame)); diff != "" {
				t.Errorf("outbound tuple (-want +got):\n%s", diff)
			}
			if port < DefaultPortMin {
				t.Errorf("outside port %d below the range", port)
			}
			if err := pt.Verify(frame); err != nil {
				t.Errorf("outbound checksums: %v", err)
			}
			if !bytes.Equal(frame[len(frame)-8:], orig[len(orig)-8:]) {
				t.Errorf("payload changed")
			}

			// A second packet of the flow keeps the same mapping.
			again := tc.out()
			if p2 := outbound(t, tb, again, t0.Add(time.Second)); p2 != port {
				t.Errorf("second packet got port %d, first %d", p2, port)
			}

			reply := tc.in(port)
			if v, err := tb.Inbound(reply, t0.Add(2*time.Second)); v != Forward || err != nil {
				t.Fatalf("Inbound = %v, %v", v, err)
			}
			back := packet.Tuple{Src: addr(tc.remote), Dst: addr(tc.client), SrcPort: tc.rport, DstPort: tc.cport, Proto: tc.proto}
			if tc.rport == 0 { // echo reply: identifier in DstPort
				back.SrcPort = 0
			}
			if diff := cmp.Diff(back, tupleOf(t, reply)); diff != "" {
				t.Errorf("inbound tuple (-want +got):\n%s", diff)
			}
			if err := pt.Verify(reply); err != nil {
				t.Errorf("inbound checksums: %v", err)
			}
			if tb.Len() != 1 {
				t.Errorf("Len = %d, want 1", tb.Len())
			}
			checkInvariants(t, tb)
		})
	}
}

func TestUDPZeroChecksumStaysZero(t *testing.T) {
	tb := mustNew(t, testConfig())
	frame := udpOut(client4, remote4, 1000, 53)
	binary.BigEndian.PutUint16(frame[14+20+6:], 0)
	outbound(t, tb, frame, t0)
	if c := binary.BigEndian.Uint16(frame[14+20+6:]); c != 0 {
		t.Errorf("UDP checksum became %#04x; a zero (absent) checksum must stay zero", c)
	}
	if err := pt.Verify(frame); err != nil {
		t.Error(err)
	}
}

func TestDeterministicPorts(t *testing.T) {
	ports := func() []uint16 {
		tb := mustNew(t, testConfig())
		var ps []uint16
		for i := range 5 {
			ps = append(ps, outbound(t, tb, udpOut(client4, remote4, uint16(3000+i), 53), t0))
		}
		return ps
	}
	a, b := ports(), ports()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed gave different ports (-first +second):\n%s", diff)
	}
}

// ipOf returns the IP packet inside an untagged Ethernet frame.
func ipOf(frame []byte) []byte { return frame[14:] }

func TestICMPErrorInbound(t *testing.T) {
	tests := []struct {
		name     string
		out      []byte
		router   netip.Addr
		pub      netip.Addr
		typ      uint8
		code     uint8
		quoteLen int // bytes of the translated packet quoted; 0 = all
	}{
		{"udp4 port unreachable", udpOut(client4, remote4, 5353, 53), remote4, pub4, packet.ICMPv4DestUnreach, 3, 0},
		{"tcp4 time exceeded, 8-byte quote", tcpFrame(client4, remote4, 40000, 443, packet.TCPFlagSYN), router4, pub4, packet.ICMPv4TimeExceeded, 0, 28},
		{"tcp4 needs frag, quote covers checksum", tcpFrame(client4, remote4, 40000, 443, packet.TCPFlagSYN), router4, pub4, packet.ICMPv4DestUnreach, 4, 40},
		{"echo4 host unreachable", pt.Frame(client4, remote4, packet.ProtoICMPv4, pt.Echo(client4, remote4, packet.ICMPv4EchoRequest, 9, 1, []byte("ping"))), router4, pub4, packet.ICMPv4DestUnreach, 1, 0},
		{"udp6 port unreachable", udpOut(client6, remote6, 5353, 53), remote6, pub6, packet.ICMPv6DestUnreach, 4, 0},
		{"tcp6 packet too big", tcpFrame(client6, remote6, 40000, 443, packet.TCPFlagSYN), router6, pub6, packet.ICMPv6PacketTooBig, 0, 0},
		{"echo6 time exceeded", pt.Frame(client6, remote6, packet.ProtoICMPv6, pt.Echo(client6, remote6, packet.ICMPv6EchoRequest, 9, 1, nil)), router6, pub6, packet.ICMPv6TimeExceeded, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, testConfig())
			orig := append([]byte(nil), ipOf(tc.out)...)
			outbound(t, tb, tc.out, t0)
			quote := ipOf(tc.out)
			if tc.quoteLen > 0 {
				quote = quote[:tc.quoteLen]
			}
			icmp := pt.ICMP(tc.router, tc.pub, tc.typ, tc.code, 0, quote)
			frame := pt.Frame(tc.router, tc.pub, pt.ICMPProto(tc.pub), icmp)
			if v, err := tb.Inbound(frame, t0.Add(time.Second)); v != Forward || err != nil {
				t.Fatalf("Inbound = %v, %v", v, err)
			}
			var p packet.Packet
			if err := packet.Parse(frame, &p); err != nil {
				t.Fatal(err)
			}
			if got := p.Tuple.Dst.NetIP(); got != origSrc(orig) {
				t.Errorf("outer destination %v, want the client", got)
			}
			// The quote must be exactly what the client sent.
			gotQuote := frame[p.Inner.L3Off:p.L3End]
			if diff := cmp.Diff(orig[:len(gotQuote)], gotQuote); diff != "" {
				t.Errorf("quoted packet differs from the client's original (-want +got):\n%s", diff)
			}
			if err := pt.Verify(frame); err != nil {
				t.Errorf("checksums: %v", err)
			}
		})
	}
}

// origSrc returns the source address of the original client IP packet.
func origSrc(ip []byte) netip.Addr {
	if ip[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(ip[12:]))
	}
	return netip.AddrFrom16([16]byte(ip[8:]))
}

func TestICMPErrorOutbound(t *testing.T) {
	tests := []struct {
		name           string
		client, remote netip.Addr
		pub            netip.Addr
		typ            uint8
	}{
		{"udp4", client4, remote4, pub4, packet.ICMPv4DestUnreach},
		{"udp6", client6, remote6, pub6, packet.ICMPv6DestUnreach},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, testConfig())
			port := outbound(t, tb, udpOut(tc.client, tc.remote, 6000, 7000), t0)
			in := udpIn(tc.remote, tc.pub, 7000, port)
			sent := append([]byte(nil), ipOf(in)...) // as the remote sent it
			if v, err := tb.Inbound(in, t0); v != Forward || err != nil {
				t.Fatalf("Inbound = %v, %v", v, err)
			}
			// The client answers the (translated) datagram with port unreachable.
			icmp := pt.ICMP(tc.client, tc.remote, tc.typ, 3, 0, ipOf(in))
			frame := pt.Frame(tc.client, tc.remote, pt.ICMPProto(tc.client), icmp)
			if v, err := tb.Outbound(frame, t0); v != Forward || err != nil {
				t.Fatalf("Outbound = %v, %v", v, err)
			}
			var p packet.Packet
			if err := packet.Parse(frame, &p); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(addr(tc.pub), p.Tuple.Src); diff != "" {
				t.Errorf("outer source (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(sent, frame[p.Inner.L3Off:p.L3End]); diff != "" {
				t.Errorf("quote differs from what the remote sent (-want +got):\n%s", diff)
			}
			if err := pt.Verify(frame); err != nil {
				t.Errorf("checksums: %v", err)
			}
		})
	}
}

func TestDrops(t *testing.T) {
	setup := func(t *testing.T, tb *Table) uint16 {
		return outbound(t, tb, udpOut(client4, remote4, 5353, 53), t0)
	}
	frag := func() []byte {
		f := udpOut(client4, remote4, 5353, 53)
		binary.BigEndian.PutUint16(f[14+6:], 0x2000) // MF
		binary.BigEndian.PutUint16(f[14+10:], 0)
		binary.BigEndian.PutUint16(f[14+10:], pt.Checksum(f[14:34]))
		return f
	}
	tests := []struct {
		name     string
		inbound  bool
		cfg      func(*Config)
		frame    func(port uint16) []byte
		wantV    Verdict
		wantErr  error
		wantFlow int
	}{
		{"reply to unknown port", true, nil, func(p uint16) []byte { return udpIn(remote4, pub4, 53, p+1) }, Drop, ErrNoFlow, 1},
		{"reply from other remote port", true, nil, func(p uint16) []byte { return udpIn(remote4, pub4, 54, p) }, Drop, ErrNoFlow, 1},
		{"inbound not to public address", true, nil, func(p uint16) []byte { return udpIn(remote4, other4, 53, p) }, Drop, ErrNotPublic, 1},
		{"inbound fragment", true, nil, func(uint16) []byte { return frag() }, Drop, ErrFragment, 1},
		{"outbound fragment", false, nil, func(uint16) []byte { return frag() }, Drop, ErrFragment, 1},
		{"outbound gre", false, nil, func(uint16) []byte { return pt.Frame(client4, remote4, 47, make([]byte, 8)) }, Drop, ErrUnsupported, 1},
		{"outbound echo reply", false, nil, func(uint16) []byte {
			return pt.Frame(client4, remote4, packet.ProtoICMPv4, pt.Echo(client4, remote4, packet.ICMPv4EchoReply, 1, 1, nil))
		}, Drop, ErrUnsupported, 1},
		{"outbound arp", false, nil, func(uint16) []byte {
			arp := []byte{0, 1, 8, 0, 6, 4, 0, 1, 0, 0x16, 0x3e, 0, 0, 1, 10, 137, 0, 5, 0, 0, 0, 0, 0, 0, 10, 137, 0, 1}
			return pt.Ether(packet.EtherTypeARP, arp)
		}, Drop, ErrUnsupported, 1},
		{"outbound malformed", false, nil, func(uint16) []byte { return udpOut(client4, remote4, 1, 2)[:30] }, Drop, packet.ErrTruncated, 1},
		{"ipv6 without public ipv6", false, func(c *Config) { c.PublicIPv6 = netip.Addr{} }, func(uint16) []byte { return udpOut(client6, remote6, 1, 2) }, Drop, ErrNoPublicAddr, 1},
		{"ipv6 source route", true, nil, func(p uint16) []byte {
			return pt.Ether(packet.EtherTypeIPv6, pt.IPOpts(remote6, pub6, packet.ProtoRouting, pt.RoutingHeader(packet.ProtoUDP, 1), pt.UDP(remote6, pub6, 53, p, nil)))
		}, Drop, ErrUnsupported, 1},
		{"outbound rst without flow", false, nil, func(uint16) []byte { return tcpFrame(client4, remote4, 1, 2, packet.TCPFlagRST) }, Drop, ErrNoFlow, 1},
		{"icmp error quoting unknown flow", true, nil, func(p uint16) []byte {
			q := ipOf(udpOut(pub4, remote4, p+1, 53))
			return pt.Frame(remote4, pub4, packet.ProtoICMPv4, pt.ICMP(remote4, pub4, packet.ICMPv4DestUnreach, 3, 0, q))
		}, Drop, ErrNoFlow, 1},
		{"icmp error with bad checksum", true, nil, func(p uint16) []byte {
			q := ipOf(udpOut(pub4, remote4, p, 53))
			icmp := pt.ICMP(remote4, pub4, packet.ICMPv4DestUnreach, 3, 0, q)
			icmp[2] ^= 0xff
			return pt.Frame(remote4, pub4, packet.ProtoICMPv4, icmp)
		}, Drop, ErrBadChecksum, 1},
		{"client error about another client's flow", false, nil, func(p uint16) []byte {
			q := ipOf(udpIn(remote4, client4, 53, 5353))
			return pt.Frame(other4, remote4, packet.ProtoICMPv4, pt.ICMP(other4, remote4, packet.ICMPv4DestUnreach, 3, 0, q))
		}, Drop, ErrNoFlow, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tb := mustNew(t, cfg)
			port := setup(t, tb)
			frame := tc.frame(port)
			before := append([]byte(nil), frame...)
			var v Verdict
			var err error
			if tc.inbound {
				v, err = tb.Inbound(frame, t0)
			} else {
				v, err = tb.Outbound(frame, t0)
			}
			if v != tc.wantV || !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, %v; want %v, %v", v, err, tc.wantV, tc.wantErr)
			}
			if !bytes.Equal(before, frame) {
				t.Errorf("dropped frame was modified")
			}
			if tb.Len() != tc.wantFlow {
				t.Errorf("Len = %d, want %d", tb.Len(), tc.wantFlow)
			}
			checkInvariants(t, tb)
		})
	}
}

func TestAdmit(t *testing.T) {
	var asked []packet.Tuple
	cfg := testConfig()
	cfg.Admit = func(p *packet.Packet) bool {
		asked = append(asked, p.Tuple)
		return p.Tuple.DstPort == 443
	}
	tb := mustNew(t, cfg)
	denied := tcpFrame(client4, remote4, 40000, 22, packet.TCPFlagSYN)
	before := append([]byte(nil), denied...)
	if v, err := tb.Outbound(denied, t0); v != Deny || err != nil {
		t.Errorf("denied flow: got %v, %v; want deny", v, err)
	}
	if !bytes.Equal(before, denied) {
		t.Errorf("denied frame was modified")
	}
	outbound(t, tb, tcpFrame(client4, remote4, 40001, 443, packet.TCPFlagSYN), t0)
	outbound(t, tb, tcpFrame(client4, remote4, 40001, 443, packet.TCPFlagACK), t0) // existing flow: not asked again
	want := []packet.Tuple{
		{Src: addr(client4), Dst: addr(remote4), SrcPort: 40000, DstPort: 22, Proto: packet.ProtoTCP},
		{Src: addr(client4), Dst: addr(remote4), SrcPort: 40001, DstPort: 443, Proto: packet.ProtoTCP},
	}
	if diff := cmp.Diff(want, asked); diff != "" {
		t.Errorf("Admit calls (-want +got):\n%s", diff)
	}
	if s := tb.Stats(); s.Denied != 1 || s.Created != 1 || s.Flows != 1 {
		t.Errorf("stats %+v; want 1 denied, 1 created, 1 flow", s)
	}
}

func TestPortExhaustion(t *testing.T) {
	cfg := testConfig()
	cfg.PortMin, cfg.PortMax = 2000, 2003
	cfg.Timeouts.UDP = 30 * time.Second
	tb := mustNew(t, cfg)
	got := map[uint16]bool{}
	for i := range 4 {
		got[outbound(t, tb, udpOut(client4, remote4, uint16(5000+i), 53), t0)] = true
	}
	if diff := cmp.Diff(map[uint16]bool{2000: true, 2001: true, 2002: true, 2003: true}, got); diff != "" {
		t.Errorf("ports used (-want +got):\n%s", diff)
	}
	if v, err := tb.Outbound(udpOut(client4, remote4, 5004, 53), t0); v != Drop || !errors.Is(err, ErrPortsExhausted) {
		t.Errorf("fifth flow to the same destination: %v, %v; want ErrPortsExhausted", v, err)
	}
	// Another destination port has its own 4 outside ports.
	outbound(t, tb, udpOut(client4, remote4, 5004, 54), t0)
	// After the idle timeout the expired mappings' ports are reused.
	p := outbound(t, tb, udpOut(client4, remote4, 5005, 53), t0.Add(30*time.Second))
	if p < 2000 || p > 2003 {
		t.Errorf("reused port %d outside 2000-2003", p)
	}
	if s := tb.Stats(); s.NoPorts != 1 {
		t.Errorf("NoPorts = %d, want 1", s.NoPorts)
	}
	checkInvariants(t, tb)
}

func TestEvictionOrder(t *testing.T) {
	type step struct {
		cport uint16
		reply bool // answer it so the flow becomes assured
	}
	tests := []struct {
		name          string
		steps         []step
		wantUnassured []uint16
		wantAssured   []uint16
	}{
		{
			name:          "new flow evicts oldest unassured, never assured",
			steps:         []step{{1, true}, {2, false}, {3, true}, {4, false}, {5, false}, {6, false}},
			wantUnassured: []uint16{5, 6},
			wantAssured:   []uint16{1, 3},
		},
		{
			name:          "all assured: least recently used goes",
			steps:         []step{{1, true}, {2, true}, {3, true}, {4, true}, {5, true}},
			wantUnassured: nil,
			wantAssured:   []uint16{2, 3, 4, 5},
		},
		{
			name:          "touching an assured flow protects it",
			steps:         []step{{1, true}, {2, true}, {3, true}, {4, true}, {1, false}, {5, true}},
			wantUnassured: nil,
			wantAssured:   []uint16{3, 4, 1, 5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxFlows = 4
			tb := mustNew(t, cfg)
			now := t0
			for _, s := range tc.steps {
				now = now.Add(time.Second)
				port := outbound(t, tb, udpOut(client4, remote4, s.cport, 53), now)
				if s.reply {
					if v, err := tb.Inbound(udpIn(remote4, pub4, 53, port), now); v != Forward {
						t.Fatalf("reply: %v, %v", v, err)
					}
				}
				checkInvariants(t, tb)
			}
			if diff := cmp.Diff(tc.wantUnassured, clientPorts(tb, listUnassured)); diff != "" {
				t.Errorf("unassured flows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAssured, clientPorts(tb, listAssured)); diff != "" {
				t.Errorf("assured flows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	to := Timeouts{
		TCPSyn: 40 * time.Second, TCPEstablished: 1000 * time.Second, TCPFin: 20 * time.Second,
		TCPRst: 5 * time.Second, UDP: 30 * time.Second, UDPReplied: 200 * time.Second, ICMP: 15 * time.Second,
	}
	const (
		syn    = packet.TCPFlagSYN
		synack = packet.TCPFlagSYN | packet.TCPFlagACK
		ack    = packet.TCPFlagACK
		fin    = packet.TCPFlagFIN | packet.TCPFlagACK
		rst    = packet.TCPFlagRST
	)
	type pkt struct {
		in    bool
		flags uint8
	}
	tests := []struct {
		name  string
		proto uint8
		pkts  []pkt
		want  time.Duration
	}{
		{"tcp syn sent", packet.ProtoTCP, []pkt{{false, syn}}, to.TCPSyn},
		{"tcp established", packet.ProtoTCP, []pkt{{false, syn}, {true, synack}, {false, ack}}, to.TCPEstablished},
		{"tcp picked up mid-stream, unanswered", packet.ProtoTCP, []pkt{{false, ack}}, to.TCPSyn},
		{"tcp fin", packet.ProtoTCP, []pkt{{false, syn}, {true, synack}, {false, fin}}, to.TCPFin},
		{"tcp rst", packet.ProtoTCP, []pkt{{false, syn}, {true, synack}, {true, rst}}, to.TCPRst},
		{"tcp syn after rst reopens", packet.ProtoTCP, []pkt{{false, syn}, {true, rst}, {false, syn}}, to.TCPSyn},
		{"udp unanswered", packet.ProtoUDP, []pkt{{false, 0}}, to.UDP},
		{"udp answered", packet.ProtoUDP, []pkt{{false, 0}, {true, 0}}, to.UDPReplied},
		{"icmp echo", packet.ProtoICMPv4, []pkt{{false, 0}, {true, 0}}, to.ICMP},
	}
	for _, tc := range tests {
		for _, probe := range []struct {
			after time.Duration
			alive bool
		}{{tc.want - time.Nanosecond, true}, {tc.want, false}} {
			t.Run(tc.name+"/"+probe.after.String(), func(t *testing.T) {
				cfg := testConfig()
				cfg.Timeouts = to
				tb := mustNew(t, cfg)
				var port uint16
				now := t0
				out := func(flags uint8) []byte {
					switch tc.proto {
					case packet.ProtoTCP:
						return tcpFrame(client4, remote4, 4000, 80, flags)
					case packet.ProtoUDP:
						return udpOut(client4, remote4, 4000, 80)
					}
					return pt.Frame(client4, remote4, packet.ProtoICMPv4, pt.Echo(client4, remote4, packet.ICMPv4EchoRequest, 4000, 1, nil))
				}
				in := func(flags uint8, port uint16) []byte {
					switch tc.proto {
					case packet.ProtoTCP:
						return tcpFrame(remote4, pub4, 80, port, flags)
					case packet.ProtoUDP:
						return udpIn(remote4, pub4, 80, port)
					}
					return pt.Frame(remote4, pub4, packet.ProtoICMPv4, pt.Echo(remote4, pub4, packet.ICMPv4EchoReply, port, 1, nil))
				}
				for _, p := range tc.pkts {
					now = now.Add(time.Second)
					if p.in {
						if v, err := tb.Inbound(in(p.flags, port), now); v != Forward {
							t.Fatalf("inbound %#x: %v, %v", p.flags, v, err)
						}
					} else {
						port = outbound(t, tb, out(p.flags), now)
					}
				}
				v, err := tb.Inbound(in(ack, port), now.Add(probe.after))
				if alive := v == Forward; alive != probe.alive {
					t.Errorf("%v after the last packet: %v, %v; want alive=%v", probe.after, v, err, probe.alive)
				}
			})
		}
	}
}

func TestFlushClient(t *testing.T) {
	tb := mustNew(t, testConfig())
	var ports4, portsOther []uint16
	for i := range 3 {
		ports4 = append(ports4, outbound(t, tb, udpOut(client4, remote4, uint16(100+i), 53), t0))
		portsOther = append(portsOther, outbound(t, tb, udpOut(other4, remote4, uint16(100+i), 53), t0))
	}
	outbound(t, tb, udpOut(client6, remote6, 100, 53), t0)
	if n := tb.FlushClient(client4); n != 3 {
		t.Errorf("FlushClient removed %d flows, want 3", n)
	}
	if tb.Len() != 4 {
		t.Errorf("Len = %d, want 4", tb.Len())
	}
	for i := range 3 {
		if v, _ := tb.Inbound(udpIn(remote4, pub4, 53, ports4[i]), t0); v != Drop {
			t.Errorf("reply to flushed client's port %d: %v, want drop", ports4[i], v)
		}
		if v, err := tb.Inbound(udpIn(remote4, pub4, 53, portsOther[i]), t0); v != Forward {
			t.Errorf("reply to other client's port %d: %v, %v", portsOther[i], v, err)
		}
	}
	if n := tb.FlushClient(client6); n != 1 {
		t.Errorf("FlushClient(v6) removed %d, want 1", n)
	}
	checkInvariants(t, tb)
}

func TestExpire(t *testing.T) {
	cfg := testConfig()
	cfg.Timeouts.UDP = 10 * time.Second
	tb := mustNew(t, cfg)
	outbound(t, tb, udpOut(client4, remote4, 1, 53), t0)
	outbound(t, tb, udpOut(client4, remote4, 2, 53), t0.Add(5*time.Second))
	if n := tb.Expire(t0.Add(10 * time.Second)); n != 1 {
		t.Errorf("Expire removed %d, want 1", n)
	}
	if n := tb.Expire(t0.Add(15 * time.Second)); n != 1 {
		t.Errorf("second Expire removed %d, want 1", n)
	}
	if tb.Len() != 0 || tb.Stats().Expired != 2 {
		t.Errorf("Len %d, Expired %d; want 0, 2", tb.Len(), tb.Stats().Expired)
	}
	checkInvariants(t, tb)
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no max flows", func(c *Config) { c.MaxFlows = 0 }},
		{"no public address", func(c *Config) { c.PublicIPv4, c.PublicIPv6 = netip.Addr{}, netip.Addr{} }},
		{"v6 as public v4", func(c *Config) { c.PublicIPv4 = pub6 }},
		{"v4 as public v6", func(c *Config) { c.PublicIPv6 = pub4 }},
		{"inverted port range", func(c *Config) { c.PortMin, c.PortMax = 3000, 2000 }},
		{"port range with 0", func(c *Config) { c.PortMin, c.PortMax = 0, 100 }},
		{"negative timeout", func(c *Config) { c.Timeouts.UDP = -time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	got := []string{Drop.String(), Forward.String(), Deny.String()}
	if diff := cmp.Diff([]string{"drop", "forward", "deny"}, got); diff != "" {
		t.Error(diff)
	}
}

// TestSYNFloodKeepsEstablished offers a flood of handshakes to a full table
// of established and closed TCP flows: closed flows go first, then flood
// flows replace each other, and established flows survive.
func TestSYNFloodKeepsEstablished(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFlows = 6
	tb := mustNew(t, cfg)
	now := t0
	open := func(cport uint16) uint16 {
		port := outbound(t, tb, tcpFrame(client4, remote4, cport, 443, packet.TCPFlagSYN), now)
		if v, err := tb.Inbound(tcpFrame(remote4, pub4, 443, port, packet.TCPFlagSYN|packet.TCPFlagACK), now); v != Forward {
			t.Fatalf("SYN-ACK: %v, %v", v, err)
		}
		return port
	}
	for cport := uint16(1); cport <= 4; cport++ {
		open(cport)
	}
	closed := open(5)
	if v, err := tb.Inbound(tcpFrame(remote4, pub4, 443, closed, packet.TCPFlagRST), now); v != Forward {
		t.Fatalf("RST: %v, %v", v, err)
	}
	for i := range 100 {
		now = now.Add(time.Millisecond)
		outbound(t, tb, tcpFrame(other4, remote4, uint16(1000+i), 80, packet.TCPFlagSYN), now)
		checkInvariants(t, tb)
	}
	if diff := cmp.Diff([]uint16{1, 2, 3, 4}, clientPorts(tb, listAssured)); diff != "" {
		t.Errorf("established flows (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint16{1098, 1099}, clientPorts(tb, listUnassured)); diff != "" {
		t.Errorf("unassured flows (-want +got):\n%s", diff)
	}
	if s := tb.Stats(); s.Evicted != 99 {
		t.Errorf("Evicted = %d, want 99 (the closed flow, then 98 handshakes)", s.Evicted)
	}
}
