package packet

// EtherType values (IEEE registry).
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeVLAN uint16 = 0x8100 // IEEE 802.1Q customer tag
	EtherTypeQinQ uint16 = 0x88a8 // IEEE 802.1ad service tag (stacked VLANs: unsupported)
	EtherTypeIPv6 uint16 = 0x86dd

	// etherTypeMin is the smallest value that is an EtherType rather than an
	// IEEE 802.3 length.
	etherTypeMin uint16 = 0x0600
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), also used
// as IPv6 Next Header values.
const (
	ProtoHopByHop uint8 = 0
	ProtoICMPv4   uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoICMPv6   uint8 = 58
	ProtoNoNext   uint8 = 59
	ProtoDestOpts uint8 = 60
)

// ICMPv4 message types (RFC 792).
const (
	ICMPv4EchoReply    uint8 = 0
	ICMPv4DestUnreach  uint8 = 3
	ICMPv4SourceQuench uint8 = 4
	ICMPv4Redirect     uint8 = 5
	ICMPv4EchoRequest  uint8 = 8
	ICMPv4TimeExceeded uint8 = 11
	ICMPv4ParamProblem uint8 = 12

	// ICMPv4CodeAdminProhibited is the destination-unreachable code for
	// "communication administratively prohibited" (RFC 1812 section 5.2.7.1).
	ICMPv4CodeAdminProhibited uint8 = 13
)

// ICMPv6 message types (RFC 4443).
const (
	ICMPv6DestUnreach  uint8 = 1
	ICMPv6PacketTooBig uint8 = 2
	ICMPv6TimeExceeded uint8 = 3
	ICMPv6ParamProblem uint8 = 4
	ICMPv6EchoRequest  uint8 = 128
	ICMPv6EchoReply    uint8 = 129
)

// TCP flag bits (byte 13 of the header).
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagPSH uint8 = 0x08
	TCPFlagACK uint8 = 0x10
	TCPFlagURG uint8 = 0x20
	TCPFlagECE uint8 = 0x40
	TCPFlagCWR uint8 = 0x80
)
