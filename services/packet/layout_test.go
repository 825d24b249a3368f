package packet

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLayout pins the header sizes and field offsets to the numbers in the
// RFCs that define them (RFC 791, 8200, 9293, 768, 792/4443, 826, IEEE 802.3
// and 802.1Q).
func TestLayout(t *testing.T) {
	got := map[string]int{
		"ethernet header": EthernetHeaderSize, "ethernet type": ethTypeOff, "vlan tag": EthernetVLANTagSize,
		"vlan inner type": ethVLANInnerTypeOff,
		"arp message":     ARPSize, "arp op": arpOpOff, "arp spa": arpSPAOff, "arp tpa": arpTPAOff,
		"ipv4 min header": IPv4MinHeaderSize, "ipv4 max header": IPv4MaxHeaderSize, "ipv4 total length": ipv4TotalLenOff,
		"ipv4 flags/fragment": ipv4FlagsFragOff, "ipv4 ttl": ipv4TTLOff, "ipv4 protocol": ipv4ProtoOff,
		"ipv4 checksum": ipv4ChecksumOff, "ipv4 src": ipv4SrcOff, "ipv4 dst": ipv4DstOff,
		"ipv6 header": IPv6HeaderSize, "ipv6 payload length": ipv6PayloadLenOff, "ipv6 next header": ipv6NextHeaderOff,
		"ipv6 hop limit": ipv6HopLimitOff, "ipv6 src": ipv6SrcOff, "ipv6 dst": ipv6DstOff, "ipv6 fragment header": ipv6FragHeaderSize,
		"tcp min header": TCPMinHeaderSize, "tcp data offset": tcpDataOffOff, "tcp flags": tcpFlagsOff, "tcp checksum": TCPChecksumOff,
		"udp header": UDPHeaderSize, "udp length": udpLengthOff, "udp checksum": UDPChecksumOff,
		"icmp header": ICMPHeaderSize, "icmp checksum": ICMPChecksumOff, "icmp id": icmpIDOff, "icmp seq": icmpSeqOff,
	}
	want := map[string]int{
		"ethernet header": 14, "ethernet type": 12, "vlan tag": 4, "vlan inner type": 16,
		"arp message": 28, "arp op": 6, "arp spa": 14, "arp tpa": 24,
		"ipv4 min header": 20, "ipv4 max header": 60, "ipv4 total length": 2, "ipv4 flags/fragment": 6, "ipv4 ttl": 8,
		"ipv4 protocol": 9, "ipv4 checksum": 10, "ipv4 src": 12, "ipv4 dst": 16,
		"ipv6 header": 40, "ipv6 payload length": 4, "ipv6 next header": 6, "ipv6 hop limit": 7, "ipv6 src": 8, "ipv6 dst": 24,
		"ipv6 fragment header": 8,
		"tcp min header":       20, "tcp data offset": 12, "tcp flags": 13, "tcp checksum": 16,
		"udp header": 8, "udp length": 4, "udp checksum": 6,
		"icmp header": 8, "icmp checksum": 2, "icmp id": 4, "icmp seq": 6,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout constants (-rfc +code):\n%s", diff)
	}
}
