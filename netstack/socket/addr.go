package socket

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Sizes of Linux's socket address structures.
const (
	sizeofSockaddrIn  = unix.SizeofSockaddrInet4 // 16
	sizeofSockaddrIn6 = unix.SizeofSockaddrInet6 // 28
	// sin6LenRFC2133 is the sockaddr_in6 of RFC 2133, without
	// sin6_scope_id, which Linux still accepts.
	sin6LenRFC2133   = 24
	sizeofSockaddrNl = unix.SizeofSockaddrNetlink // 12
)

// ne is the byte order of the fields Linux keeps in host order
// (sa_family, sin6_scope_id, nl_pid...).
var ne = binary.NativeEndian

// saFamily is the sa_family of a sockaddr, or -1 if it is too short to
// have one.
func saFamily(sa []byte) int {
	if len(sa) < 2 {
		return -1
	}
	return int(ne.Uint16(sa))
}

// parseIn reads a sockaddr_in of at least 16 bytes, whatever its family
// field says; callers check the family first.
func parseIn(sa []byte) tcpip.FullAddress {
	return tcpip.FullAddress{
		Port: binary.BigEndian.Uint16(sa[2:4]),
		Addr: ipAddr(sa[4:8]),
	}
}

// ipAddr converts an address; the unspecified address (0.0.0.0, ::)
// becomes gVisor's empty address, which is what its endpoints take for
// "any".
func ipAddr(b []byte) tcpip.Address {
	for _, x := range b {
		if x != 0 {
			return tcpip.AddrFromSlice(b)
		}
	}
	return tcpip.Address{}
}

// parseIn6 reads a sockaddr_in6 of at least 24 bytes; sin6_scope_id, if
// present and the address is link-local, becomes the NIC.
func parseIn6(sa []byte) tcpip.FullAddress {
	fa := tcpip.FullAddress{
		Port: binary.BigEndian.Uint16(sa[2:4]),
		Addr: ipAddr(sa[8:24]),
	}
	if len(sa) >= sizeofSockaddrIn6 && isLinkLocal6(fa.Addr) {
		fa.NIC = tcpip.NICID(ne.Uint32(sa[24:28]))
	}
	return fa
}

func isLinkLocal6(a tcpip.Address) bool {
	return a.Len() == 16 && (header.IsV6LinkLocalUnicastAddress(a) || header.IsV6LinkLocalMulticastAddress(a))
}

// v4Mapped returns the IPv4-mapped IPv6 address of a 4-byte address.
func v4Mapped(a tcpip.Address) tcpip.Address {
	var b [16]byte
	b[10], b[11] = 0xff, 0xff
	copy(b[12:], a.AsSlice())
	return tcpip.AddrFrom16(b)
}

// encodeInet renders fa as a socket of family would see it: a
// sockaddr_in for AF_INET, a sockaddr_in6 for AF_INET6, IPv4 addresses
// mapped (::ffff:a.b.c.d) and link-local ones with their scope id.
func encodeInet(family int, fa tcpip.FullAddress) []byte {
	if family == unix.AF_INET {
		b := make([]byte, sizeofSockaddrIn)
		ne.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], fa.Port)
		if fa.Addr.Len() == 4 {
			copy(b[4:8], fa.Addr.AsSlice())
		}
		return b
	}
	b := make([]byte, sizeofSockaddrIn6)
	ne.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], fa.Port)
	switch fa.Addr.Len() {
	case 4:
		m := v4Mapped(fa.Addr)
		copy(b[8:24], m.AsSlice())
	case 16:
		copy(b[8:24], fa.Addr.AsSlice())
		if isLinkLocal6(fa.Addr) {
			ne.PutUint32(b[24:], uint32(fa.NIC))
		}
	}
	return b
}

// encodeNetlink renders a sockaddr_nl.
func encodeNetlink(pid, groups uint32) []byte {
	b := make([]byte, sizeofSockaddrNl)
	ne.PutUint16(b, unix.AF_NETLINK)
	ne.PutUint32(b[4:], pid)
	ne.PutUint32(b[8:], groups)
	return b
}
