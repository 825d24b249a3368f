// Package nat tracks connections and masquerades client VMs behind the
// FirewallVM's upstream address, the way a Qubes sys-firewall does with
// Linux conntrack and MASQUERADE.
//
// A Table translates Ethernet frames in place: Outbound rewrites a client's
// packet (source address and port, or ICMP echo identifier) to the public
// address and an allocated port, Inbound rewrites replies and ICMP errors
// about translated flows back to the client. Checksums are updated
// incrementally (RFC 1624), so translating a packet of an established flow
// touches only its headers and allocates nothing.
//
// The table is bounded: it never holds more than Config.MaxFlows flows, its
// flow storage grows in fixed chunks up to that bound and never shrinks, and
// when it is full a new flow evicts the least recently used unassured flow
// (TCP handshakes in progress, closing TCP, unanswered UDP/ICMP) before any
// assured one, so a flood of new connections cannot push out working ones.
// Flow keys are fixed-size byte arrays hashed with a secret seed, so remote
// hosts cannot aim collisions at one hash chain.
//
// Time is passed in by the caller with every packet, which keeps the table
// deterministic under test. A Table is not safe for concurrent use; the
// FirewallVM runs it from its single forwarding goroutine.
package nat
