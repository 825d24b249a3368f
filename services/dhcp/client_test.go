package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is a Clock that moves only when the test sets it. Tests read
// the client's pending timer to know when it means to act next.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{now: t0, timers: make(map[*fakeTimer]bool)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) (<-chan time.Time, func()) {
	if t.IsZero() {
		return nil, func() {}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: t, ch: make(chan time.Time, 1)}
	if !t.After(c.now) {
		ft.ch <- c.now
		return ft.ch, func() {}
	}
	c.timers[ft] = true
	return ft.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.timers, ft)
	}
}

// set moves the clock to t and fires the timers due.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for ft := range c.timers {
		if !ft.at.After(t) {
			ft.ch <- t
			delete(c.timers, ft)
		}
	}
}

// next waits for the client to arm a timer and returns when it is due.
func (c *fakeClock) next(t *testing.T) time.Time {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		var first time.Time
		for ft := range c.timers {
			if first.IsZero() || ft.at.Before(first) {
				first = ft.at
			}
		}
		c.mu.Unlock()
		if !first.IsZero() {
			return first
		}
	}
	t.Fatal("the client armed no timer")
	return time.Time{}
}

// sent is a message the client sent, parsed, with its destination and the
// (fake) time it was sent.
type sent struct {
	m  *Message
	to netip.Addr
	at time.Time
}

// fakeConn is the client's end of a scripted exchange.
type fakeConn struct {
	t     *testing.T
	clock *fakeClock
	out   chan sent
	in    chan []byte
}

func (c *fakeConn) Send(ctx context.Context, pkt []byte, to netip.Addr) error {
	m, err := Parse(pkt)
	if err != nil {
		c.t.Errorf("client sent an unparsable message: %v", err)
		return nil
	}
	if len(pkt) < minMessageLen {
		c.t.Errorf("client sent %d bytes, under the BOOTP minimum", len(pkt))
	}
	select {
	case c.out <- sent{m, to, c.clock.Now()}:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (c *fakeConn) Recv(ctx context.Context, buf []byte) (int, error) {
	select {
	case b := <-c.in:
		return copy(buf, b), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	server1   = netip.MustParseAddr("192.168.1.1")
	server2   = netip.MustParseAddr("192.168.1.2")
	addr1     = netip.MustParseAddr("192.168.1.100")
	addr2     = netip.MustParseAddr("192.168.1.101")
	bcast     = netip.MustParseAddr("255.255.255.255")
	dns1      = netip.MustParseAddr("192.168.1.53")
)

// jitter is the fixed randomisation the tests use, so that they can tell
// it is applied.
const jitter = 500 * time.Millisecond

type harness struct {
	t      *testing.T
	clock  *fakeClock
	conn   *fakeConn
	c      *Client
	leases chan Lease
	stop   func() error
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clock: newFakeClock(), leases: make(chan Lease, 16)}
	h.conn = &fakeConn{t: t, clock: h.clock, out: make(chan sent, 16), in: make(chan []byte, 16)}
	c, err := New(h.conn, Config{
		HWAddr:    clientMAC,
		Hostname:  "unik",
		Broadcast: true,
		OnLease:   func(l Lease) { h.leases <- l },
		Clock:     h.clock,
		Jitter:    func() time.Duration { return jitter },
		Logf:      t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	return h
}

// run starts Run; the returned function stops it and returns its error.
func (h *harness) run() func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.c.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			h.t.Fatal("Run did not return")
			return nil
		}
	}
	h.t.Cleanup(func() { stop() })
	return stop
}

// expect waits for the client to send a message of type typ to to.
func (h *harness) expect(typ MessageType, to netip.Addr) sent {
	h.t.Helper()
	select {
	case s := <-h.conn.out:
		if s.m.Type() != typ || s.to != to {
			h.t.Fatalf("client sent %v to %v, want %v to %v", s.m.Type(), s.to, typ, to)
		}
		if s.m.Op != BootRequest || s.m.HType != 1 || s.m.HLen != 6 || !slices.Equal(s.m.HWAddr(), clientMAC) {
			h.t.Errorf("bad header: %+v", s.m)
		}
		if id, _ := s.m.Options.Get(OptClientID); !slices.Equal(id, append([]byte{1}, clientMAC...)) {
			h.t.Errorf("client id %x", id)
		}
		return s
	case <-time.After(5 * time.Second):
		h.t.Fatalf("client sent no %v", typ)
		return sent{}
	}
}

// quiet checks that the client sends nothing for a moment of real time.
func (h *harness) quiet() {
	h.t.Helper()
	select {
	case s := <-h.conn.out:
		h.t.Fatalf("client sent %v to %v", s.m.Type(), s.to)
	case <-time.After(20 * time.Millisecond):
	}
}

func (h *harness) lease() Lease {
	h.t.Helper()
	select {
	case l := <-h.leases:
		return l
	case <-time.After(5 * time.Second):
		h.t.Fatal("no lease reported")
		return Lease{}
	}
}

// advance moves the clock to the client's next timer and returns it.
func (h *harness) advance() time.Time {
	h.t.Helper()
	at := h.clock.next(h.t)
	h.clock.set(at)
	return at
}

// reply is a server message answering req.
type reply struct {
	typ    MessageType
	yi     netip.Addr
	server netip.Addr
	lease  uint32 // seconds; 0 for no option
	t1, t2 uint32
	xid    *uint32
	mac    net.HardwareAddr
}

func (h *harness) send(req sent, r reply) {
	h.t.Helper()
	h.conn.in <- r.marshal(h.t, req.m)
}

func (r reply) marshal(t *testing.T, req *Message) []byte {
	m := &Message{Op: BootReply, HType: 1, HLen: 6, Xid: req.Xid, YIAddr: r.yi, Flags: req.Flags}
	if r.xid != nil {
		m.Xid = *r.xid
	}
	copy(m.CHAddr[:], req.CHAddr[:])
	if r.mac != nil {
		copy(m.CHAddr[:], r.mac)
	}
	m.Options.Set(OptMessageType, []byte{byte(r.typ)})
	if r.server.IsValid() {
		m.Options.Set(OptServerID, addrBytes(r.server))
	}
	if r.typ != Nak {
		if r.lease != 0 {
			m.Options.Set(OptLeaseTime, uint32Bytes(r.lease))
		}
		if r.t1 != 0 {
			m.Options.Set(OptRenewalTime, uint32Bytes(r.t1))
		}
		if r.t2 != 0 {
			m.Options.Set(OptRebindingTime, uint32Bytes(r.t2))
		}
		m.Options.Set(OptSubnetMask, []byte{255, 255, 255, 0})
		m.Options.Set(OptRouter, addrBytes(server1))
		m.Options.Set(OptDNS, addrBytes(dns1, dns1, server1))
		m.Options.Set(OptDomainName, []byte("lan\x00"))
		m.Options.Set(OptMTU, []byte{0x05, 0xdc})
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	offer1 = reply{typ: Offer, yi: addr1, server: server1, lease: 3600, t1: 1800, t2: 3150}
	ack1   = reply{typ: Ack, yi: addr1, server: server1, lease: 3600, t1: 1800, t2: 3150}
)

// wantLease is the lease ack1 grants when requested at start.
func wantLease(start time.Time) Lease {
	return Lease{
		Addr:     netip.PrefixFrom(addr1, 24),
		Gateway:  server1,
		DNS:      []netip.Addr{dns1, server1},
		Domain:   "lan",
		Server:   server1,
		MTU:      1500,
		Start:    start,
		Duration: time.Hour,
		T1:       1800 * time.Second,
		T2:       3150 * time.Second,
	}
}

// dora runs DISCOVER, OFFER, REQUEST, ACK and returns the lease reported.
func (h *harness) dora() Lease {
	h.t.Helper()
	return h.offerAndAck(h.expect(Discover, bcast))
}

// offerAndAck answers a DISCOVER with offer1 and the REQUEST with ack1.
func (h *harness) offerAndAck(d sent) Lease {
	h.t.Helper()
	h.send(d, offer1)
	r := h.expect(Request, bcast)
	h.send(r, ack1)
	l := h.lease()
	if d := cmp.Diff(wantLease(r.at), l, cmpOpts); d != "" {
		h.t.Fatalf("lease (-want +got):\n%s", d)
	}
	return l
}

func TestAcquire(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		l   Lease
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := h.c.Acquire(ctx)
		done <- result{l, err}
	}()

	d := h.expect(Discover, bcast)
	if d.m.Flags != FlagBroadcast || d.m.CIAddr != netip.IPv4Unspecified() {
		t.Errorf("DISCOVER flags %#x ciaddr %v", d.m.Flags, d.m.CIAddr)
	}
	if host, _ := d.m.Options.Get(OptHostname); string(host) != "unik" {
		t.Errorf("hostname %q", host)
	}
	if prl, _ := d.m.Options.Get(OptParamRequest); !slices.Contains(prl, byte(OptDNS)) || !slices.Contains(prl, byte(OptRouter)) {
		t.Errorf("parameter request list %v", prl)
	}
	h.clock.set(t0.Add(2 * time.Second)) // the offer comes later
	h.send(d, offer1)
	r := h.expect(Request, bcast)
	if r.m.Xid != d.m.Xid || r.m.Secs != 2 || r.m.Flags != FlagBroadcast || r.m.CIAddr != netip.IPv4Unspecified() {
		t.Errorf("REQUEST header %+v", r.m)
	}
	if ip, _ := r.m.Options.Addr(OptRequestedIP); ip != addr1 {
		t.Errorf("requested %v", ip)
	}
	if id, _ := r.m.Options.Addr(OptServerID); id != server1 {
		t.Errorf("server id %v", id)
	}
	h.send(r, ack1)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	want := wantLease(t0.Add(2 * time.Second))
	if d := cmp.Diff(want, res.l, cmpOpts); d != "" {
		t.Errorf("Acquire (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, h.lease(), cmpOpts); d != "" {
		t.Errorf("OnLease (-want +got):\n%s", d)
	}
	if h.c.State() != Bound {
		t.Errorf("state %v", h.c.State())
	}
	// Bound already: Acquire returns at once.
	if l, err := h.c.Acquire(ctx); err != nil || !l.Addr.IsValid() {
		t.Errorf("second Acquire: %v %v", l, err)
	}
}

func TestAcquireDeadline(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.c.Acquire(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire: %v", err)
	}
}

func TestClient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(h *harness)
	}{
		{"replies not for us ignored", func(h *harness) {
			d := h.expect(Discover, bcast)
			other := d.m.Xid + 1
			h.send(d, reply{typ: Offer, yi: addr2, server: server2, lease: 60, xid: &other})
			h.send(d, reply{typ: Offer, yi: addr2, server: server2, lease: 60, mac: otherMAC})
			req := *d.m
			req.Op = BootReply
			b, _ := req.Marshal() // our own DISCOVER, echoed
			h.conn.in <- b
			h.send(d, reply{typ: Ack, yi: addr2, server: server2, lease: 60}) // no ACK before an offer
			h.send(d, offer1)
			r := h.expect(Request, bcast)
			if ip, _ := r.m.Options.Addr(OptRequestedIP); ip != addr1 {
				t.Errorf("requested %v, want %v", ip, addr1)
			}
			// Answers from another server, or for another address, are not
			// answers to this request.
			h.send(r, reply{typ: Nak, server: server2})
			h.send(r, reply{typ: Ack, yi: addr2, server: server1, lease: 60})
			h.send(r, ack1)
			if l := h.lease(); l.Addr.Addr() != addr1 {
				t.Errorf("lease %v", l.Addr)
			}
		}},
		{"garbage ignored", func(h *harness) {
			d := h.expect(Discover, bcast)
			good := offer1.marshal(h.t, d.m)
			for _, b := range [][]byte{
				nil,
				[]byte("GET / HTTP/1.1\r\n\r\n"),
				good[:HeaderLen-1],
				append(slices.Clone(good[:HeaderLen]), 53, 9),
				reply{typ: Offer, yi: addr2}.marshal(h.t, d.m),                                    // no server id
				reply{typ: Offer, yi: netip.IPv4Unspecified(), server: server2}.marshal(h.t, d.m), // no address
				reply{typ: Offer, yi: bcast, server: server2}.marshal(h.t, d.m),
				reply{typ: 99, yi: addr2, server: server2}.marshal(h.t, d.m),
			} {
				h.conn.in <- b
			}
			h.conn.in <- good
			r := h.expect(Request, bcast)
			if ip, _ := r.m.Options.Addr(OptRequestedIP); ip != addr1 {
				t.Errorf("requested %v, want %v", ip, addr1)
			}
			h.send(r, reply{typ: Ack, yi: addr1, server: server1}) // no lease time
			h.quiet()
			h.send(r, ack1)
			h.lease()
		}},
		{"NAK restarts", func(h *harness) {
			d := h.expect(Discover, bcast)
			h.send(d, offer1)
			r := h.expect(Request, bcast)
			h.send(r, reply{typ: Nak, server: server1})
			d2 := h.expect(Discover, bcast)
			if d2.m.Xid == d.m.Xid {
				t.Errorf("same xid after NAK")
			}
			h.send(d, offer1) // the old transaction's offer
			h.quiet()
			h.offerAndAck(d2)
		}},
		{"silent server: backoff", func(h *harness) {
			d := h.expect(Discover, bcast)
			last := d
			for _, wait := range []time.Duration{4, 8, 16, 32, 64, 64, 64} {
				at := h.advance()
				if got := at.Sub(last.at); got != wait*time.Second+jitter {
					t.Errorf("retransmission after %v, want %v", got, wait*time.Second+jitter)
				}
				s := h.expect(Discover, bcast)
				if s.m.Xid != d.m.Xid || int(s.m.Secs) != int(at.Sub(t0)/time.Second) {
					t.Errorf("retransmission xid %#x secs %d", s.m.Xid, s.m.Secs)
				}
				last = s
			}
			h.send(d, offer1)
			r := h.expect(Request, bcast)
			// An unanswered request is retransmitted the same way, then
			// the client starts over.
			for _, wait := range []time.Duration{4, 8, 16, 32} {
				at := h.advance()
				if got := at.Sub(r.at); got != wait*time.Second+jitter {
					t.Errorf("REQUEST retransmission after %v, want %v", got, wait*time.Second+jitter)
				}
				r = h.expect(Request, bcast)
			}
			h.advance()
			if s := h.expect(Discover, bcast); s.m.Xid == d.m.Xid {
				t.Errorf("same xid after giving up")
			}
		}},
		{"renew", func(h *harness) {
			l := h.dora()
			at := h.advance()
			if want := l.Start.Add(l.T1); at != want {
				t.Errorf("renewing at %v, want T1 %v", at, want)
			}
			r := h.expect(Request, server1)
			if r.m.CIAddr != addr1 || r.m.Flags != 0 {
				t.Errorf("renewal ciaddr %v flags %#x", r.m.CIAddr, r.m.Flags)
			}
			if _, ok := r.m.Options.Get(OptRequestedIP); ok {
				t.Errorf("renewal with requested IP")
			}
			if _, ok := r.m.Options.Get(OptServerID); ok {
				t.Errorf("renewal with server id")
			}
			h.send(r, reply{typ: Ack, yi: addr1, server: server1, lease: 7200})
			want := wantLease(at)
			want.Duration, want.T1, want.T2 = 2*time.Hour, time.Hour, 7*time.Hour/4
			if d := cmp.Diff(want, h.lease(), cmpOpts); d != "" {
				t.Errorf("renewed lease (-want +got):\n%s", d)
			}
			if next := h.clock.next(h.t); next != at.Add(time.Hour) {
				t.Errorf("next renewal at %v", next)
			}
		}},
		{"renew fails, rebind", func(h *harness) {
			l := h.dora()
			t1, t2 := l.Start.Add(l.T1), l.Start.Add(l.T2)
			var renewals []time.Time
			for {
				at := h.advance()
				s := <-h.conn.out
				if s.m.Type() != Request || s.m.CIAddr != addr1 {
					t.Fatalf("sent %v ciaddr %v", s.m.Type(), s.m.CIAddr)
				}
				if s.to == bcast {
					if at != t2 {
						t.Errorf("rebinding at %v, want T2 %v", at, t2)
					}
					h.send(s, reply{typ: Ack, yi: addr1, server: server2, lease: 3600})
					break
				}
				if s.to != server1 {
					t.Fatalf("renewal sent to %v", s.to)
				}
				renewals = append(renewals, at)
			}
			// Half the time left to T2 each time, at least 60 s.
			want := []time.Time{t1}
			for next := t1; ; {
				next = next.Add(max(t2.Sub(next)/2, 60*time.Second))
				if !next.Before(t2) {
					break
				}
				want = append(want, next)
			}
			if d := cmp.Diff(want, renewals); d != "" {
				t.Errorf("renewal times (-want +got):\n%s", d)
			}
			if got := h.lease(); got.Server != server2 || got.Start != t2 {
				t.Errorf("rebound lease %+v", got)
			}
		}},
		{"lease expires", func(h *harness) {
			l := h.dora()
			end := l.Start.Add(l.Duration)
			for {
				at := h.advance()
				if at == end {
					break
				}
				if s := <-h.conn.out; s.m.Type() != Request {
					t.Fatalf("sent %v", s.m.Type())
				}
			}
			if l := h.lease(); l.Addr.IsValid() {
				t.Errorf("lease %v after expiry", l)
			}
			h.expect(Discover, bcast)
		}},
		{"NAK while rebinding", func(h *harness) {
			l := h.dora()
			h.clock.set(l.Start.Add(l.T2))
			r := h.expect(Request, bcast)
			h.send(r, reply{typ: Nak, server: server2})
			if l := h.lease(); l.Addr.IsValid() {
				t.Errorf("lease %v after NAK", l)
			}
			h.expect(Discover, bcast)
		}},
		{"release", func(h *harness) {
			h.dora()
			if err := h.stop(); !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
			s := h.expect(Release, server1)
			if s.m.CIAddr != addr1 {
				t.Errorf("release ciaddr %v", s.m.CIAddr)
			}
			if id, _ := s.m.Options.Addr(OptServerID); id != server1 {
				t.Errorf("release server id %v", id)
			}
			if l := h.lease(); l.Addr.IsValid() {
				t.Errorf("lease %v after release", l)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.stop = h.run()
			tc.script(h)
			h.stop()
		})
	}
}

func TestLeaseFrom(t *testing.T) {
	ack := func(opts ...Option) *Message {
		return &Message{Op: BootReply, YIAddr: addr1, Options: append(Options{{OptMessageType, []byte{byte(Ack)}}}, opts...)}
	}
	secs := func(c OptionCode, s uint32) Option { return Option{c, uint32Bytes(s)} }
	for _, tc := range []struct {
		name string
		m    *Message
		want Lease
		err  bool
	}{
		{name: "defaults", m: ack(secs(OptLeaseTime, 800)),
			want: Lease{Addr: netip.PrefixFrom(addr1, 24), Start: t0, Duration: 800 * time.Second, T1: 400 * time.Second, T2: 700 * time.Second}},
		{name: "classful A", m: &Message{YIAddr: netip.MustParseAddr("10.1.2.3"), Options: Options{secs(OptLeaseTime, 800)}},
			want: Lease{Addr: netip.MustParsePrefix("10.1.2.3/8"), Start: t0, Duration: 800 * time.Second, T1: 400 * time.Second, T2: 700 * time.Second}},
		{name: "bad mask, T2 past lease, T1 past T2", m: ack(secs(OptLeaseTime, 800), secs(OptRebindingTime, 900), secs(OptRenewalTime, 750), Option{OptSubnetMask, []byte{255, 0, 255, 0}}),
			want: Lease{Addr: netip.PrefixFrom(addr1, 24), Start: t0, Duration: 800 * time.Second, T1: 400 * time.Second, T2: 700 * time.Second}},
		{name: "T1 and T2 given", m: ack(secs(OptLeaseTime, 800), secs(OptRebindingTime, 600), secs(OptRenewalTime, 100), Option{OptSubnetMask, []byte{255, 255, 0, 0}}),
			want: Lease{Addr: netip.PrefixFrom(addr1, 16), Start: t0, Duration: 800 * time.Second, T1: 100 * time.Second, T2: 600 * time.Second}},
		{name: "short lease", m: ack(secs(OptLeaseTime, 0)),
			want: Lease{Addr: netip.PrefixFrom(addr1, 24), Start: t0, Duration: minLease, T1: minLease / 2, T2: minLease / 8 * 7}},
		{name: "infinite", m: ack(secs(OptLeaseTime, 0xffffffff)),
			want: Lease{Addr: netip.PrefixFrom(addr1, 24), Start: t0, Duration: Infinite, T1: Infinite, T2: Infinite}},
		{name: "odd options dropped", m: ack(secs(OptLeaseTime, 800), Option{OptRouter, []byte{0, 0, 0, 0}}, Option{OptDNS, []byte{1, 2, 3}},
			Option{OptDomainName, []byte("a b")}, Option{OptMTU, []byte{0, 10}}),
			want: Lease{Addr: netip.PrefixFrom(addr1, 24), Start: t0, Duration: 800 * time.Second, T1: 400 * time.Second, T2: 700 * time.Second}},
		{name: "no lease time", m: ack(), err: true},
		{name: "no address", m: &Message{Options: Options{secs(OptLeaseTime, 800)}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := leaseFrom(tc.m, t0)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if d := cmp.Diff(tc.want, l, cmpOpts); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestInfiniteLease(t *testing.T) {
	h := newHarness(t)
	h.stop = h.run()
	d := h.expect(Discover, bcast)
	h.send(d, offer1)
	r := h.expect(Request, bcast)
	h.send(r, reply{typ: Ack, yi: addr1, server: server1, lease: 0xffffffff})
	if l := h.lease(); l.Duration != Infinite {
		t.Errorf("lease %v", l.Duration)
	}
	h.clock.set(t0.Add(1000 * 24 * time.Hour))
	h.quiet()
}

func TestDefaultJitter(t *testing.T) {
	c, err := New(&fakeConn{}, Config{HWAddr: clientMAC})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if d := c.backoff(10); d < 63*time.Second || d > 65*time.Second {
			t.Fatalf("backoff %v", d)
		}
	}
	if _, err := New(&fakeConn{}, Config{HWAddr: clientMAC[:4]}); err == nil {
		t.Error("New accepted a 4-byte MAC")
	}
}
