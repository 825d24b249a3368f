package packet

import "fmt"

// Layer names the protocol layer in which a parse error was found.
type Layer uint8

// Layers, in the order a frame is parsed.
const (
	LayerEthernet Layer = iota + 1
	LayerARP
	LayerIPv4
	LayerIPv6
	LayerTCP
	LayerUDP
	LayerICMPv4
	LayerICMPv6
	numLayers
)

var layerNames = [numLayers]string{
	LayerEthernet: "ethernet",
	LayerARP:      "arp",
	LayerIPv4:     "ipv4",
	LayerIPv6:     "ipv6",
	LayerTCP:      "tcp",
	LayerUDP:      "udp",
	LayerICMPv4:   "icmpv4",
	LayerICMPv6:   "icmpv6",
}

func (l Layer) String() string {
	if l < numLayers && layerNames[l] != "" {
		return layerNames[l]
	}
	return fmt.Sprintf("layer(%d)", uint8(l))
}

// Kind classifies what is wrong with a malformed header.
type Kind uint8

// Kinds of damage a parser reports.
const (
	KindTruncated       Kind = iota + 1 // the buffer ends before the header (or a length it declares) does
	KindBadVersion                      // IP version nibble does not match the EtherType
	KindBadHeaderLength                 // header length field below the minimum or beyond the buffer
	KindBadTotalLength                  // total/payload length field inconsistent with the header or buffer
	KindBadChecksum                     // a checksum that Parse verifies does not match
	KindBadOption                       // IPv4 option list is malformed
	KindBadExtension                    // IPv6 extension header chain is malformed or too long
	KindBadAddress                      // an address that must never appear on the wire
	KindBadLength                       // a transport length field (UDP) is inconsistent
	KindUnsupported                     // valid but outside what this package handles (stacked VLANs, non-IPv4 ARP...)
	numKinds
)

var kindText = [numKinds]string{
	KindTruncated:       "truncated: the buffer ends inside the header or before the length it declares",
	KindBadVersion:      "bad IP version",
	KindBadHeaderLength: "bad header length field",
	KindBadTotalLength:  "bad total or payload length field",
	KindBadChecksum:     "bad header checksum",
	KindBadOption:       "malformed options",
	KindBadExtension:    "malformed or over-long extension header chain",
	KindBadAddress:      "address not allowed on the wire",
	KindBadLength:       "bad length field",
	KindUnsupported:     "unsupported encapsulation",
}

func (k Kind) String() string {
	if k < numKinds && kindText[k] != "" {
		return kindText[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error reports a malformed or unsupported header. Parsers return pointers
// into a static table, so reporting an error never allocates.
//
// Compare with errors.Is against the Kind sentinels (ErrTruncated, ...), which
// match any layer, or against an &Error{Layer: l, Kind: k} for one layer.
type Error struct {
	Layer Layer
	Kind  Kind
}

func (e *Error) Error() string {
	return fmt.Sprintf("packet: %s header: %s; drop the frame", e.Layer, e.Kind)
}

// Is matches targets of type *Error whose zero fields act as wildcards.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return (t.Layer == 0 || t.Layer == e.Layer) && (t.Kind == 0 || t.Kind == e.Kind)
}

// Sentinels for errors.Is, matching the kind in any layer.
var (
	ErrTruncated       error = &Error{Kind: KindTruncated}
	ErrBadVersion      error = &Error{Kind: KindBadVersion}
	ErrBadHeaderLength error = &Error{Kind: KindBadHeaderLength}
	ErrBadTotalLength  error = &Error{Kind: KindBadTotalLength}
	ErrBadChecksum     error = &Error{Kind: KindBadChecksum}
	ErrBadOption       error = &Error{Kind: KindBadOption}
	ErrBadExtension    error = &Error{Kind: KindBadExtension}
	ErrBadAddress      error = &Error{Kind: KindBadAddress}
	ErrBadLength       error = &Error{Kind: KindBadLength}
	ErrUnsupported     error = &Error{Kind: KindUnsupported}
)

// errorTable holds one preallocated Error per (layer, kind) pair.
var errorTable = func() (t [numLayers][numKinds]Error) {
	for l := range t {
		for k := range t[l] {
			t[l][k] = Error{Layer: Layer(l), Kind: Kind(k)}
		}
	}
	return t
}()

// errAt returns the shared Error for a layer and kind without allocating.
func errAt(l Layer, k Kind) error { return &errorTable[l][k] }
