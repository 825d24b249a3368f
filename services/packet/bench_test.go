package packet

import (
	"testing"

	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

func BenchmarkParse(b *testing.B) {
	payload := make([]byte, 1400)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4-tcp", pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 40000, 443, TCPFlagACK, payload))},
		{"ipv4-udp", pt.Frame(c4, r4, ProtoUDP, pt.UDP(c4, r4, 40000, 53, payload[:64]))},
		{"ipv4-icmp-echo", pt.Frame(c4, r4, ProtoICMPv4, pt.Echo(c4, r4, ICMPv4EchoRequest, 1, 1, payload[:56]))},
		{"ipv4-icmp-error", pt.Frame(r4, c4, ProtoICMPv4, pt.ICMP(r4, c4, ICMPv4DestUnreach, 3, 0, pt.IP(c4, r4, ProtoUDP, pt.UDP(c4, r4, 1, 2, nil))))},
		{"ipv6-tcp", pt.Frame(c6, r6, ProtoTCP, pt.TCP(c6, r6, 40000, 443, TCPFlagACK, payload))},
		{"ipv6-udp", pt.Frame(c6, r6, ProtoUDP, pt.UDP(c6, r6, 40000, 53, payload[:64]))},
		{"ipv6-icmp-echo", pt.Frame(c6, r6, ProtoICMPv6, pt.Echo(c6, r6, ICMPv6EchoRequest, 1, 1, payload[:56]))},
	}
	for _, fr := range frames {
		b.Run(fr.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(fr.frame)))
			for b.Loop() {
				if err := Parse(fr.frame, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Checksum(buf)
	}
}

// TestParseDoesNotAllocate pins the zero-allocation property outside of
// benchmark runs, including for frames that fail to parse.
func TestParseDoesNotAllocate(t *testing.T) {
	frames := seedFrames()
	frames = append(frames, frames[0][:20], nil)
	var p Packet
	for i, fr := range frames {
		if n := testing.AllocsPerRun(50, func() { _ = Parse(fr, &p) }); n != 0 {
			t.Errorf("frame %d: %v allocations per Parse, want 0", i, n)
		}
	}
}
