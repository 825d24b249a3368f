package vchan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Dir returns the xenstore directory of a vchan: the server domain's home
// (for example /local/domain/0) + /data/vchan/<client domid>/<port>.
func Dir(serverHome string, client DomID, port int) string {
	return fmt.Sprintf("%s/data/vchan/%d/%d", serverHome, client, port)
}

// parseNumber parses a ring-ref or event-channel value written by the
// server: a decimal u32 other than 0, which libxenvchan treats as absent.
func parseNumber(key, s string) (uint32, error) {
	if len(s) == 0 || len(s) > 10 || s[0] < '1' || s[0] > '9' {
		return 0, fmt.Errorf("vchan: xenstore %s is %q, want a decimal number above 0", key, s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("vchan: xenstore %s is %q, want a 32-bit decimal number: %w", key, s, err)
	}
	return uint32(v), nil
}

// cleanup undoes setup steps in reverse order.
type cleanup []func() error

func (c *cleanup) add(f func() error) { *c = append(*c, f) }

func (c cleanup) run() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		if err := c[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Listen sets up the server end of a vchan for client on port, with rings
// of at least readMin bytes (client to server) and writeMin bytes (server to
// client), and publishes it in xenstore. It returns at once; the client may
// attach later (see WaitConnected). Writes before then fill the ring.
func Listen(p Platform, client DomID, port int, readMin, writeMin int) (c *Conn, err error) {
	if port < 0 {
		return nil, fmt.Errorf("vchan: listen on port %d: ports are not negative", port)
	}
	if client == p.Self {
		return nil, fmt.Errorf("vchan: listen in domain %d for itself: loopback vchans are not supported", client)
	}
	orders, err := ChooseOrders(readMin, writeMin)
	if err != nil {
		return nil, err
	}
	lay, err := checkLayout(orders)
	if err != nil {
		return nil, err
	}
	home, err := p.Store.DomainPath(p.Self)
	if err != nil {
		return nil, fmt.Errorf("vchan: listen: home of domain %d: %w", p.Self, err)
	}
	dir := Dir(home, client, port)

	var undo cleanup
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run())
		}
	}()
	ev, err := p.Events.AllocUnbound(client)
	if err != nil {
		return nil, fmt.Errorf("vchan: listen at %s: allocate event channel for domain %d: %w", dir, client, err)
	}
	undo.add(ev.Close)
	shared, err := p.Memory.Grant(client, 1)
	if err != nil {
		return nil, fmt.Errorf("vchan: listen at %s: grant shared page to domain %d: %w", dir, client, err)
	}
	undo.add(shared.Release)
	page := shared.Pages()[0]
	hdr, err := headerOf(page)
	if err != nil {
		return nil, err
	}
	clear(page[:PageSize])
	hdr.leftOrder = uint16(orders.Left)
	hdr.rightOrder = uint16(orders.Right)

	grants := page[OffsetGrants:]
	ringFor := func(place ringPlace, order int) (ringData, error) {
		if place.inPage {
			return newRingData(order, [][]byte{page[place.offset : place.offset+1<<order]})
		}
		ps, err := p.Memory.Grant(client, place.pages)
		if err != nil {
			return ringData{}, fmt.Errorf("vchan: listen at %s: grant %d ring pages to domain %d: %w", dir, place.pages, client, err)
		}
		undo.add(ps.Release)
		for _, ref := range ps.Refs() {
			binary.LittleEndian.PutUint32(grants, uint32(ref))
			grants = grants[GrantRefSize:]
		}
		return newRingData(order, ps.Pages())
	}
	left, err := ringFor(lay.left, orders.Left)
	if err != nil {
		return nil, err
	}
	right, err := ringFor(lay.right, orders.Right)
	if err != nil {
		return nil, err
	}
	hdr.store(cliLive, uint8(LiveWaiting))
	hdr.store(srvLive, uint8(LiveConnected))
	hdr.store(cliNotify, NotifyWrite) // tell us when the client writes

	entries := []Entry{
		{Path: dir + "/" + KeyRingRef, Value: strconv.FormatUint(uint64(shared.Refs()[0]), 10)},
		{Path: dir + "/" + KeyEventChannel, Value: strconv.FormatUint(uint64(ev.Port()), 10)},
	}
	if err := p.Store.Publish(entries, client); err != nil {
		return nil, fmt.Errorf("vchan: listen: publish %s: %w", dir, err)
	}
	undo.add(func() error { return p.Store.Unpublish(dir) })

	c = newConn(hdr, true, left, right, ev, func() error { return undo.run() })
	c.withdraw = func() error { return p.Store.Unpublish(dir) }
	return c, nil
}

// Dial attaches to the vchan that server offers this domain on port,
// waiting (until ctx ends) for the server to publish it.
func Dial(ctx context.Context, p Platform, server DomID, port int) (c *Conn, err error) {
	if server == p.Self {
		return nil, fmt.Errorf("vchan: dial domain %d from itself: loopback vchans are not supported", server)
	}
	if port < 0 {
		return nil, fmt.Errorf("vchan: dial port %d: ports are not negative", port)
	}
	home, err := p.Store.DomainPath(server)
	if err != nil {
		return nil, fmt.Errorf("vchan: dial: home of domain %d: %w", server, err)
	}
	dir := Dir(home, p.Self, port)
	// The server writes both keys in one transaction: once event-channel
	// is there, ring-ref is too.
	evText, err := p.Store.WaitRead(ctx, dir+"/"+KeyEventChannel)
	if err != nil {
		return nil, fmt.Errorf("vchan: dial: wait for %s/%s: %w", dir, KeyEventChannel, err)
	}
	refText, err := p.Store.WaitRead(ctx, dir+"/"+KeyRingRef)
	if err != nil {
		return nil, fmt.Errorf("vchan: dial: wait for %s/%s: %w", dir, KeyRingRef, err)
	}
	remotePort, err := parseNumber(KeyEventChannel, evText)
	if err != nil {
		return nil, err
	}
	ref, err := parseNumber(KeyRingRef, refText)
	if err != nil {
		return nil, err
	}

	var undo cleanup
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run())
		}
	}()
	ev, err := p.Events.BindInterdomain(server, remotePort)
	if err != nil {
		return nil, fmt.Errorf("vchan: dial %s: bind to port %d of domain %d: %w", dir, remotePort, server, err)
	}
	undo.add(ev.Close)
	shared, err := p.Memory.Map(server, []GrantRef{GrantRef(ref)}, true)
	if err != nil {
		return nil, fmt.Errorf("vchan: dial %s: map grant %d of domain %d: %w", dir, ref, server, err)
	}
	undo.add(shared.Release)
	mapRing := func(refs []GrantRef, writable bool) ([][]byte, error) {
		ps, err := p.Memory.Map(server, refs, writable)
		if err != nil {
			return nil, fmt.Errorf("vchan: dial %s: map %d ring pages of domain %d: %w", dir, len(refs), server, err)
		}
		undo.add(ps.Release)
		return ps.Pages(), nil
	}
	// The closure sees the ring mappings mapRing adds to undo.
	c, err = attachClient(shared.Pages()[0], mapRing, ev, func() error { return undo.run() })
	if err != nil {
		return nil, fmt.Errorf("vchan: dial %s: %w", dir, err)
	}
	return c, nil
}

// attachClient validates the server's shared page, maps the rings it names
// and announces the client. It trusts nothing in the page: orders, grant
// array and indices are all checked first.
func attachClient(page []byte, mapRing func(refs []GrantRef, writable bool) ([][]byte, error), ev EventChannel, release func() error) (*Conn, error) {
	hdr, err := headerOf(page)
	if err != nil {
		return nil, err
	}
	// The orders are read once; later changes by the server are ignored.
	orders := Orders{Left: int(hdr.leftOrder), Right: int(hdr.rightOrder)}
	lay, err := checkLayout(orders)
	if err != nil {
		return nil, err
	}
	grants := make([]GrantRef, lay.grantCount())
	for i := range grants {
		grants[i] = GrantRef(binary.LittleEndian.Uint32(page[OffsetGrants+GrantRefSize*i:]))
	}
	ringFor := func(place ringPlace, order int, refs []GrantRef, writable bool) (ringData, error) {
		if place.inPage {
			return newRingData(order, [][]byte{page[place.offset : place.offset+1<<order]})
		}
		pages, err := mapRing(refs, writable)
		if err != nil {
			return ringData{}, err
		}
		if len(pages) != len(refs) {
			return ringData{}, fmt.Errorf("vchan: mapping %d grant refs returned %d pages", len(refs), len(pages))
		}
		return newRingData(order, pages)
	}
	left, err := ringFor(lay.left, orders.Left, grants[:lay.left.pages], true)
	if err != nil {
		return nil, err
	}
	right, err := ringFor(lay.right, orders.Right, grants[lay.left.pages:], false)
	if err != nil {
		return nil, err
	}
	switch l := Live(hdr.load(srvLive)); l {
	case LiveConnected:
	case LiveExited:
		return nil, fmt.Errorf("vchan: server has already closed this vchan: %w", ErrPeerClosed)
	default:
		return nil, fmt.Errorf("vchan: server's live byte is %d, want %d: %w", uint8(l), LiveConnected, ErrProtocol)
	}
	if l := Live(hdr.load(cliLive)); l != LiveWaiting {
		return nil, fmt.Errorf("vchan: client live byte is %s, want waiting: another client attached or the page is stale: %w", l, ErrProtocol)
	}
	c := newConn(hdr, false, left, right, ev, release)
	if _, err := c.in.ready(); err != nil {
		return nil, err
	}
	if _, err := c.out.space(); err != nil {
		return nil, err
	}
	hdr.store(cliLive, uint8(LiveConnected))
	hdr.store(srvNotify, NotifyWrite) // tell us when the server writes
	if err := ev.Notify(); err != nil {
		return nil, fmt.Errorf("vchan: wake the server on port %d: %w", ev.Port(), err)
	}
	return c, nil
}
