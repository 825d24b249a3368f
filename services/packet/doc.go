// Package packet parses and edits Ethernet frames carrying ARP, IPv4, IPv6,
// TCP, UDP, ICMPv4 and ICMPv6 without allocating.
//
// The design follows the "typed view" pattern: each layer is a named []byte
// type (Ethernet, IPv4, TCP, ...) whose accessors read fields at fixed
// offsets. A view is only produced by its ParseXxx function, which checks
// every length the accessors rely on up front, so accessors never need
// bounds checks that can fail. Parse walks a whole frame and fills a
// caller-owned Packet with the offsets of each layer and the flow tuple, so
// a forwarding loop can parse millions of frames without garbage.
//
// Every input is untrusted (it comes from client VMs or the upstream
// network): malformed frames produce a *Error naming the layer and the kind
// of damage, never a panic.
//
// Checksum helpers implement the RFC 1071 Internet checksum and the RFC 1624
// incremental update used when NAT rewrites addresses and ports in place.
package packet
