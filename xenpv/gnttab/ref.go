package gnttab

import "errors"

// Ref is a grant reference: the index of an entry in the granting domain's
// grant table, which is how the peer names the page.
type Ref uint32

// DomID is a Xen domain id.
type DomID uint16

var (
	// ErrExhausted means every grant entry is in use (or still held by a
	// peer) and the table cannot grow further.
	ErrExhausted = errors.New("gnttab: no free grant references (table at its maximum size); release grants or raise max_grant_frames")
	// ErrInUse means the peer still maps or copies from the page: the grant
	// stays in force, and neither the ref nor the page may be reused until a
	// later Revoke succeeds.
	ErrInUse = errors.New("gnttab: the peer still uses the granted page")
)
