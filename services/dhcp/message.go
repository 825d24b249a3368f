package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Ports of RFC 2131 §4.1.
const (
	ServerPort = 67
	ClientPort = 68
)

// Op is the BOOTP message op code.
type Op uint8

// Op codes.
const (
	BootRequest Op = 1
	BootReply   Op = 2
)

// HTypeEthernet is the hardware type of 10 Mb Ethernet (and all its
// successors) in the htype field (RFC 1700, ARP hardware types).
const HTypeEthernet = 1

// FlagBroadcast is the one defined bit of the flags field: a client that
// cannot receive unicast datagrams before it has an address asks servers
// and relays to broadcast their replies (RFC 2131 §4.1).
const FlagBroadcast = 0x8000

// Offsets and sizes of the fixed part of a message (RFC 2131 §2, figure 1)
// followed by the magic cookie that starts the options (RFC 2131 §3).
const (
	offOp      = 0
	offHType   = 1
	offHLen    = 2
	offHops    = 3
	offXid     = 4
	offSecs    = 8
	offFlags   = 10
	offCIAddr  = 12
	offYIAddr  = 16
	offSIAddr  = 20
	offGIAddr  = 24
	offCHAddr  = 28
	offSName   = 44
	offFile    = 108
	offCookie  = 236
	offOptions = 240

	chaddrLen = 16
	snameLen  = 64
	fileLen   = 128

	// HeaderLen is the size of the fixed header plus the magic cookie:
	// the smallest DHCP message.
	HeaderLen = offOptions

	// minMessageLen is the size Marshal pads messages to: RFC 1542 §2.1
	// lets BOOTP relays drop messages shorter than 300 bytes.
	minMessageLen = 300
)

// magicCookie marks the start of the options (RFC 2131 §3, 99.130.83.99).
var magicCookie = [4]byte{99, 130, 83, 99}

// Message is a DHCP message: the BOOTP header and its options. Addresses
// are always IPv4 in a parsed message (0.0.0.0 when unset); Marshal
// writes an invalid Addr as 0.0.0.0.
type Message struct {
	Op     Op
	HType  uint8
	HLen   uint8
	Hops   uint8
	Xid    uint32
	Secs   uint16
	Flags  uint16
	CIAddr netip.Addr // client's address, when it has one (renewing)
	YIAddr netip.Addr // "your" address: the one offered or leased
	SIAddr netip.Addr // next server for booting, unused here
	GIAddr netip.Addr // relay agent
	CHAddr [chaddrLen]byte
	// SName and File are the server host name and boot file name. When
	// a received message overloaded them with options (option 52), Parse
	// moves those options into Options and leaves these fields zero.
	SName [snameLen]byte
	File  [fileLen]byte
	// Options excludes Pad, End and Overload; see Options.
	Options Options
}

// HWAddr returns the client hardware address: the first HLen bytes of
// CHAddr (all 16 if HLen claims more).
func (m *Message) HWAddr() []byte {
	return m.CHAddr[:min(int(m.HLen), chaddrLen)]
}

// Type is the DHCP message type (option 53), 0 if absent or malformed.
func (m *Message) Type() MessageType {
	b, ok := m.Options.Get(OptMessageType)
	if !ok || len(b) != 1 {
		return 0
	}
	return MessageType(b[0])
}

// Parse errors. Parse wraps them with details; test with errors.Is.
var (
	ErrShort    = errors.New("dhcp: message shorter than the BOOTP header")
	ErrCookie   = errors.New("dhcp: no DHCP magic cookie")
	ErrOption   = errors.New("dhcp: malformed option")
	ErrOverload = errors.New("dhcp: bad option overload")
)

// Parse decodes a DHCP message. It copies what it keeps, so b may be
// reused afterwards. Options are read from the options field and, when
// option 52 says so, from the file then the sname field (RFC 2131 §4.1);
// an option that appears several times is one long option whose parts are
// concatenated in order (RFC 3396).
func Parse(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if [4]byte(b[offCookie:offOptions]) != magicCookie {
		return nil, ErrCookie
	}
	m := &Message{
		Op:     Op(b[offOp]),
		HType:  b[offHType],
		HLen:   b[offHLen],
		Hops:   b[offHops],
		Xid:    binary.BigEndian.Uint32(b[offXid:]),
		Secs:   binary.BigEndian.Uint16(b[offSecs:]),
		Flags:  binary.BigEndian.Uint16(b[offFlags:]),
		CIAddr: netip.AddrFrom4([4]byte(b[offCIAddr:])),
		YIAddr: netip.AddrFrom4([4]byte(b[offYIAddr:])),
		SIAddr: netip.AddrFrom4([4]byte(b[offSIAddr:])),
		GIAddr: netip.AddrFrom4([4]byte(b[offGIAddr:])),
		CHAddr: [chaddrLen]byte(b[offCHAddr:]),
		SName:  [snameLen]byte(b[offSName:]),
		File:   [fileLen]byte(b[offFile:]),
	}
	var p optionParser
	overload, err := p.parse(b[offOptions:], true)
	if err != nil {
		return nil, fmt.Errorf("%w in options field", err)
	}
	if overload&^overloadBoth != 0 {
		return nil, fmt.Errorf("%w: value %d", ErrOverload, overload)
	}
	if overload&overloadFile != 0 {
		if _, err := p.parse(b[offFile:offFile+fileLen], false); err != nil {
			return nil, fmt.Errorf("%w in file field", err)
		}
		m.File = [fileLen]byte{}
	}
	if overload&overloadSName != 0 {
		if _, err := p.parse(b[offSName:offSName+snameLen], false); err != nil {
			return nil, fmt.Errorf("%w in sname field", err)
		}
		m.SName = [snameLen]byte{}
	}
	m.Options = p.opts
	return m, nil
}

// Values of option 52 (RFC 2132 §9.3): which header fields hold options.
const (
	overloadFile  = 1
	overloadSName = 2
	overloadBoth  = overloadFile | overloadSName
)

// optionParser accumulates options across the fields that hold them.
type optionParser struct {
	opts Options
	// index is 1 + the position in opts of each code seen, so that the
	// parts of a split option are joined in constant time.
	index [256]uint16
}

// parse reads options from b up to End or the end of b (a missing End is
// tolerated, as most clients do). Overload is only meaningful in the
// options field (top); the value found there is returned.
func (p *optionParser) parse(b []byte, top bool) (overload int, err error) {
	for i := 0; i < len(b); {
		code := OptionCode(b[i])
		i++
		switch code {
		case OptPad:
			continue
		case OptEnd:
			return overload, nil
		}
		if i >= len(b) {
			return 0, fmt.Errorf("%w: option %d has no length", ErrOption, code)
		}
		n := int(b[i])
		i++
		if n > len(b)-i {
			return 0, fmt.Errorf("%w: option %d of %d bytes runs past the end", ErrOption, code, n)
		}
		data := b[i : i+n]
		i += n
		if code == OptOverload {
			if !top {
				continue // only the options field may overload
			}
			if n != 1 || overload != 0 {
				return 0, fmt.Errorf("%w: %d bytes", ErrOverload, n)
			}
			overload = int(data[0])
			if overload == 0 {
				return 0, fmt.Errorf("%w: value 0", ErrOverload)
			}
			continue
		}
		if j := p.index[code]; j != 0 {
			o := &p.opts[j-1]
			o.Data = append(o.Data, data...)
			continue
		}
		p.opts = append(p.opts, Option{Code: code, Data: append([]byte{}, data...)})
		p.index[code] = uint16(len(p.opts))
	}
	return overload, nil
}

// Marshal encodes m, padded to the 300 bytes BOOTP relays expect. Options
// longer than 255 bytes are split (RFC 3396); Marshal never overloads the
// sname and file fields. It fails on non-IPv4 addresses and on options
// coded Pad, End or Overload.
func (m *Message) Marshal() ([]byte, error) {
	n := HeaderLen + 1
	for _, o := range m.Options {
		switch o.Code {
		case OptPad, OptEnd, OptOverload:
			return nil, fmt.Errorf("dhcp: cannot marshal option %d", o.Code)
		}
		n += len(o.Data) + 2*max(1, (len(o.Data)+254)/255)
	}
	b := make([]byte, max(n, minMessageLen))
	b[offOp] = byte(m.Op)
	b[offHType] = m.HType
	b[offHLen] = m.HLen
	b[offHops] = m.Hops
	binary.BigEndian.PutUint32(b[offXid:], m.Xid)
	binary.BigEndian.PutUint16(b[offSecs:], m.Secs)
	binary.BigEndian.PutUint16(b[offFlags:], m.Flags)
	for _, f := range []struct {
		off int
		a   netip.Addr
	}{{offCIAddr, m.CIAddr}, {offYIAddr, m.YIAddr}, {offSIAddr, m.SIAddr}, {offGIAddr, m.GIAddr}} {
		if !f.a.IsValid() {
			continue
		}
		if !f.a.Is4() {
			return nil, fmt.Errorf("dhcp: %v is not an IPv4 address", f.a)
		}
		a4 := f.a.As4()
		copy(b[f.off:], a4[:])
	}
	copy(b[offCHAddr:], m.CHAddr[:])
	copy(b[offSName:], m.SName[:])
	copy(b[offFile:], m.File[:])
	copy(b[offCookie:], magicCookie[:])
	i := offOptions
	for _, o := range m.Options {
		data := o.Data
		for first := true; first || len(data) > 0; first = false {
			k := min(len(data), 255)
			b[i], b[i+1] = byte(o.Code), byte(k)
			i += 2 + copy(b[i+2:], data[:k])
			data = data[k:]
		}
	}
	b[i] = byte(OptEnd) // the rest is already Pad
	return b, nil
}
