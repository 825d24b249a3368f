package packet

import (
	"encoding/binary"
	"fmt"
)

// Ethernet II header layout (IEEE 802.3 clause 3), with an optional 802.1Q tag
// between the source address and the EtherType.
const (
	EthernetAddrSize     = 6
	EthernetHeaderSize   = 14 // dst(6) src(6) type(2)
	EthernetVLANTagSize  = 4  // TPID(2) TCI(2)
	ethDstOff            = 0
	ethSrcOff            = 6
	ethTypeOff           = 12
	ethVLANTCIOff        = 14
	ethVLANInnerTypeOff  = 16
	EthernetVLANHdrSize  = EthernetHeaderSize + EthernetVLANTagSize
	EthernetMinFrameSize = 60 // without FCS; shorter IP packets arrive padded
)

// MAC is an Ethernet hardware address.
type MAC [EthernetAddrSize]byte

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Ethernet is a view of a frame starting with an Ethernet II header,
// obtained from ParseEthernet.
type Ethernet []byte

// ParseEthernet checks that b holds a complete Ethernet II header (with at
// most one 802.1Q tag) and returns it as a view over the whole frame.
func ParseEthernet(b []byte) (Ethernet, error) {
	if len(b) < EthernetHeaderSize {
		return nil, errAt(LayerEthernet, KindTruncated)
	}
	t := binary.BigEndian.Uint16(b[ethTypeOff:])
	if t == EtherTypeVLAN {
		if len(b) < EthernetVLANHdrSize {
			return nil, errAt(LayerEthernet, KindTruncated)
		}
		t = binary.BigEndian.Uint16(b[ethVLANInnerTypeOff:])
	}
	if t == EtherTypeVLAN || t == EtherTypeQinQ || t < etherTypeMin {
		return nil, errAt(LayerEthernet, KindUnsupported)
	}
	return Ethernet(b), nil
}

// Dst returns the destination address.
func (e Ethernet) Dst() MAC { return MAC(e[ethDstOff:]) }

// Src returns the source address.
func (e Ethernet) Src() MAC { return MAC(e[ethSrcOff:]) }

// SetDst overwrites the destination address.
func (e Ethernet) SetDst(m MAC) { copy(e[ethDstOff:], m[:]) }

// SetSrc overwrites the source address.
func (e Ethernet) SetSrc(m MAC) { copy(e[ethSrcOff:], m[:]) }

// Tagged reports whether the frame carries an 802.1Q tag.
func (e Ethernet) Tagged() bool {
	return binary.BigEndian.Uint16(e[ethTypeOff:]) == EtherTypeVLAN
}

// VLANTCI returns the 802.1Q tag control information (PCP, DEI, VID), or 0
// for an untagged frame.
func (e Ethernet) VLANTCI() uint16 {
	if !e.Tagged() {
		return 0
	}
	return binary.BigEndian.Uint16(e[ethVLANTCIOff:])
}

// EtherType returns the type of the payload (after the tag, if any).
func (e Ethernet) EtherType() uint16 {
	if e.Tagged() {
		return binary.BigEndian.Uint16(e[ethVLANInnerTypeOff:])
	}
	return binary.BigEndian.Uint16(e[ethTypeOff:])
}

// HeaderLen returns 14, or 18 for a tagged frame.
func (e Ethernet) HeaderLen() int {
	if e.Tagged() {
		return EthernetVLANHdrSize
	}
	return EthernetHeaderSize
}

// Payload returns the bytes after the header (including any padding).
func (e Ethernet) Payload() []byte { return e[e.HeaderLen():] }
