package dhcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// Conn carries DHCP messages between the client's port 68 and servers'
// port 67. Both methods must return when ctx ends.
type Conn interface {
	// Send sends pkt to port 67 of to: a server's address, or
	// 255.255.255.255 to broadcast on the link. Before the client has
	// a lease the source address must be 0.0.0.0.
	Send(ctx context.Context, pkt []byte, to netip.Addr) error
	// Recv waits for the next datagram to port 68, broadcast or
	// unicast, and copies it into buf.
	Recv(ctx context.Context, buf []byte) (int, error)
}

// Lease is an address lease as the client holds it. The zero Lease (Addr
// not valid) reports that there is none.
type Lease struct {
	Addr    netip.Prefix // leased address and subnet
	Gateway netip.Addr   // first router, if any
	DNS     []netip.Addr
	Domain  string
	Server  netip.Addr // the server that granted it (option 54)
	MTU     int        // interface MTU (option 26), 0 if not given
	// Start is when the client sent the request that the lease
	// answered; the durations count from there (RFC 2131 §4.4.1).
	Start time.Time
	// Duration is the lease time, Infinite for a permanent lease. T1 and
	// T2 are when the client starts renewing with its server and
	// rebinding with any server.
	Duration, T1, T2 time.Duration
}

// Config configures a Client.
type Config struct {
	// HWAddr is the NIC's Ethernet address, for chaddr.
	HWAddr net.HardwareAddr
	// Hostname, if set, is sent as option 12.
	Hostname string
	// ClientID is option 61; by default the hardware type and address
	// (RFC 2132 §9.14).
	ClientID []byte
	// Broadcast sets the broadcast flag while the client has no address,
	// for transports that cannot receive unicast to an address the
	// interface does not hold yet (RFC 2131 §4.1).
	Broadcast bool
	// OnLease, if set, is called on each lease obtained or renewed and
	// with the zero Lease when it is lost (expired, refused by a NAK or
	// released). It runs on the goroutine inside Acquire or Run, so the
	// client waits for it: a lease can be applied before anything is
	// sent from it.
	OnLease func(Lease)
	// Clock defaults to SystemClock.
	Clock Clock
	// Jitter returns the randomisation added to each retransmission
	// delay in SELECTING and REQUESTING; by default uniform in
	// [-1 s, +1 s] (RFC 2131 §4.1).
	Jitter func() time.Duration
	// Logf, if set, receives a line per state change and per message
	// ignored.
	Logf func(format string, args ...any)
}

// State is where the client is in RFC 2131's state diagram (figure 5).
type State int

// States. INIT-REBOOT and REBOOTING are not implemented: the client
// always starts from INIT.
const (
	Init State = iota
	Selecting
	Requesting
	Bound
	Renewing
	Rebinding
)

func (s State) String() string {
	names := [...]string{"INIT", "SELECTING", "REQUESTING", "BOUND", "RENEWING", "REBINDING"}
	if s >= 0 && int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Timing constants.
const (
	// firstRetransmit and maxRetransmit bound the exponential backoff
	// of RFC 2131 §4.1: 4 s, 8 s, ... up to 64 s.
	firstRetransmit = 4 * time.Second
	maxRetransmit   = 64 * time.Second
	// requestTries is how many REQUESTs the client sends in REQUESTING
	// before it gives up on the offer and starts over (§3.1 step 5).
	requestTries = 5
	// minRenewRetransmit is the shortest wait between REQUESTs in
	// RENEWING and REBINDING (§4.4.5).
	minRenewRetransmit = 60 * time.Second
	// minLease is the shortest lease the client accepts as such; shorter
	// ones are taken as this long, so that a broken or hostile server
	// cannot make it renew in a tight loop.
	minLease = 60 * time.Second
	// releaseTimeout bounds the best-effort DHCPRELEASE sent when Run's
	// context ends.
	releaseTimeout = time.Second
)

// requestedParams are the options the client asks for (option 55).
var requestedParams = []byte{
	byte(OptSubnetMask), byte(OptRouter), byte(OptDNS), byte(OptDomainName),
	byte(OptMTU), byte(OptBroadcast), byte(OptLeaseTime), byte(OptServerID),
	byte(OptRenewalTime), byte(OptRebindingTime),
}

var broadcastAddr = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// ErrBusy is returned by Acquire or Run when the other is running.
var ErrBusy = errors.New("dhcp: client already running")

// Client is a DHCP client for one interface. Its state is kept between
// calls: Acquire brings it to BOUND, and Run carries on from there.
type Client struct {
	conn    Conn
	cfg     Config
	clock   Clock
	jitter  func() time.Duration
	running atomic.Bool

	// The state machine, owned by the goroutine inside Acquire or Run.
	state State
	xid   uint32
	start time.Time // when this exchange began, for secs
	sent  time.Time // first REQUEST of this exchange: lease start
	tries int       // messages sent in this state
	wake  time.Time // next timeout; zero for none
	offer *Message  // the offer being requested
	lease Lease     // valid in BOUND, RENEWING, REBINDING
	rxBuf []byte
}

// New returns a client that talks over conn. It sends nothing until
// Acquire or Run.
func New(conn Conn, cfg Config) (*Client, error) {
	if len(cfg.HWAddr) != 6 {
		return nil, fmt.Errorf("dhcp: hardware address %v is not Ethernet", cfg.HWAddr)
	}
	if len(cfg.Hostname) > 255 || len(cfg.ClientID) > 255 {
		return nil, errors.New("dhcp: hostname or client id longer than an option")
	}
	c := &Client{conn: conn, cfg: cfg, clock: cfg.Clock, jitter: cfg.Jitter}
	c.cfg.HWAddr = slices.Clone(cfg.HWAddr)
	if c.cfg.ClientID == nil {
		c.cfg.ClientID = append([]byte{HTypeEthernet}, cfg.HWAddr...)
	}
	if c.clock == nil {
		c.clock = SystemClock{}
	}
	if c.jitter == nil {
		c.jitter = func() time.Duration { return time.Duration(rand.Int64N(int64(2*time.Second)+1)) - time.Second }
	}
	return c, nil
}

// Acquire runs the client until it holds a lease, which it returns; if it
// already holds one it returns that at once. It fails when ctx ends first
// (the error wraps ctx.Err()) or the transport fails. Then call Run to
// keep the lease.
func (c *Client) Acquire(ctx context.Context) (Lease, error) {
	if err := c.loop(ctx, func() bool { return c.state == Bound || c.state == Renewing || c.state == Rebinding }); err != nil {
		return Lease{}, fmt.Errorf("dhcp: no lease: %w", err)
	}
	return c.lease, nil
}

// Run runs the client until ctx ends: it acquires a lease if it has none,
// renews it, and starts over when it is lost. When ctx ends while it holds
// a lease, it releases it (best effort, one DHCPRELEASE) and reports the
// loss. It returns ctx.Err(), or the transport's error.
func (c *Client) Run(ctx context.Context) error {
	err := c.loop(ctx, func() bool { return false })
	if ctx.Err() != nil && c.lease.Addr.IsValid() {
		c.release(context.WithoutCancel(ctx))
	}
	return err
}

// State returns the client's state; only meaningful while neither Acquire
// nor Run is running.
func (c *Client) State() State { return c.state }

// received is what the receiving goroutine passes on.
type received struct {
	m   *Message
	err error
}

// loop runs the state machine until done reports true or ctx ends. A
// goroutine reads the transport, since Conn.Recv blocks; it ends with
// loop.
func (c *Client) loop(ctx context.Context, done func() bool) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer c.running.Store(false)
	rctx, cancel := context.WithCancel(ctx)
	rx := make(chan received)
	exited := make(chan struct{})
	go c.receive(rctx, rx, exited)
	defer func() { cancel(); <-exited }()

	if c.state == Init && c.wake.IsZero() {
		c.wake = c.clock.Now()
	}
	for !done() {
		timer, stop := c.clock.At(c.wake)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case r := <-rx:
			stop()
			if r.err != nil {
				return r.err
			}
			c.handle(ctx, r.m)
		case <-timer:
			stop()
			c.timeout(ctx)
		}
	}
	return nil
}

// receive reads and parses datagrams until ctx ends; unparsable ones are
// dropped here.
func (c *Client) receive(ctx context.Context, rx chan<- received, exited chan<- struct{}) {
	defer close(exited)
	if c.rxBuf == nil {
		c.rxBuf = make([]byte, 65536)
	}
	for {
		n, err := c.conn.Recv(ctx, c.rxBuf)
		if ctx.Err() != nil {
			return
		}
		var r received
		if err != nil {
			r.err = fmt.Errorf("dhcp: receive: %w", err)
		} else if r.m, err = Parse(c.rxBuf[:n]); err != nil {
			c.logf("dhcp: dropped a datagram of %d bytes: %v", n, err)
			continue
		}
		select {
		case rx <- r:
		case <-ctx.Done():
			return
		}
		if r.err != nil {
			return
		}
	}
}

func (c *Client) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

func (c *Client) setState(s State) {
	if s != c.state {
		c.logf("dhcp: %v -> %v", c.state, s)
	}
	c.state = s
	c.tries = 0
}

// backoff is the delay before retransmission number n (0 for the first
// send) in SELECTING and REQUESTING.
func (c *Client) backoff(n int) time.Duration {
	d := maxRetransmit
	if n < 5 {
		d = firstRetransmit << n
	}
	return d + c.jitter()
}

// renewBackoff is the delay before retransmitting in RENEWING or
// REBINDING: half the time left until end (T2 or expiry), at least
// minRenewRetransmit, and never past end.
func renewBackoff(now, end time.Time) time.Time {
	t := now.Add(max(end.Sub(now)/2, minRenewRetransmit))
	if t.After(end) {
		return end
	}
	return t
}

// timeout handles c.wake being reached.
func (c *Client) timeout(ctx context.Context) {
	now := c.clock.Now()
	switch c.state {
	case Init:
		c.xid = rand.Uint32()
		c.start = now
		c.offer = nil
		c.setState(Selecting)
		c.send(ctx, Discover, broadcastAddr)
		c.wake = now.Add(c.backoff(0))
	case Selecting:
		c.send(ctx, Discover, broadcastAddr)
		c.wake = now.Add(c.backoff(c.tries - 1))
	case Requesting:
		if c.tries >= requestTries {
			c.logf("dhcp: no answer to %d requests for %v, starting over", c.tries, c.offer.YIAddr)
			c.restart(now)
			return
		}
		c.send(ctx, Request, broadcastAddr)
		c.wake = now.Add(c.backoff(c.tries - 1))
	case Bound, Renewing, Rebinding:
		t2, end := c.lease.at(c.lease.T2), c.lease.at(c.lease.Duration)
		switch {
		case !end.IsZero() && !now.Before(end):
			c.logf("dhcp: lease of %v expired", c.lease.Addr)
			c.lose()
			c.restart(now)
		case !t2.IsZero() && !now.Before(t2):
			if c.state != Rebinding {
				c.xid = rand.Uint32()
				c.start, c.sent = now, now
				c.setState(Rebinding)
			}
			c.send(ctx, Request, broadcastAddr)
			c.wake = renewBackoff(now, end)
		default: // T1 reached
			if c.state != Renewing {
				c.xid = rand.Uint32()
				c.start, c.sent = now, now
				c.setState(Renewing)
			}
			c.send(ctx, Request, c.lease.Server)
			c.wake = renewBackoff(now, t2)
		}
	}
}

// at is when d after the lease started falls, zero for Infinite.
func (l *Lease) at(d time.Duration) time.Time {
	if d == Infinite {
		return time.Time{}
	}
	return l.Start.Add(d)
}

// restart goes back to INIT, to send a DHCPDISCOVER at once.
func (c *Client) restart(now time.Time) {
	c.setState(Init)
	c.offer = nil
	c.wake = now
}

// lose drops the lease and reports it.
func (c *Client) lose() {
	c.lease = Lease{}
	c.report(Lease{})
}

func (c *Client) report(l Lease) {
	if c.cfg.OnLease != nil {
		c.cfg.OnLease(l)
	}
}

// handle processes a received message.
func (c *Client) handle(ctx context.Context, m *Message) {
	if m.Op != BootReply || m.HType != HTypeEthernet || m.HLen != 6 || !slices.Equal(m.HWAddr(), c.cfg.HWAddr) {
		c.logf("dhcp: ignored a message for another client")
		return
	}
	if m.Xid != c.xid || c.state == Init || c.state == Bound {
		c.logf("dhcp: ignored %v with xid %#x, not ours", m.Type(), m.Xid)
		return
	}
	now := c.clock.Now()
	server, _ := m.Options.Addr(OptServerID)
	switch t := m.Type(); {
	case c.state == Selecting && t == Offer:
		if !server.IsValid() || !usable(m.YIAddr) {
			c.logf("dhcp: ignored an offer of %v from %v", m.YIAddr, server)
			return
		}
		c.offer = m
		c.sent = now
		c.setState(Requesting)
		c.send(ctx, Request, broadcastAddr)
		c.wake = now.Add(c.backoff(0))
	case c.state == Requesting && (t == Ack || t == Nak):
		if offered, _ := c.offer.Options.Addr(OptServerID); server.IsValid() && server != offered {
			c.logf("dhcp: ignored %v from %v, not the server requested", t, server)
			return
		}
		if t == Nak {
			c.logf("dhcp: %v refused: %s", c.offer.YIAddr, nakMessage(m))
			c.restart(now)
			return
		}
		if m.YIAddr != c.offer.YIAddr {
			c.logf("dhcp: ignored an ACK for %v, %v was requested", m.YIAddr, c.offer.YIAddr)
			return
		}
		c.bind(m, now)
	case (c.state == Renewing || c.state == Rebinding) && t == Nak:
		c.logf("dhcp: lease of %v refused by %v: %s", c.lease.Addr, server, nakMessage(m))
		c.lose()
		c.restart(now)
	case (c.state == Renewing || c.state == Rebinding) && t == Ack:
		c.bind(m, now)
	default:
		c.logf("dhcp: ignored %v in %v", t, c.state)
	}
}

func nakMessage(m *Message) string {
	b, _ := m.Options.Get(OptMessage)
	return fmt.Sprintf("%q", b)
}

// usable reports whether a is an address a host can hold.
func usable(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && a != broadcastAddr
}

// bind takes the lease an ACK grants, or ignores the ACK if it grants
// nothing usable.
func (c *Client) bind(m *Message, now time.Time) {
	l, err := leaseFrom(m, c.sent)
	if err != nil {
		c.logf("dhcp: ignored an ACK: %v", err)
		return
	}
	if !l.Server.IsValid() {
		l.Server = c.lease.Server // renewals need not repeat it
		if !l.Server.IsValid() && c.offer != nil {
			l.Server, _ = c.offer.Options.Addr(OptServerID)
		}
	}
	c.lease = l
	c.offer = nil
	c.setState(Bound)
	c.logf("dhcp: bound to %v from %v for %v", l.Addr, l.Server, l.Duration)
	c.wake = l.at(l.T1)
	c.report(l)
}

// leaseFrom reads the lease an ACK grants, counted from start.
func leaseFrom(m *Message, start time.Time) (Lease, error) {
	if !usable(m.YIAddr) {
		return Lease{}, fmt.Errorf("address %v", m.YIAddr)
	}
	d, ok := m.Options.Seconds(OptLeaseTime)
	if !ok {
		return Lease{}, errors.New("no lease time") // required in an ACK to a REQUEST
	}
	l := Lease{Start: start, Duration: max(d, minLease)}
	l.Server, _ = m.Options.Addr(OptServerID)
	bits, ok := m.Options.SubnetMask()
	if !ok {
		bits = ClassfulBits(m.YIAddr)
	}
	l.Addr = netip.PrefixFrom(m.YIAddr, bits)
	if rs := m.Options.Addrs(OptRouter); len(rs) > 0 && usable(rs[0]) {
		l.Gateway = rs[0]
	}
	for _, a := range m.Options.Addrs(OptDNS) {
		if usable(a) && !slices.Contains(l.DNS, a) {
			l.DNS = append(l.DNS, a)
		}
	}
	if b, ok := m.Options.Get(OptDomainName); ok {
		l.Domain = domainName(b)
	}
	if v, ok := m.Options.Uint16(OptMTU); ok && v >= 68 {
		l.MTU = int(v)
	}
	// T1 and T2 default to half and seven eighths of the lease (§4.4.5);
	// values out of order are replaced by the defaults.
	l.T1, l.T2 = l.Duration/2, l.Duration/8*7
	if l.Duration == Infinite {
		l.T1, l.T2 = Infinite, Infinite
	}
	t1, ok1 := m.Options.Seconds(OptRenewalTime)
	t2, ok2 := m.Options.Seconds(OptRebindingTime)
	if !ok2 || t2 > l.Duration {
		t2 = l.T2
	}
	if !ok1 || t1 > t2 {
		t1 = min(l.T1, t2)
	}
	l.T1, l.T2 = t1, t2
	return l, nil
}

// domainName keeps option 15 if it looks like a domain name, since it
// ends up in resolv.conf: printable ASCII without spaces, trailing NULs
// (which some servers send) removed.
func domainName(b []byte) string {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	for _, ch := range b {
		if ch <= ' ' || ch >= 0x7f {
			return ""
		}
	}
	return string(b)
}

// ClassfulBits is the prefix length of IPv4 address a's class (RFC 791),
// the subnet mask a host assumes when none is given: without option 1
// (RFC 1122 §3.3.1.1), or in Linux's ip= without a netmask.
func ClassfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	default:
		return 24
	}
}

// send builds and sends a message of type t for the current state. Send
// errors are only logged: retransmission covers a lost message.
func (c *Client) send(ctx context.Context, t MessageType, to netip.Addr) {
	now := c.clock.Now()
	m := &Message{
		Op:    BootRequest,
		HType: HTypeEthernet,
		HLen:  6,
		Xid:   c.xid,
		Secs:  uint16(min(now.Sub(c.start)/time.Second, 0xffff)),
	}
	copy(m.CHAddr[:], c.cfg.HWAddr)
	m.Options.Set(OptMessageType, []byte{byte(t)})
	m.Options.Set(OptClientID, c.cfg.ClientID)
	switch {
	case t == Release:
		m.CIAddr = c.lease.Addr.Addr()
		m.Options.Set(OptServerID, addrBytes(c.lease.Server))
	case c.state == Renewing || c.state == Rebinding:
		// ciaddr says this is a renewal; the address is ours so
		// replies can be unicast to it.
		m.CIAddr = c.lease.Addr.Addr()
	case c.state == Requesting:
		server, _ := c.offer.Options.Addr(OptServerID)
		m.Options.Set(OptRequestedIP, addrBytes(c.offer.YIAddr))
		m.Options.Set(OptServerID, addrBytes(server))
	}
	if t != Release {
		if c.cfg.Broadcast && !m.CIAddr.IsValid() {
			m.Flags = FlagBroadcast
		}
		if c.cfg.Hostname != "" {
			m.Options.Set(OptHostname, []byte(c.cfg.Hostname))
		}
		m.Options.Set(OptParamRequest, requestedParams)
	}
	b, err := m.Marshal()
	if err == nil {
		err = c.conn.Send(ctx, b, to)
	}
	c.tries++
	if err != nil && ctx.Err() == nil {
		c.logf("dhcp: sending %v to %v: %v", t, to, err)
	}
}

// release gives the lease back, waiting at most releaseTimeout for the
// transport, and reports the loss.
func (c *Client) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	c.xid = rand.Uint32()
	c.send(ctx, Release, c.lease.Server)
	c.logf("dhcp: released %v", c.lease.Addr)
	c.lose()
	c.setState(Init)
	c.wake = time.Time{}
}
