package packet

import "encoding/binary"

// IPv4 header layout (RFC 791 section 3.1).
const (
	IPv4MinHeaderSize = 20
	IPv4MaxHeaderSize = 60
	ipv4VerIHLOff     = 0
	ipv4TOSOff        = 1
	ipv4TotalLenOff   = 2
	ipv4IDOff         = 4
	ipv4FlagsFragOff  = 6
	ipv4TTLOff        = 8
	ipv4ProtoOff      = 9
	ipv4ChecksumOff   = 10
	ipv4SrcOff        = 12
	ipv4DstOff        = 16
	IPv4AddrSize      = 4

	ipv4FlagDF       = 0x4000
	ipv4FlagMF       = 0x2000
	ipv4FragOffMask  = 0x1fff
	ipv4OptEnd       = 0 // end of option list
	ipv4OptNOP       = 1 // no operation (one byte, no length)
	ipv4OptMinLength = 2 // type + length
)

// IPv4 is a view of an IPv4 packet (header and payload, without Ethernet
// padding), obtained from ParseIPv4.
type IPv4 []byte

// ParseIPv4 checks the version, header length, option list, total length and
// header checksum of the packet at the start of b, and returns a view cut to
// the total length (dropping link-layer padding).
func ParseIPv4(b []byte) (IPv4, error) {
	hl, err := checkIPv4Header(b)
	if err != nil {
		return nil, err
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLenOff:]))
	if tl < hl {
		return nil, errAt(LayerIPv4, KindBadTotalLength)
	}
	if tl > len(b) {
		return nil, errAt(LayerIPv4, KindTruncated)
	}
	if Checksum(b[:hl]) != 0 {
		return nil, errAt(LayerIPv4, KindBadChecksum)
	}
	return IPv4(b[:tl]), nil
}

// checkIPv4Header validates what every IPv4 header needs, including the one
// quoted inside an ICMP error (whose total length may exceed the quote), and
// returns the header length in bytes.
func checkIPv4Header(b []byte) (int, error) {
	if len(b) < IPv4MinHeaderSize {
		return 0, errAt(LayerIPv4, KindTruncated)
	}
	if b[ipv4VerIHLOff]>>4 != 4 {
		return 0, errAt(LayerIPv4, KindBadVersion)
	}
	hl := int(b[ipv4VerIHLOff]&0x0f) * 4
	if hl < IPv4MinHeaderSize {
		return 0, errAt(LayerIPv4, KindBadHeaderLength)
	}
	if hl > len(b) {
		return 0, errAt(LayerIPv4, KindTruncated)
	}
	if err := checkIPv4Options(b[IPv4MinHeaderSize:hl]); err != nil {
		return 0, err
	}
	return hl, nil
}

// checkIPv4Options walks the option list (RFC 791 "Options"): every option
// but End and NOP carries a length of at least 2 that must stay inside the
// header. The walk always advances, so it ends within 40 steps.
func checkIPv4Options(opts []byte) error {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case ipv4OptEnd:
			return nil
		case ipv4OptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return errAt(LayerIPv4, KindBadOption)
		}
		l := int(opts[i+1])
		if l < ipv4OptMinLength || i+l > len(opts) {
			return errAt(LayerIPv4, KindBadOption)
		}
		i += l
	}
	return nil
}

// HeaderLen returns the header length in bytes (20 to 60).
func (ip IPv4) HeaderLen() int { return int(ip[ipv4VerIHLOff]&0x0f) * 4 }

// TotalLen returns the total length field.
func (ip IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(ip[ipv4TotalLenOff:])) }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (ip IPv4) TOS() uint8 { return ip[ipv4TOSOff] }

// ID returns the identification field.
func (ip IPv4) ID() uint16 { return binary.BigEndian.Uint16(ip[ipv4IDOff:]) }

// DontFragment reports the DF flag.
func (ip IPv4) DontFragment() bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&ipv4FlagDF != 0
}

// MoreFragments reports the MF flag.
func (ip IPv4) MoreFragments() bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&ipv4FlagMF != 0
}

// FragmentOffset returns the fragment offset in bytes.
func (ip IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&ipv4FragOffMask) * 8
}

// TTL returns the time-to-live.
func (ip IPv4) TTL() uint8 { return ip[ipv4TTLOff] }

// Protocol returns the payload protocol number.
func (ip IPv4) Protocol() uint8 { return ip[ipv4ProtoOff] }

// Checksum returns the header checksum field.
func (ip IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(ip[ipv4ChecksumOff:]) }

// Src returns the source address.
func (ip IPv4) Src() Addr { return AddrFrom4([4]byte(ip[ipv4SrcOff:])) }

// Dst returns the destination address.
func (ip IPv4) Dst() Addr { return AddrFrom4([4]byte(ip[ipv4DstOff:])) }

// Options returns the option bytes (possibly empty).
func (ip IPv4) Options() []byte { return ip[IPv4MinHeaderSize:ip.HeaderLen()] }

// Payload returns the bytes after the header.
func (ip IPv4) Payload() []byte { return ip[ip.HeaderLen():] }

// SetSrc rewrites the source address and updates the header checksum
// incrementally. The transport checksum is the caller's to update.
func (ip IPv4) SetSrc(a [4]byte) { ip.setAddr(ipv4SrcOff, a) }

// SetDst rewrites the destination address and updates the header checksum.
func (ip IPv4) SetDst(a [4]byte) { ip.setAddr(ipv4DstOff, a) }

func (ip IPv4) setAddr(off int, a [4]byte) {
	f := ip[off : off+IPv4AddrSize]
	ip.SetChecksum(UpdateChecksumBytes(ip.Checksum(), f, a[:]))
	copy(f, a[:])
}

// SetTTL sets the time-to-live and updates the header checksum.
func (ip IPv4) SetTTL(ttl uint8) {
	old := binary.BigEndian.Uint16(ip[ipv4TTLOff:])
	ip[ipv4TTLOff] = ttl
	ip.SetChecksum(UpdateChecksum(ip.Checksum(), old, binary.BigEndian.Uint16(ip[ipv4TTLOff:])))
}

// SetChecksum stores the header checksum field.
func (ip IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(ip[ipv4ChecksumOff:], c) }

// ComputeChecksum returns the header checksum computed from scratch (with the
// checksum field taken as zero).
func (ip IPv4) ComputeChecksum() uint16 {
	hl := ip.HeaderLen()
	s := Sum(ip[:ipv4ChecksumOff], 0)
	s = Sum(ip[ipv4ChecksumOff+2:hl], s)
	return Finish(s)
}
