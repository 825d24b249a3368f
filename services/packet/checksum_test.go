package packet

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

func TestChecksumVectors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want uint16
	}{
		// RFC 1071 section 3 example: the sum of these bytes is 0xddf2.
		{"rfc1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, ^uint16(0xddf2)},
		{"empty", nil, 0xffff},
		{"odd length pads with zero", []byte{0x12, 0x34, 0x56}, ^uint16(0x1234 + 0x5600)},
		{"carry wraps around", []byte{0xff, 0xff, 0x00, 0x01}, ^uint16(0x0001)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Checksum(tc.data); got != tc.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tc.want)
			}
		})
	}
}

// TestSumMatchesNaive compares the word-at-a-time Sum with the 16-bit
// reference over every length up to 200 and chained even-length chunks.
func TestSumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Checksum(b), pt.Checksum(b); got != want {
			t.Fatalf("len %d: Checksum = %#04x, naive = %#04x", n, got, want)
		}
		split := (n / 2) &^ 1
		if got, want := Finish(Sum(b[split:], Sum(b[:split], 0))), pt.Checksum(b); got != want {
			t.Fatalf("len %d split %d: chained = %#04x, naive = %#04x", n, split, got, want)
		}
	}
}

func TestUpdateChecksum(t *testing.T) {
	// RFC 1624 section 4 example: HC 0xdd2f, m 0x5555 -> m' 0x3285 gives
	// 0x0000 by equation 3 (equation 2 would give the wrong 0xffff).
	if got := UpdateChecksum(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Errorf("RFC 1624 example: got %#04x, want 0x0000", got)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		b := make([]byte, 40)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		hc := pt.Checksum(b)
		off := int(r.Uint32N(10)) * 2
		var old, nw [4]byte
		copy(old[:], b[off:off+4])
		for j := range nw {
			nw[j] = byte(r.Uint32())
		}
		copy(b[off:], nw[:])
		want := pt.Checksum(b)
		got := UpdateChecksumBytes(hc, old[:], nw[:])
		// Ones-complement has two zeros; the stored field must verify.
		if got != want && !(got^want == 0xffff && (got == 0 || want == 0)) {
			t.Fatalf("iteration %d: incremental %#04x, recomputed %#04x", i, got, want)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	seg4 := pt.TCP(c4, r4, 1234, 80, TCPFlagACK, []byte("abc"))
	seg6 := pt.UDP(c6, r6, 1234, 53, []byte("abcd"))
	tests := []struct {
		name     string
		proto    uint8
		src, dst Addr
		seg      []byte
	}{
		{"tcp over ipv4", ProtoTCP, A(c4), A(r4), seg4},
		{"udp over ipv6", ProtoUDP, A(c6), A(r6), seg6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acc := PseudoHeaderSum(tc.proto, tc.src, tc.dst, len(tc.seg))
			if got := Finish(Sum(tc.seg, acc)); got != 0 {
				t.Errorf("segment with builder checksum does not verify: residue %#04x", got)
			}
		})
	}
}

func TestSetters(t *testing.T) {
	frame := pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 40000, 443, TCPFlagACK, []byte("data")))
	var p Packet
	if err := Parse(frame, &p); err != nil {
		t.Fatal(err)
	}
	ip, _ := ParseIPv4(frame[p.L3Off:])
	tcp, _ := ParseTCP(frame[p.L4Off:p.L3End])
	newSrc := [4]byte{198, 51, 100, 7}
	old := ip.Src()
	ip.SetSrc(newSrc)
	tcp.SetChecksum(UpdateChecksumBytes(tcp.Checksum(), old[12:], newSrc[:]))
	tcp.SetSrcPort(61000)
	ip.SetTTL(63)
	if err := pt.Verify(frame); err != nil {
		t.Fatalf("after rewrite: %v", err)
	}
	if got := ip.ComputeChecksum(); got != ip.Checksum() {
		t.Errorf("ComputeChecksum = %#04x, stored %#04x", got, ip.Checksum())
	}
	if err := Parse(frame, &p); err != nil {
		t.Fatal(err)
	}
	want := Tuple{Src: AddrFrom4(newSrc), Dst: A(r4), SrcPort: 61000, DstPort: 443, Proto: ProtoTCP}
	if diff := cmp.Diff(want, p.Tuple); diff != "" {
		t.Errorf("tuple after rewrite (-want +got):\n%s", diff)
	}
	if p.HopLimit != 63 {
		t.Errorf("TTL = %d, want 63", p.HopLimit)
	}
}

func TestTransportChecksum(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"tcp4", pt.Frame(c4, r4, ProtoTCP, pt.TCP(c4, r4, 1, 2, TCPFlagSYN, []byte("x")))},
		{"udp4", pt.Frame(c4, r4, ProtoUDP, pt.UDP(c4, r4, 1, 2, []byte("xyz")))},
		{"icmp4", pt.Frame(c4, r4, ProtoICMPv4, pt.Echo(c4, r4, ICMPv4EchoRequest, 5, 6, []byte("ping")))},
		{"tcp6", pt.Frame(c6, r6, ProtoTCP, pt.TCP(c6, r6, 1, 2, TCPFlagSYN, nil))},
		{"udp6", pt.Frame(c6, r6, ProtoUDP, pt.UDP(c6, r6, 1, 2, []byte("x")))},
		{"icmp6", pt.Frame(c6, r6, ProtoICMPv6, pt.Echo(c6, r6, ICMPv6EchoRequest, 5, 6, nil))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := Parse(tc.frame, &p); err != nil {
				t.Fatal(err)
			}
			if valid, ok := TransportChecksumValid(tc.frame, &p); !ok || !valid {
				t.Fatalf("valid frame: valid=%v ok=%v", valid, ok)
			}
			tc.frame[p.PayloadOff-1] ^= 0x40 // damage one header byte
			if valid, _ := TransportChecksumValid(tc.frame, &p); valid {
				t.Errorf("damaged frame still verifies")
			}
		})
	}
}
