package netfront

import (
	"context"

	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// GrantTable is what the driver needs of a grant table:
// *gnttab.Table has these methods.
type GrantTable interface {
	// Grant lets domain dom map or copy frame (a GFN). Refs run out with
	// gnttab.ErrExhausted.
	Grant(dom gnttab.DomID, frame uint64, readOnly bool) (gnttab.Ref, error)
	// Revoke ends a grant. gnttab.ErrInUse means the peer still maps the
	// page: neither the ref nor the page may be reused until a later
	// Revoke succeeds.
	Revoke(ref gnttab.Ref) error
}

// EventChannel is one local port bound to the backend.
type EventChannel interface {
	// Port is the local port number, written to xenstore as
	// event-channel.
	Port() uint32
	// Wait returns once the port fired since the previous Wait (or ctx
	// ends). Wake-ups may be spurious or coalesced; the driver re-checks
	// the rings after each.
	Wait(ctx context.Context) error
	// Notify signals the backend.
	Notify() error
	// Close unbinds the port.
	Close() error
}

// EventChannels allocates the port the backend binds to.
type EventChannels interface {
	// AllocUnbound returns a new port that domain remote may bind
	// (EVTCHNOP_alloc_unbound).
	AllocUnbound(remote gnttab.DomID) (EventChannel, error)
}

// The grant table the glue passes in a guest.
var _ GrantTable = (*gnttab.Table)(nil)
