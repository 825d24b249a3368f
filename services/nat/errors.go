package nat

import "errors"

// Errors returned with a Drop verdict. Parse errors from package packet are
// passed through unchanged.
var (
	// ErrNoFlow: an inbound packet, an ICMP error, or an outbound TCP RST
	// matches no flow. For inbound traffic addressed to the FirewallVM
	// itself, the caller may deliver it locally instead of dropping it.
	ErrNoFlow = errors.New("nat: no flow matches the packet; deliver it locally or drop it")
	// ErrNotPublic: an inbound packet is not addressed to the public address.
	ErrNotPublic = errors.New("nat: inbound packet is not addressed to the public address; route it elsewhere or drop it")
	// ErrNoPublicAddr: no public address is configured for the packet's family.
	ErrNoPublicAddr = errors.New("nat: no public address configured for this IP version; configure one or drop the packet")
	// ErrUnsupported: the packet is not TCP, UDP, ICMP echo or an ICMP error
	// about a known flow, so it cannot be translated.
	ErrUnsupported = errors.New("nat: protocol or message type cannot be translated; drop the packet")
	// ErrFragment: fragments carry no ports; reassemble before NAT or drop.
	ErrFragment = errors.New("nat: IP fragments cannot be translated; reassemble them first or drop them")
	// ErrPortsExhausted: no outside port is free for this destination.
	ErrPortsExhausted = errors.New("nat: no free outside port for this destination; widen the port range or drop the packet")
	// ErrBadChecksum: an ICMP error failed its checksum, so translating it
	// (which recomputes the checksum) would launder corruption.
	ErrBadChecksum = errors.New("nat: ICMP error message has a bad checksum; drop it")
)
