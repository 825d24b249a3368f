package vchan

import "context"

// DomID is a Xen domain id.
type DomID uint16

// GrantRef is a grant table reference: names one page a domain granted.
type GrantRef uint32

// PageSet is a set of pages shared between two domains: either pages this
// domain allocated and granted, or a peer's pages mapped here.
type PageSet interface {
	// Pages returns the pages in grant order, each PageSize bytes and
	// 8-byte aligned. They stay valid until Release.
	Pages() [][]byte
	// Refs returns the grant refs of the pages, in the same order.
	Refs() []GrantRef
	// Release ends the grants (or unmaps the peer's pages). A grant the peer
	// still has mapped must not be reused early: the implementation keeps
	// such pages out of circulation until the peer lets go.
	Release() error
}

// Memory shares pages between domains (grant tables).
type Memory interface {
	// Grant allocates n zeroed pages and grants peer read-write access to each.
	Grant(peer DomID, n int) (PageSet, error)
	// Map maps the pages peer granted under refs, writable or read-only.
	Map(peer DomID, refs []GrantRef, writable bool) (PageSet, error)
}

// EventChannel is one end of a bound interdomain event channel.
type EventChannel interface {
	// Port is the local port number (what the server publishes in xenstore).
	Port() uint32
	// Notify signals the remote end.
	Notify() error
	// Events delivers the remote end's notifications. It must behave like the
	// pending bit: buffered with capacity one, so notifications that arrive
	// while nobody waits coalesce into one and are never lost. The
	// implementation closes it when it learns the remote domain is gone.
	Events() <-chan struct{}
	// Close unbinds the port.
	Close() error
}

// EventChannels allocates and binds event channels.
type EventChannels interface {
	// AllocUnbound allocates a port that remote may bind to (server side).
	AllocUnbound(remote DomID) (EventChannel, error)
	// BindInterdomain binds to remote's unbound port (client side).
	BindInterdomain(remote DomID, remotePort uint32) (EventChannel, error)
}

// Entry is one xenstore key and its value.
type Entry struct {
	Path, Value string
}

// Store is the slice of xenstore vchan needs.
type Store interface {
	// DomainPath returns dom's home directory, e.g. /local/domain/5.
	DomainPath(dom DomID) (string, error)
	// Publish writes the entries in one transaction, owned by this domain
	// and readable by reader only.
	Publish(entries []Entry, reader DomID) error
	// WaitRead returns the value at path, waiting until it exists or ctx ends.
	WaitRead(ctx context.Context, path string) (string, error)
	// Unpublish removes dir and everything below it, and then dir's parent
	// if that left it empty, in one transaction. A missing dir is not an
	// error: a server withdraws its entries when the client attaches and
	// again when it closes.
	Unpublish(dir string) error
}

// Platform is everything a vchan endpoint needs from the hypervisor, bound
// to the domain it runs in.
type Platform struct {
	Self   DomID
	Memory Memory
	Events EventChannels
	Store  Store
}
