package host

import (
	"fmt"

	"github.com/unikgo/unikgo/xenpv/vchan"
)

// portKey names a port by its domain and number.
type portKey struct {
	dom vchan.DomID
	num uint32
}

// port is one event channel port. An unbound port waits for remote to bind;
// a bound one has peer set.
type port struct {
	key          portKey
	remote       vchan.DomID
	peer         *port
	events       chan struct{} // capacity 1: the pending bit
	eventsClosed bool
	closed       bool
}

// closeEvents closes the Events channel once. Caller holds h.mu.
func (p *port) closeEvents() {
	if !p.eventsClosed {
		p.eventsClosed = true
		close(p.events)
	}
}

// events implements vchan.EventChannels for one domain.
type events struct{ d *domain }

// newPortLocked allocates the lowest unused port number above 0 (port 0 is
// never valid in Xen). Caller holds h.mu.
func (e events) newPortLocked(remote vchan.DomID) *port {
	h := e.d.h
	num := max(h.nextPort[e.d.id], 1)
	h.nextPort[e.d.id] = num + 1
	p := &port{key: portKey{e.d.id, num}, remote: remote, events: make(chan struct{}, 1)}
	h.ports[p.key] = p
	return p
}

// AllocUnbound allocates a port remote may bind to.
func (e events) AllocUnbound(remote vchan.DomID) (vchan.EventChannel, error) {
	h := e.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	return channel{e.d, e.newPortLocked(remote)}, nil
}

// BindInterdomain binds to remote's unbound port remotePort.
func (e events) BindInterdomain(remote vchan.DomID, remotePort uint32) (vchan.EventChannel, error) {
	h := e.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rp, ok := h.ports[portKey{remote, remotePort}]
	switch {
	case !ok:
		return nil, fmt.Errorf("host: domain %d: bind to port %d of domain %d: no such port", e.d.id, remotePort, remote)
	case rp.peer != nil:
		return nil, fmt.Errorf("host: domain %d: bind to port %d of domain %d: already bound", e.d.id, remotePort, remote)
	case rp.remote != e.d.id:
		return nil, fmt.Errorf("host: domain %d: bind to port %d of domain %d: allocated for domain %d", e.d.id, remotePort, remote, rp.remote)
	}
	p := e.newPortLocked(remote)
	p.peer, rp.peer = rp, p
	return channel{e.d, p}, nil
}

// channel implements vchan.EventChannel.
type channel struct {
	d *domain
	p *port
}

func (c channel) Port() uint32 { return c.p.key.num }

func (c channel) Events() <-chan struct{} { return c.p.events }

// Notify sets the peer's pending bit. Like Xen, a notification on a port
// whose peer has gone (unbound) is dropped silently.
func (c channel) Notify() error {
	h := c.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.p.closed {
		return fmt.Errorf("host: domain %d: notify on closed port %d", c.d.id, c.p.key.num)
	}
	if peer := c.p.peer; peer != nil && !peer.eventsClosed {
		select {
		case peer.events <- struct{}{}:
		default: // already pending
		}
	}
	return nil
}

// Close unbinds the port. The peer's port becomes unbound, as in Xen: it
// gets no event, and its notifications are dropped from now on.
func (c channel) Close() error {
	h := c.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.p.closed {
		return fmt.Errorf("host: domain %d: port %d closed twice", c.d.id, c.p.key.num)
	}
	c.p.closed = true
	if c.p.peer != nil {
		c.p.peer.peer = nil
		c.p.peer = nil
	}
	if h.ports[c.p.key] == c.p {
		delete(h.ports, c.p.key)
	}
	return nil
}
