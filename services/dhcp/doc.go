// Package dhcp is a DHCPv4 client (RFC 2131, options of RFC 2132) in pure
// Go: the message codec and a client state machine that runs over a small
// transport interface, Conn, so that it can be tested on the host against a
// scripted server with a fake clock. Package netstack/dhcp runs it on a NIC
// of the gVisor network stack.
//
// Every received packet is untrusted: Parse returns a *Message or an error
// for any input, without panicking and allocating no more than the input's
// size; the client ignores whatever is not a well-formed reply to its own
// current transaction.
package dhcp
