// Package blkfront is the frontend of a Xen virtual block device (vbd):
// a blockdev.Device over the blkif protocol of Xen's public io/blkif.h,
// talking to a backend such as Linux blkback or QEMU's xen-block.
//
// New runs the xenbus handshake as Linux xen-blkfront does
// (talk_to_blkback, blkfront_connect): wait for the backend's InitWait;
// read max-ring-page-order and build a ring of up to 2^order pages (keys
// ring-page-order and ring-ref0..N, or ring-ref for a single page); grant
// it; allocate an event channel; publish the ring, event-channel and
// protocol=x86_64-abi with state Initialised in one transaction (retried
// on EAGAIN by xenbus); wait for Connected; read sectors, sector-size,
// physical-sector-size, info, mode and the feature keys; say Connected.
//
// I/O. ReadAt and WriteAt are split into requests of up to 11 segments,
// or up to Config.MaxSegments through indirect descriptor pages when the
// backend offers feature-max-indirect-segments. Data is copied through
// pages of a pool, granted for one request and revoked when it completes
// (no persistent grants). Many requests are in flight at once, each named
// by a slot of an id table; completion runs on event-channel wake-ups
// followed by the ring's final check. Partial sectors are read, merged
// and written back, with the edge sectors held so that concurrent partial
// writes to one sector do not lose each other's bytes. Flush sends
// BLKIF_OP_FLUSH_DISKCACHE, or BLKIF_OP_WRITE_BARRIER if that is all the
// backend offers; a backend with neither has no cache to flush.
//
// Untrusted backend. Every value the backend writes in xenstore is parsed
// with errors. Every response is checked: its id must name an outstanding
// request (ids carry a generation, so a stale or repeated id names none),
// its operation must be the request's and its status known; a response
// that fails is an error for that request, or, when it names no request,
// is dropped and counted in Stats. A producer index claiming more
// responses than requests disables the disk (ErrBackendBroken), as Linux
// blkfront's BLKIF_STATE_ERROR does. A grant the backend still maps when
// it should have let go is never reused: its page is quarantined until a
// later revoke succeeds.
//
// Reconnection. When the backend leaves Connected, the driver stops
// issuing, answers Closing with Closed (xenbus_frontend_closed), waits for
// the backend to finish and close, takes the responses it produced
// meanwhile, retires the ring, goes back to Initialising and runs the
// handshake again. Requests still outstanding are re-issued on the new
// ring (re-split if it takes smaller requests), as Linux blkfront's
// blkif_recover does after a resume: an acknowledged write is never lost,
// and nothing is acknowledged that the backend did not complete. If the
// backend is removed or does not come back within Config.ReconnectTimeout,
// calls fail with blockdev.ErrClosed.
//
// Quantities on the wire (sector_number, first_sect, last_sect and the
// backend's "sectors") are in 512-byte units whatever the sector size, as
// Linux blkfront and blkback use them; the driver never writes
// feature-large-sector-size.
package blkfront
