package packet

import "encoding/binary"

// TCP header layout (RFC 9293 section 3.1).
const (
	TCPMinHeaderSize = 20
	tcpSrcPortOff    = 0
	tcpDstPortOff    = 2
	tcpSeqOff        = 4
	tcpAckOff        = 8
	tcpDataOffOff    = 12
	tcpFlagsOff      = 13
	tcpWindowOff     = 14
	TCPChecksumOff   = 16
	tcpUrgentOff     = 18
)

// UDP header layout (RFC 768).
const (
	UDPHeaderSize  = 8
	udpSrcPortOff  = 0
	udpDstPortOff  = 2
	udpLengthOff   = 4
	UDPChecksumOff = 6
)

// ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share this header layout: type,
// code, checksum, then 4 bytes that hold identifier and sequence number for
// echo messages and are unused (or MTU/pointer) for error messages, which
// quote the offending packet after them.
const (
	ICMPHeaderSize  = 8
	icmpTypeOff     = 0
	icmpCodeOff     = 1
	ICMPChecksumOff = 2
	icmpIDOff       = 4
	icmpSeqOff      = 6

	// icmpQuotedTransport is how much of the offending packet's transport
	// header an ICMP error is guaranteed to quote (RFC 792): its first 8
	// bytes, enough for ports or an echo identifier.
	icmpQuotedTransport = 8
)

// TCP is a view of a TCP segment, obtained from ParseTCP.
type TCP []byte

// ParseTCP checks that b holds a whole TCP header including options.
func ParseTCP(b []byte) (TCP, error) {
	if len(b) < TCPMinHeaderSize {
		return nil, errAt(LayerTCP, KindTruncated)
	}
	hl := int(b[tcpDataOffOff]>>4) * 4
	if hl < TCPMinHeaderSize {
		return nil, errAt(LayerTCP, KindBadHeaderLength)
	}
	if hl > len(b) {
		return nil, errAt(LayerTCP, KindTruncated)
	}
	return TCP(b), nil
}

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[tcpSrcPortOff:]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[tcpDstPortOff:]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[tcpSeqOff:]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[tcpAckOff:]) }

// HeaderLen returns the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[tcpDataOffOff]>>4) * 4 }

// Flags returns the flag byte (TCPFlagFIN, ...).
func (t TCP) Flags() uint8 { return t[tcpFlagsOff] }

// Window returns the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[tcpWindowOff:]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[TCPChecksumOff:]) }

// SetChecksum stores the checksum field.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[TCPChecksumOff:], c) }

// SetSrcPort rewrites the source port, updating the checksum.
func (t TCP) SetSrcPort(p uint16) { t.setPort(tcpSrcPortOff, p) }

// SetDstPort rewrites the destination port, updating the checksum.
func (t TCP) SetDstPort(p uint16) { t.setPort(tcpDstPortOff, p) }

func (t TCP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(t[off:])
	binary.BigEndian.PutUint16(t[off:], p)
	t.SetChecksum(UpdateChecksum(t.Checksum(), old, p))
}

// Payload returns the bytes after the header.
func (t TCP) Payload() []byte { return t[t.HeaderLen():] }

// UDP is a view of a UDP datagram cut to its length field, obtained from
// ParseUDP.
type UDP []byte

// ParseUDP checks the header and the length field (at least 8, at most
// len(b)) and returns a view cut to that length.
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPHeaderSize {
		return nil, errAt(LayerUDP, KindTruncated)
	}
	l := int(binary.BigEndian.Uint16(b[udpLengthOff:]))
	if l < UDPHeaderSize {
		return nil, errAt(LayerUDP, KindBadLength)
	}
	if l > len(b) {
		return nil, errAt(LayerUDP, KindTruncated)
	}
	return UDP(b[:l]), nil
}

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[udpSrcPortOff:]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[udpDstPortOff:]) }

// Length returns the length field.
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[udpLengthOff:])) }

// Checksum returns the checksum field; 0 means "no checksum" over IPv4.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[UDPChecksumOff:]) }

// SetChecksum stores the checksum field.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[UDPChecksumOff:], c) }

// SetSrcPort rewrites the source port, updating a present checksum.
func (u UDP) SetSrcPort(p uint16) { u.setPort(udpSrcPortOff, p) }

// SetDstPort rewrites the destination port, updating a present checksum.
func (u UDP) SetDstPort(p uint16) { u.setPort(udpDstPortOff, p) }

func (u UDP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(u[off:])
	binary.BigEndian.PutUint16(u[off:], p)
	u.UpdateChecksum(UpdateChecksum(u.Checksum(), old, p))
}

// UpdateChecksum stores an incrementally updated checksum c, keeping the
// IPv4 "no checksum" value 0 and mapping a computed 0 to 0xffff (RFC 768).
func (u UDP) UpdateChecksum(c uint16) {
	if u.Checksum() == 0 {
		return
	}
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
}

// Payload returns the bytes after the header.
func (u UDP) Payload() []byte { return u[UDPHeaderSize:] }

// ICMP is a view of an ICMPv4 or ICMPv6 message, obtained from ParseICMPv4 or
// ParseICMPv6.
type ICMP []byte

// ParseICMPv4 checks that b holds the 8-byte ICMPv4 header.
func ParseICMPv4(b []byte) (ICMP, error) {
	if len(b) < ICMPHeaderSize {
		return nil, errAt(LayerICMPv4, KindTruncated)
	}
	return ICMP(b), nil
}

// ParseICMPv6 checks that b holds the 8-byte ICMPv6 header.
func ParseICMPv6(b []byte) (ICMP, error) {
	if len(b) < ICMPHeaderSize {
		return nil, errAt(LayerICMPv6, KindTruncated)
	}
	return ICMP(b), nil
}

// Type returns the message type.
func (c ICMP) Type() uint8 { return c[icmpTypeOff] }

// Code returns the message code.
func (c ICMP) Code() uint8 { return c[icmpCodeOff] }

// Checksum returns the checksum field.
func (c ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(c[ICMPChecksumOff:]) }

// SetChecksum stores the checksum field.
func (c ICMP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(c[ICMPChecksumOff:], v) }

// ID returns the echo identifier.
func (c ICMP) ID() uint16 { return binary.BigEndian.Uint16(c[icmpIDOff:]) }

// Seq returns the echo sequence number.
func (c ICMP) Seq() uint16 { return binary.BigEndian.Uint16(c[icmpSeqOff:]) }

// SetID rewrites the echo identifier, updating the checksum.
func (c ICMP) SetID(id uint16) {
	old := c.ID()
	binary.BigEndian.PutUint16(c[icmpIDOff:], id)
	c.SetChecksum(UpdateChecksum(c.Checksum(), old, id))
}

// Body returns the bytes after the 8-byte header: echo data, or the quoted
// packet of an error message.
func (c ICMP) Body() []byte { return c[ICMPHeaderSize:] }

// IsICMPv4Error reports whether an ICMPv4 type quotes an offending packet.
func IsICMPv4Error(t uint8) bool {
	switch t {
	case ICMPv4DestUnreach, ICMPv4SourceQuench, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// IsICMPv6Error reports whether an ICMPv6 type is one of the error messages
// RFC 4443 defines, which quote the offending packet. Other types below 128
// are errors of unknown format and are not looked into.
func IsICMPv6Error(t uint8) bool { return t >= ICMPv6DestUnreach && t <= ICMPv6ParamProblem }
