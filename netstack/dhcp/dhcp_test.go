package dhcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/nictest"
	"github.com/unikgo/unikgo/services/dhcp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const eth0 = 2

var (
	serverAddr = netip.MustParseAddr("10.0.0.1")
	leased     = netip.MustParsePrefix("10.0.0.50/24")
	dnsAddrs   = []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.0.0.54")}
	// remote is an address beyond the gateway, held by the server's
	// stack but outside the leased subnet: reaching it proves the
	// default route.
	remote = netip.MustParseAddr("192.0.2.1")
)

// udpSocket is a bare gVisor UDP endpoint, for the test server.
type udpSocket struct {
	ep tcpip.Endpoint
	wq waiter.Queue
}

func listenUDP(t *testing.T, st *netstack.Stack, port uint16) *udpSocket {
	u := &udpSocket{}
	ep, e := st.Gvisor().NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &u.wq)
	if e != nil {
		t.Fatal(e)
	}
	u.ep = ep
	ep.SocketOptions().SetBroadcast(true)
	if e := ep.Bind(tcpip.FullAddress{Port: port}); e != nil {
		t.Fatal(e)
	}
	t.Cleanup(ep.Close)
	return u
}

func (u *udpSocket) read(ctx context.Context, buf []byte) (int, tcpip.FullAddress, error) {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	u.wq.EventRegister(&entry)
	defer u.wq.EventUnregister(&entry)
	for {
		w := tcpip.SliceWriter(buf)
		res, e := u.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if _, ok := e.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return 0, tcpip.FullAddress{}, ctx.Err()
			}
		}
		if e != nil {
			return 0, tcpip.FullAddress{}, errors.New(e.String())
		}
		return res.Count, res.RemoteAddr, nil
	}
}

func (u *udpSocket) writeTo(b []byte, to netip.Addr, port uint16) error {
	dst := tcpip.FullAddress{NIC: eth0, Addr: tcpip.AddrFrom4(to.As4()), Port: port}
	if _, e := u.ep.Write(bytes.NewReader(b), tcpip.WriteOptions{To: &dst}); e != nil {
		return errors.New(e.String())
	}
	return nil
}

// seen is a message the server received, with its IP source.
type seen struct {
	typ    dhcp.MessageType
	src    netip.Addr
	ciaddr netip.Addr
	flags  uint16
}

// server is a tiny DHCP server: it offers leased to anyone, with the
// lease time lease, broadcasting replies unless the request has ciaddr.
type server struct {
	t      *testing.T
	sock   *udpSocket
	lease  uint32
	silent atomic.Bool
	seen   chan seen
}

func startServer(t *testing.T, st *netstack.Stack, lease uint32) *server {
	s := &server{t: t, sock: listenUDP(t, st, dhcp.ServerPort), lease: lease, seen: make(chan seen, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serve(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

func (s *server) serve(ctx context.Context) {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.sock.read(ctx, buf)
		if err != nil {
			return
		}
		req, err := dhcp.Parse(buf[:n])
		if err != nil || req.Op != dhcp.BootRequest {
			s.t.Errorf("server got a bad request: %v", err)
			continue
		}
		src, _ := netip.AddrFromSlice(from.Addr.AsSlice())
		s.seen <- seen{req.Type(), src, req.CIAddr, req.Flags}
		if s.silent.Load() {
			continue
		}
		var typ dhcp.MessageType
		switch req.Type() {
		case dhcp.Discover:
			typ = dhcp.Offer
		case dhcp.Request:
			typ = dhcp.Ack
		default:
			continue
		}
		m := &dhcp.Message{Op: dhcp.BootReply, HType: req.HType, HLen: req.HLen, Xid: req.Xid, Flags: req.Flags,
			CIAddr: req.CIAddr, YIAddr: leased.Addr(), CHAddr: req.CHAddr}
		m.Options.Set(dhcp.OptMessageType, []byte{byte(typ)})
		m.Options.Set(dhcp.OptServerID, serverAddr.AsSlice())
		m.Options.Set(dhcp.OptLeaseTime, []byte{byte(s.lease >> 24), byte(s.lease >> 16), byte(s.lease >> 8), byte(s.lease)})
		m.Options.Set(dhcp.OptSubnetMask, []byte{255, 255, 255, 0})
		m.Options.Set(dhcp.OptRouter, serverAddr.AsSlice())
		m.Options.Set(dhcp.OptDNS, append(dnsAddrs[0].AsSlice(), dnsAddrs[1].AsSlice()...))
		m.Options.Set(dhcp.OptDomainName, []byte("lan"))
		b, err := m.Marshal()
		if err != nil {
			s.t.Error(err)
			continue
		}
		to := netip.IPv4Unspecified()
		if req.CIAddr != to {
			to = req.CIAddr
		} else {
			to = netip.AddrFrom4([4]byte{255, 255, 255, 255})
		}
		if err := s.writeTo(b, to); err != nil {
			s.t.Errorf("server reply to %v: %v", to, err)
		}
	}
}

func (s *server) writeTo(b []byte, to netip.Addr) error {
	return s.sock.writeTo(b, to, dhcp.ClientPort)
}

func (s *server) expect(typ dhcp.MessageType) seen {
	s.t.Helper()
	for {
		select {
		case m := <-s.seen:
			if m.typ == typ {
				return m
			}
			s.t.Logf("server saw %v while waiting for %v", m.typ, typ)
		case <-time.After(10 * time.Second):
			s.t.Fatalf("server saw no %v", typ)
			return seen{}
		}
	}
}

// newStacks returns a client stack without addresses and a server stack
// at 10.0.0.1/24 that also holds remote and echoes TCP on it, port 7.
func newStacks(t *testing.T) (client, srv *netstack.Stack) {
	na, nb := nictest.Pipe(1500)
	client, err := netstack.New(netstack.Config{Hostname: "unik", NoSLAAC: true, NoDAD: true}, na)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = netstack.New(netstack.Config{Addrs: []netip.Prefix{netip.PrefixFrom(serverAddr, 24)}, NoSLAAC: true, NoDAD: true}, nb)
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); srv.Close() })
	if err := srv.AddAddress(eth0, netip.PrefixFrom(remote, 32)); err != nil {
		t.Fatal(err)
	}
	ln, err := gonet.ListenTCP(srv.Gvisor(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(remote.As4()), Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return client, srv
}

// ipv4Addrs returns the IPv4 addresses of eth0.
func ipv4Addrs(st *netstack.Stack) []netip.Prefix {
	var out []netip.Prefix
	for _, pa := range st.Gvisor().NICInfo()[eth0].ProtocolAddresses {
		if pa.Protocol != ipv4.ProtocolNumber || pa.AddressWithPrefix.Address == header.IPv4Broadcast {
			continue
		}
		a, _ := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
		out = append(out, netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen))
	}
	return out
}

// hasDefaultRoute reports whether the stack routes 0.0.0.0/0 via the
// server.
func hasDefaultRoute(st *netstack.Stack) bool {
	return slices.ContainsFunc(st.Gvisor().GetRouteTable(), func(r tcpip.Route) bool {
		return r.Destination == header.IPv4EmptySubnet && r.Gateway == tcpip.AddrFrom4(serverAddr.As4()) && r.NIC == eth0
	})
}

// echoRemote checks that the stack reaches remote through the gateway.
func echoRemote(t *testing.T, st *netstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, st.Gvisor(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(remote.As4()), Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial %v via the gateway: %v", remote, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

// checkConfigured checks the stack holds the lease and only it.
func checkConfigured(t *testing.T, st *netstack.Stack) {
	t.Helper()
	if d := cmp.Diff([]netip.Prefix{leased}, ipv4Addrs(st), cmpopts.EquateComparable(netip.Prefix{})); d != "" {
		t.Errorf("eth0 IPv4 addresses (-want +got):\n%s", d)
	}
	if !hasDefaultRoute(st) {
		t.Errorf("no default route via %v: %v", serverAddr, st.Gvisor().GetRouteTable())
	}
	if d := cmp.Diff(dnsAddrs, st.DNS(), cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("DNS (-want +got):\n%s", d)
	}
}

// checkUnconfigured checks the lease is gone: only 0.0.0.0 (while the
// client looks for a new lease) or nothing.
func checkUnconfigured(t *testing.T, st *netstack.Stack, any bool) {
	t.Helper()
	var want []netip.Prefix
	if any {
		want = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}
	if d := cmp.Diff(want, ipv4Addrs(st), cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("eth0 IPv4 addresses (-want +got):\n%s", d)
	}
	if hasDefaultRoute(st) {
		t.Errorf("default route left: %v", st.Gvisor().GetRouteTable())
	}
	if dns := st.DNS(); len(dns) != 0 {
		t.Errorf("DNS left: %v", dns)
	}
}

func TestAcquireRunRelease(t *testing.T) {
	cst, sst := newStacks(t)
	srv := startServer(t, sst, 3600)
	leases := make(chan dhcp.Lease, 16)
	c, err := New(cst, eth0, Config{Hostname: "unik", OnLease: func(l dhcp.Lease) { leases <- l }, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkUnconfigured(t, cst, true)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr != leased || l.Gateway != serverAddr || l.Server != serverAddr || l.Domain != "lan" || l.Duration != time.Hour {
		t.Errorf("lease %+v", l)
	}
	d := srv.expect(dhcp.Discover)
	if d.src != netip.IPv4Unspecified() || d.flags != dhcp.FlagBroadcast {
		t.Errorf("DISCOVER from %v flags %#x", d.src, d.flags)
	}
	if r := srv.expect(dhcp.Request); r.src != netip.IPv4Unspecified() {
		t.Errorf("REQUEST from %v", r.src)
	}
	if got := <-leases; got.Addr != leased {
		t.Errorf("OnLease %v", got.Addr)
	}
	checkConfigured(t, cst)
	echoRemote(t, cst)
	if err := c.Err(); err != nil {
		t.Errorf("Err: %v", err)
	}

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
	if r := srv.expect(dhcp.Release); r.src != leased.Addr() || r.ciaddr != leased.Addr() {
		t.Errorf("RELEASE from %v ciaddr %v", r.src, r.ciaddr)
	}
	if got := <-leases; got.Addr.IsValid() {
		t.Errorf("OnLease after release: %v", got)
	}
	checkUnconfigured(t, cst, true)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkUnconfigured(t, cst, false)
}

// fakeClock is a dhcp.Clock moved by the test.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[chan time.Time]time.Time
}

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
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch, func() {}
	}
	c.timers[ch] = t
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.timers, ch)
	}
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for ch, at := range c.timers {
		if !at.After(t) {
			ch <- t
			delete(c.timers, ch)
		}
	}
}

func TestRenewAndExpiry(t *testing.T) {
	cst, sst := newStacks(t)
	srv := startServer(t, sst, 600)
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), timers: make(map[chan time.Time]time.Time)}
	leases := make(chan dhcp.Lease, 16)
	c, err := New(cst, eth0, Config{OnLease: func(l dhcp.Lease) { leases <- l }, Logf: t.Logf, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func() dhcp.Lease {
		t.Helper()
		select {
		case l := <-leases:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no lease reported")
			return dhcp.Lease{}
		}
	}

	l := next()
	checkConfigured(t, cst)
	srv.expect(dhcp.Discover)
	srv.expect(dhcp.Request)

	// At T1 the client renews by unicast, from and to its address.
	clock.set(l.Start.Add(l.T1))
	r := srv.expect(dhcp.Request)
	if r.src != leased.Addr() || r.ciaddr != leased.Addr() || r.flags != 0 {
		t.Errorf("renewal from %v ciaddr %v flags %#x", r.src, r.ciaddr, r.flags)
	}
	l2 := next()
	if l2.Addr != leased || !l2.Start.Equal(l.Start.Add(l.T1)) {
		t.Errorf("renewed lease %+v", l2)
	}
	checkConfigured(t, cst)
	echoRemote(t, cst)

	// The server goes away: the lease runs out and is withdrawn.
	srv.silent.Store(true)
	clock.set(l2.Start.Add(l2.Duration))
	if l := next(); l.Addr.IsValid() {
		t.Fatalf("lease %+v after expiry", l)
	}
	checkUnconfigured(t, cst, true)
	srv.expect(dhcp.Discover)

	// It comes back: at the next retransmission the client is bound again.
	srv.silent.Store(false)
	clock.set(clock.Now().Add(time.Minute))
	if l := next(); l.Addr != leased {
		t.Fatalf("lease %+v after the server came back", l)
	}
	checkConfigured(t, cst)
	echoRemote(t, cst)
}
