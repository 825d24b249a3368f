package vchan

import "errors"

var (
	// ErrProtocol reports shared state a correct peer never produces:
	// indices that claim more data or space than the ring holds, a live
	// byte outside 0..2, orders or grant arrays that do not fit. The
	// connection is unusable afterwards; close it and drop the peer.
	ErrProtocol = errors.New("vchan: peer broke the protocol")

	// ErrPeerClosed reports a write to a peer that has exited.
	ErrPeerClosed = errors.New("vchan: peer closed the connection")

	// ErrPeerGone reports that the event channel told us the peer domain
	// disappeared without closing its end.
	ErrPeerGone = errors.New("vchan: peer domain is gone")

	// ErrClosed reports use of a connection after Close.
	ErrClosed = errors.New("vchan: use of closed connection")

	// ErrTooLarge reports a Send or Recv bigger than the ring, which could
	// never complete.
	ErrTooLarge = errors.New("vchan: message larger than the ring")
)
