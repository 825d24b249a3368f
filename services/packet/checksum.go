package packet

import "encoding/binary"

// Sum adds b to the Internet checksum accumulator acc (RFC 1071) and returns
// the new accumulator folded to 16 bits (not complemented). Chained calls are
// equivalent to one call over the concatenation as long as every chunk but
// the last has even length.
func Sum(b []byte, acc uint32) uint32 {
	s := uint64(acc)
	for len(b) >= 8 {
		// Adding 32-bit big-endian words is equivalent modulo 0xffff to adding
		// 16-bit words, because 2^16 = 1 (mod 0xffff).
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return uint32(fold64(s))
}

func fold64(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// Checksum returns the Internet checksum of b: the complement of its sum.
func Checksum(b []byte) uint16 { return ^uint16(Sum(b, 0)) }

// Finish complements a folded accumulator into the value stored in a header.
func Finish(acc uint32) uint16 { return ^fold64(uint64(acc)) }

// PseudoHeaderSum returns the accumulator for the TCP/UDP/ICMPv6 pseudo
// header: RFC 793 layout for IPv4 sources, RFC 8200 section 8.1 for IPv6.
// length is the transport length (header plus payload).
func PseudoHeaderSum(proto uint8, src, dst Addr, length int) uint32 {
	var s uint64
	if src.Is4() {
		s = uint64(binary.BigEndian.Uint32(src[12:])) + uint64(binary.BigEndian.Uint32(dst[12:]))
	} else {
		for i := 0; i < 16; i += 4 {
			s += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
		}
	}
	s += uint64(proto) + uint64(uint32(length))
	return uint32(fold64(s))
}

// UpdateChecksum returns checksum hc after one 16-bit word of the covered
// data changed from old to new, by RFC 1624 equation 3:
// HC' = ~(~HC + ~m + m').
func UpdateChecksum(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	return ^fold64(uint64(s))
}

// UpdateChecksumBytes is UpdateChecksum for a changed field of even length
// (an address). old and new must have the same even length.
func UpdateChecksumBytes(hc uint16, old, new []byte) uint16 {
	s := uint64(^hc)
	for i := 0; i+1 < len(old) && i+1 < len(new); i += 2 {
		s += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return ^fold64(s)
}
