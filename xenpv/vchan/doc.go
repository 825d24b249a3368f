// Package vchan implements the libxenvchan byte-stream protocol: two rings in
// memory shared between a server and a client domain, an event channel to wake
// the peer, and a xenstore directory through which the client finds the
// server's shared page. It speaks the same wire format as Xen's libxenvchan
// (tools/libs/vchan) and therefore as Qubes' libvchan-xen, so a unikernel
// using it can talk to qrexec and QubesDB in dom0.
//
// The protocol is independent of how pages are shared: the package talks to
// the hypervisor only through the small interfaces in platform.go (grant and
// map pages, event channels, xenstore). Package vchan/host implements them in
// one process, so servers and clients can be tested as goroutines; the Xen
// implementation lives with the rest of xenpv.
//
// Shared state is untrusted. Every index the peer can write is re-read with
// an atomic load and checked against the ring size before it is used; a peer
// that breaks the invariants gets ErrProtocol, never an out-of-range access.
package vchan
