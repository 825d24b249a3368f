package dhcp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// OptionCode is a DHCP option's tag (RFC 2132).
type OptionCode uint8

// The options this package knows by name (RFC 2132 section numbers in
// parentheses). Others are kept by Parse as raw bytes.
const (
	OptPad           OptionCode = 0   // (3.1) one byte of nothing
	OptSubnetMask    OptionCode = 1   // (3.3)
	OptRouter        OptionCode = 3   // (3.5) list, preferred first
	OptDNS           OptionCode = 6   // (3.8) list, preferred first
	OptHostname      OptionCode = 12  // (3.14)
	OptDomainName    OptionCode = 15  // (3.17)
	OptMTU           OptionCode = 26  // (5.1) interface MTU, 16 bits
	OptBroadcast     OptionCode = 28  // (5.3) broadcast address
	OptRequestedIP   OptionCode = 50  // (9.1)
	OptLeaseTime     OptionCode = 51  // (9.2) seconds
	OptOverload      OptionCode = 52  // (9.3) sname/file hold options
	OptMessageType   OptionCode = 53  // (9.6)
	OptServerID      OptionCode = 54  // (9.7)
	OptParamRequest  OptionCode = 55  // (9.8) codes the client wants
	OptMessage       OptionCode = 56  // (9.9) error text, e.g. in a NAK
	OptMaxMessageLen OptionCode = 57  // (9.10)
	OptRenewalTime   OptionCode = 58  // (9.11) T1, seconds
	OptRebindingTime OptionCode = 59  // (9.12) T2, seconds
	OptClientID      OptionCode = 61  // (9.14)
	OptEnd           OptionCode = 255 // (3.2) end of the options
)

// MessageType is the value of option 53 (RFC 2132 §9.6).
type MessageType uint8

// Message types.
const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

func (t MessageType) String() string {
	names := [...]string{"", "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPDECLINE", "DHCPACK", "DHCPNAK", "DHCPRELEASE", "DHCPINFORM"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return "DHCP message type " + strconv.Itoa(int(t))
}

// Option is one option: its code and value, without the length byte.
type Option struct {
	Code OptionCode
	Data []byte
}

// Options is a message's options in the order they first appeared, each
// code at most once (Parse joins split options).
type Options []Option

// Get returns the value of option c.
func (o Options) Get(c OptionCode) ([]byte, bool) {
	for _, x := range o {
		if x.Code == c {
			return x.Data, true
		}
	}
	return nil, false
}

// Set replaces the value of option c, or appends it.
func (o *Options) Set(c OptionCode, data []byte) {
	for i := range *o {
		if (*o)[i].Code == c {
			(*o)[i].Data = data
			return
		}
	}
	*o = append(*o, Option{Code: c, Data: data})
}

// Addr returns an option holding exactly one IPv4 address.
func (o Options) Addr(c OptionCode) (netip.Addr, bool) {
	b, ok := o.Get(c)
	if !ok || len(b) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(b)), true
}

// Addrs returns an option holding a non-empty list of IPv4 addresses, or
// nil if it is absent or its length is not a multiple of 4.
func (o Options) Addrs(c OptionCode) []netip.Addr {
	b, _ := o.Get(c)
	if len(b) == 0 || len(b)%4 != 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(b)/4)
	for ; len(b) > 0; b = b[4:] {
		out = append(out, netip.AddrFrom4([4]byte(b)))
	}
	return out
}

// Uint32 returns an option holding a 32-bit number.
func (o Options) Uint32(c OptionCode) (uint32, bool) {
	b, ok := o.Get(c)
	if !ok || len(b) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

// Uint16 returns an option holding a 16-bit number.
func (o Options) Uint16(c OptionCode) (uint16, bool) {
	b, ok := o.Get(c)
	if !ok || len(b) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b), true
}

// Seconds returns a time option (lease, T1, T2). The all-ones value
// means infinity (RFC 2132 §9.2) and is returned as Infinite.
func (o Options) Seconds(c OptionCode) (time.Duration, bool) {
	s, ok := o.Uint32(c)
	if !ok {
		return 0, false
	}
	if s == 0xffffffff {
		return Infinite, true
	}
	return time.Duration(s) * time.Second, true
}

// Infinite is the duration of a lease that never expires.
const Infinite time.Duration = 1<<63 - 1

// SubnetMask returns option 1 as a prefix length, if it is a contiguous
// mask.
func (o Options) SubnetMask() (int, bool) {
	m, ok := o.Uint32(OptSubnetMask)
	if !ok {
		return 0, false
	}
	ones := 0
	for ; ones < 32 && m&(1<<(31-ones)) != 0; ones++ {
	}
	if m<<ones != 0 {
		return 0, false // not contiguous
	}
	return ones, true
}

// addrBytes encodes IPv4 addresses for an address option.
func addrBytes(as ...netip.Addr) []byte {
	b := make([]byte, 0, 4*len(as))
	for _, a := range as {
		a4 := a.As4()
		b = append(b, a4[:]...)
	}
	return b
}

func uint32Bytes(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// Clone returns a deep copy.
func (o Options) Clone() Options {
	out := slices.Clone(o)
	for i := range out {
		out[i].Data = slices.Clone(out[i].Data)
	}
	return out
}
