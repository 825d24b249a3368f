package packet

import "encoding/binary"

// ARP for Ethernet/IPv4 (RFC 826): the only combination a Qubes network
// carries.
const (
	ARPSize          = 28
	arpHTypeOff      = 0
	arpPTypeOff      = 2
	arpHLenOff       = 4
	arpPLenOff       = 5
	arpOpOff         = 6
	arpSHAOff        = 8
	arpSPAOff        = 14
	arpTHAOff        = 18
	arpTPAOff        = 24
	ARPHTypeEthernet = 1
	ARPOpRequest     = 1
	ARPOpReply       = 2
)

// ARP is a view of an Ethernet/IPv4 ARP message, obtained from ParseARP.
type ARP []byte

// ParseARP checks that b holds an Ethernet/IPv4 request or reply and returns
// a view of its 28 bytes.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < ARPSize {
		return nil, errAt(LayerARP, KindTruncated)
	}
	if binary.BigEndian.Uint16(b[arpHTypeOff:]) != ARPHTypeEthernet ||
		binary.BigEndian.Uint16(b[arpPTypeOff:]) != EtherTypeIPv4 ||
		b[arpHLenOff] != EthernetAddrSize || b[arpPLenOff] != 4 {
		return nil, errAt(LayerARP, KindUnsupported)
	}
	if op := binary.BigEndian.Uint16(b[arpOpOff:]); op != ARPOpRequest && op != ARPOpReply {
		return nil, errAt(LayerARP, KindUnsupported)
	}
	return ARP(b[:ARPSize]), nil
}

// Op returns ARPOpRequest or ARPOpReply.
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[arpOpOff:]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[arpSHAOff:]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() Addr { return AddrFrom4([4]byte(a[arpSPAOff:])) }

// TargetMAC returns the target hardware address.
func (a ARP) TargetMAC() MAC { return MAC(a[arpTHAOff:]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() Addr { return AddrFrom4([4]byte(a[arpTPAOff:])) }

// SetOp sets the operation.
func (a ARP) SetOp(op uint16) { binary.BigEndian.PutUint16(a[arpOpOff:], op) }

// SetSender sets the sender hardware and IPv4 protocol address.
func (a ARP) SetSender(m MAC, ip [4]byte) {
	copy(a[arpSHAOff:], m[:])
	copy(a[arpSPAOff:], ip[:])
}

// SetTarget sets the target hardware and IPv4 protocol address.
func (a ARP) SetTarget(m MAC, ip [4]byte) {
	copy(a[arpTHAOff:], m[:])
	copy(a[arpTPAOff:], ip[:])
}
