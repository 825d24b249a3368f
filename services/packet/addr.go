package packet

import (
	"net/netip"
)

// Addr is an IPv4 or IPv6 address held in 16 bytes, IPv4 in the IPv4-mapped
// form ::ffff:a.b.c.d. Unlike netip.Addr it holds no pointer, so tables of
// millions of tuples cost the garbage collector nothing to scan, and it can
// be hashed as plain bytes. Parse rejects IPv6 packets carrying IPv4-mapped
// addresses, so the mapped form always means a real IPv4 packet.
type Addr [16]byte

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// AddrFrom4 returns the Addr for an IPv4 address.
func AddrFrom4(b [4]byte) Addr {
	var a Addr
	copy(a[:12], v4Prefix[:])
	copy(a[12:], b[:])
	return a
}

// set4 stores the IPv4 address in the first 4 bytes of b into a.
func (a *Addr) set4(b []byte) {
	*(*[12]byte)(a[:12]) = v4Prefix
	*(*[4]byte)(a[12:]) = [4]byte(b)
}

// AddrFromNetIP converts a netip.Addr (zone dropped). The zero netip.Addr
// maps to the zero Addr.
func AddrFromNetIP(ip netip.Addr) Addr {
	if !ip.IsValid() {
		return Addr{}
	}
	return Addr(ip.As16())
}

// Is4 reports whether a is an IPv4 address.
func (a Addr) Is4() bool { return [12]byte(a[:12]) == v4Prefix }

// As4 returns the IPv4 bytes of a; meaningful only when a.Is4().
func (a Addr) As4() [4]byte { return [4]byte(a[12:]) }

// NetIP converts a to a netip.Addr (unmapped for IPv4).
func (a Addr) NetIP() netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a)
}

// IsZero reports whether a is the zero value (no address).
func (a Addr) IsZero() bool { return a == Addr{} }

func (a Addr) String() string { return a.NetIP().String() }

// Tuple identifies one direction of a flow. For TCP and UDP the ports are the
// transport ports. For ICMP echo the identifier stands in for a port on the
// requester's side: an echo request has SrcPort = identifier, DstPort = 0, and
// an echo reply DstPort = identifier, SrcPort = 0, so Reverse maps a request
// tuple to its reply tuple exactly as it does for TCP and UDP.
type Tuple struct {
	Src, Dst         Addr
	SrcPort, DstPort uint16
	Proto            uint8 // IP protocol number (ProtoTCP, ProtoUDP, ProtoICMPv4, ProtoICMPv6)
}

// Reverse returns the tuple of the opposite direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}
