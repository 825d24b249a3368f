// Package xenstore is a client for xenstored, the configuration database
// through which Xen domains find each other's devices, publish their
// state and watch for changes.
//
// It is pure Go and talks to xenstored through a byte stream, so the same
// client serves two worlds:
//
//   - a PVH guest, where the stream is the shared xenstore ring page and an
//     event channel (RingConn, given the page and notify/wait functions by
//     the kernel);
//   - dom0 tools and tests, where the stream is xenstored's unix socket or
//     any other net.Conn (Dial, NewClient).
//
// The wire format follows Xen's xen/include/public/io/xs_wire.h and
// docs/misc/xenstore.txt: every message is a 16-byte xsd_sockmsg header
// followed by at most XENSTORE_PAYLOAD_MAX (4096) bytes of payload.
//
// Everything that arrives from xenstored is untrusted: a guest's xenstored
// may be a stub domain, and the ring page is also writable by whoever maps
// it. Headers, payloads and ring indices are checked before use; a peer
// that breaks the protocol gets ErrProtocol and a closed client, never a
// panic, an out-of-range access, a hang or an unbounded allocation.
//
// Package xenbus (below this one) builds the PV frontend handshake on the
// client, and package xenstoretest provides an in-process xenstored for
// tests of code that uses xenstore.
package xenstore
