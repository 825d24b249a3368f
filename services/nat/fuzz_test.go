package nat

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/unikgo/unikgo/services/packet"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

// Fuzz input: a sequence of records op(1) len(2, big endian) frame(len).
const (
	fuzzOut = iota
	fuzzIn
	fuzzTick  // advance the clock by (op>>2)*10 s and call Expire
	fuzzFlush // FlushClient of the IPv4 address in the first 4 frame bytes
	fuzzOps
)

const fuzzMaxFlows = 8

func fuzzConfig() Config {
	return Config{
		MaxFlows:   fuzzMaxFlows,
		PublicIPv4: pub4,
		PublicIPv6: pub6,
		PortMin:    1024,
		PortMax:    1031,
		Rand:       rand.NewPCG(7, 7),
		Admit:      func(p *packet.Packet) bool { return p.Tuple.DstPort != 22 },
	}
}

func record(op byte, frame []byte) []byte {
	r := []byte{op, 0, 0}
	binary.BigEndian.PutUint16(r[1:], uint16(len(frame)))
	return append(r, frame...)
}

// seedBuilder runs a twin table so that seeds can answer on the outside
// ports the fuzz table (same seed) will allocate.
type seedBuilder struct {
	tb        *Table
	now       time.Time
	seq       []byte
	forwarded int
}

func (s *seedBuilder) out(f []byte) uint16 {
	s.seq = append(s.seq, record(fuzzOut, f)...)
	if v, _ := s.tb.Outbound(f, s.now); v == Forward {
		s.forwarded++
	}
	var p packet.Packet
	packet.Parse(f, &p)
	return p.Tuple.SrcPort
}

func (s *seedBuilder) in(f []byte) {
	s.seq = append(s.seq, record(fuzzIn, f)...)
	if v, _ := s.tb.Inbound(f, s.now); v == Forward {
		s.forwarded++
	}
}

// fuzzSeeds returns the seed sequences and how many of their frames the
// twin table forwarded.
func fuzzSeeds(t testing.TB) (seeds [][]byte, forwarded int) {
	newB := func() *seedBuilder { return &seedBuilder{tb: mustNew(t, fuzzConfig()), now: t0} }

	b := newB() // UDP, TCP and echo round trips, then an ICMP error
	p := b.out(udpOut(client4, remote4, 5353, 53))
	b.in(udpIn(remote4, pub4, 53, p))
	q := b.out(tcpFrame(client4, remote4, 40000, 443, packet.TCPFlagSYN))
	b.in(tcpFrame(remote4, pub4, 443, q, packet.TCPFlagSYN|packet.TCPFlagACK))
	b.in(tcpFrame(remote4, pub4, 443, q, packet.TCPFlagFIN|packet.TCPFlagACK))
	e := b.out(pt.Frame(client4, remote4, packet.ProtoICMPv4, pt.Echo(client4, remote4, packet.ICMPv4EchoRequest, 9, 1, nil)))
	b.in(pt.Frame(remote4, pub4, packet.ProtoICMPv4, pt.Echo(remote4, pub4, packet.ICMPv4EchoReply, e, 1, nil)))
	quote := ipOf(udpOut(pub4, remote4, p, 53))
	b.in(pt.Frame(router4, pub4, packet.ProtoICMPv4, pt.ICMP(router4, pub4, packet.ICMPv4TimeExceeded, 0, 0, quote)))
	seeds = append(seeds, b.seq)
	forwarded += b.forwarded

	b = newB() // IPv6
	p = b.out(udpOut(client6, remote6, 5353, 53))
	b.in(udpIn(remote6, pub6, 53, p))
	quote = ipOf(udpOut(pub6, remote6, p, 53))
	b.in(pt.Frame(router6, pub6, packet.ProtoICMPv6, pt.ICMP(router6, pub6, packet.ICMPv6DestUnreach, 4, 0, quote)))
	e = b.out(pt.Frame(client6, remote6, packet.ProtoICMPv6, pt.Echo(client6, remote6, packet.ICMPv6EchoRequest, 9, 1, nil)))
	b.in(pt.Frame(remote6, pub6, packet.ProtoICMPv6, pt.Echo(remote6, pub6, packet.ICMPv6EchoReply, e, 1, nil)))
	seeds = append(seeds, b.seq)
	forwarded += b.forwarded

	b = newB() // overflow the table and the port range, expire, flush
	for i := range 12 {
		b.out(udpOut(client4, remote4, uint16(100+i), 53))
	}
	b.out(tcpFrame(client4, remote4, 1, 22, packet.TCPFlagSYN))
	b.seq = append(b.seq, record(fuzzTick|30<<2, nil)...)
	b.seq = append(b.seq, record(fuzzFlush, client4.AsSlice())...)
	seeds = append(seeds, b.seq)
	forwarded += b.forwarded
	return seeds, forwarded
}

func FuzzTable(f *testing.F) {
	seeds, _ := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tb := mustNew(t, fuzzConfig())
		now := t0
		var before packet.Packet
		for len(data) >= 3 {
			op := data[0]
			n := min(int(binary.BigEndian.Uint16(data[1:])), len(data)-3)
			frame := data[3 : 3+n]
			data = data[3+n:]

			// Transport checksum validity must survive translation.
			wasValid := false
			if packet.Parse(frame, &before) == nil {
				wasValid, _ = packet.TransportChecksumValid(frame, &before)
			}
			var v Verdict
			switch op % fuzzOps {
			case fuzzOut:
				v, _ = tb.Outbound(frame, now)
			case fuzzIn:
				v, _ = tb.Inbound(frame, now)
			case fuzzTick:
				now = now.Add(time.Duration(op>>2) * 10 * time.Second)
				tb.Expire(now)
			case fuzzFlush:
				if len(frame) >= 4 {
					tb.FlushClient(netip.AddrFrom4([4]byte(frame)))
				}
			}
			checkInvariants(t, tb)
			if v == Forward && op%fuzzOps <= fuzzIn {
				var after packet.Packet
				if err := packet.Parse(frame, &after); err != nil {
					t.Fatalf("translated frame no longer parses: %v", err)
				}
				if valid, ok := packet.TransportChecksumValid(frame, &after); wasValid && ok && !valid {
					t.Fatalf("translation broke a valid transport checksum")
				}
			}
		}
	})
}

// TestFuzzSeedsTranslate makes sure the seeds reach the translation paths
// (a seed whose replies miss their flows would leave Inbound unexplored).
func TestFuzzSeedsTranslate(t *testing.T) {
	// 8 + 5 frames that should translate, plus 8 of the 12 overflow flows
	// (the port range has 8 ports for one destination).
	if _, fwd := fuzzSeeds(t); fwd != 8+5+8 {
		t.Errorf("seeds forwarded %d frames, want %d", fwd, 8+5+8)
	}
}
