// Package dhcp runs the DHCPv4 client of services/dhcp on a NIC of a
// netstack.Stack and applies each lease to the stack: address and subnet
// route, default route and name servers (netstack.Stack.SetIPv4).
//
// The transport is a gVisor UDP endpoint on port 68 bound to the NIC
// (SO_BINDTODEVICE) with SO_BROADCAST set. gVisor accepts limited
// broadcasts (255.255.255.255) on any enabled IPv4 NIC, but it sends a
// datagram, even a broadcast, only from an address the NIC holds. So while
// the client has no lease the NIC holds 0.0.0.0/0, the unspecified
// address, as Fuchsia's netstack did: DISCOVERs and REQUESTs then leave
// with the source 0.0.0.0 that RFC 2131 §4.1 asks for. A reply unicast to
// an address the NIC does not hold yet would be dropped, so the client sets
// the broadcast flag. Once bound, the leased address replaces 0.0.0.0/0
// and renewals are unicast both ways. A packet endpoint would avoid the
// placeholder address, at the cost of building and checking IP and UDP
// headers by hand.
package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/services/dhcp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Config configures a Client.
type Config struct {
	// Hostname, if set, is sent to the server (option 12).
	Hostname string
	// OnLease, if set, is called with each lease obtained or renewed,
	// and with the zero dhcp.Lease when it is lost, after the stack has
	// been updated. It runs on the client's goroutine.
	OnLease func(dhcp.Lease)
	// Logf, if set, receives the client's log lines.
	Logf func(format string, args ...any)
	// Clock, if set, replaces the system clock (for tests).
	Clock dhcp.Clock
}

// Client is a DHCP client running on one NIC.
type Client struct {
	st  *netstack.Stack
	nic tcpip.NICID
	cfg Config
	c   *dhcp.Client

	wq *waiter.Queue
	ep tcpip.Endpoint

	mu       sync.Mutex
	applied  dhcp.Lease // +checklocks:mu; what SetIPv4 last installed
	anyAddr  bool       // +checklocks:mu; the NIC holds 0.0.0.0/0
	applyErr error      // +checklocks:mu; the last SetIPv4 failure
	closed   bool       // +checklocks:mu
}

var anyAddr = tcpip.ProtocolAddress{
	Protocol:          ipv4.ProtocolNumber,
	AddressWithPrefix: tcpip.AddressWithPrefix{Address: header.IPv4Any, PrefixLen: 0},
}

// New opens port 68 on NIC nic (an ifindex: 2 is eth0) and prepares a
// client; nothing is sent before Acquire or Run. Close releases the port.
func New(st *netstack.Stack, nic int, cfg Config) (*Client, error) {
	s := st.Gvisor()
	id := tcpip.NICID(nic)
	info, ok := s.NICInfo()[id]
	if !ok {
		return nil, fmt.Errorf("netstack/dhcp: no NIC %d", nic)
	}
	c := &Client{st: st, nic: id, cfg: cfg, wq: new(waiter.Queue)}
	ep, e := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, c.wq)
	if e != nil {
		return nil, fmt.Errorf("netstack/dhcp: UDP endpoint: %v", e)
	}
	c.ep = ep
	ep.SocketOptions().SetBroadcast(true)
	if e := ep.SocketOptions().SetBindToDevice(int32(id)); e != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack/dhcp: bind to NIC %d: %v", nic, e)
	}
	if e := ep.Bind(tcpip.FullAddress{NIC: id, Port: dhcp.ClientPort}); e != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack/dhcp: bind port %d on NIC %d: %v", dhcp.ClientPort, nic, e)
	}
	dc, err := dhcp.New((*conn)(c), dhcp.Config{
		HWAddr:    []byte(info.LinkAddress),
		Hostname:  cfg.Hostname,
		Broadcast: true,
		OnLease:   c.apply,
		Clock:     cfg.Clock,
		Logf:      cfg.Logf,
	})
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack/dhcp: %w", err)
	}
	c.c = dc
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.setAnyLocked(true); err != nil {
		ep.Close()
		return nil, err
	}
	return c, nil
}

// Acquire runs the client until it holds a lease, which is then applied
// to the stack, and returns it. Give ctx a deadline: without a server it
// retransmits forever. Call Run afterwards to keep the lease.
func (c *Client) Acquire(ctx context.Context) (dhcp.Lease, error) {
	return c.c.Acquire(ctx)
}

// Run runs the client until ctx ends, keeping the stack's configuration
// in step with the lease. When ctx ends with a lease held it releases it
// and removes it from the stack. It returns ctx.Err() or a transport
// error. Acquire and Run must not run at the same time.
func (c *Client) Run(ctx context.Context) error {
	return c.c.Run(ctx)
}

// Err returns the last failure to apply a lease to the stack, if any.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applyErr
}

// Close closes the port and removes 0.0.0.0/0 from the NIC. A lease
// still applied stays (Run's end releases it); call after Acquire and
// Run have returned.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.ep.Close()
	return c.setAnyLocked(false)
}

// setAnyLocked adds or removes the placeholder address 0.0.0.0/0.
//
// +checklocks:c.mu
func (c *Client) setAnyLocked(on bool) error {
	if on == c.anyAddr {
		return nil
	}
	s := c.st.Gvisor()
	if on {
		if e := s.AddProtocolAddress(c.nic, anyAddr, stack.AddressProperties{}); e != nil {
			return fmt.Errorf("netstack/dhcp: add 0.0.0.0 to NIC %d: %v", c.nic, e)
		}
	} else if e := s.RemoveAddress(c.nic, header.IPv4Any); e != nil {
		return fmt.Errorf("netstack/dhcp: remove 0.0.0.0 from NIC %d: %v", c.nic, e)
	}
	c.anyAddr = on
	return nil
}

// apply is the dhcp.Client's OnLease: it installs a new or changed lease
// (a renewal that changes nothing but times leaves the stack alone, so
// connections are not disturbed) or withdraws a lost one.
func (c *Client) apply(l dhcp.Lease) {
	c.mu.Lock()
	err := c.applyLocked(l)
	if err != nil {
		c.applyErr = err
	}
	c.mu.Unlock()
	if err != nil && c.cfg.Logf != nil {
		c.cfg.Logf("%v", err)
	}
	if c.cfg.OnLease != nil {
		c.cfg.OnLease(l)
	}
}

// +checklocks:c.mu
func (c *Client) applyLocked(l dhcp.Lease) error {
	old := c.applied
	if l.Addr == old.Addr && l.Gateway == old.Gateway && slices.Equal(l.DNS, old.DNS) {
		return nil
	}
	c.applied = dhcp.Lease{}
	if !l.Addr.IsValid() {
		// Withdraw first, then go back to sending from 0.0.0.0.
		err := c.st.SetIPv4(int(c.nic), netip.Prefix{}, netip.Addr{}, nil)
		return errors.Join(err, c.setAnyLocked(true))
	}
	if err := c.st.SetIPv4(int(c.nic), l.Addr, l.Gateway, l.DNS); err != nil {
		return errors.Join(err, c.setAnyLocked(true))
	}
	c.applied = l
	return c.setAnyLocked(false)
}

// conn is the dhcp.Conn over the UDP endpoint.
type conn Client

// Send implements dhcp.Conn.
func (c *conn) Send(ctx context.Context, pkt []byte, to netip.Addr) error {
	if !to.Is4() {
		return fmt.Errorf("netstack/dhcp: send to %v", to)
	}
	dst := tcpip.FullAddress{NIC: c.nic, Addr: tcpip.AddrFrom4(to.As4()), Port: dhcp.ServerPort}
	for {
		_, e := c.ep.Write(bytes.NewReader(pkt), tcpip.WriteOptions{To: &dst})
		switch e.(type) {
		case nil:
			return nil
		case *tcpip.ErrWouldBlock:
			// Waiting for link resolution of a unicast server;
			// try again when writable.
			if err := c.wait(ctx, waiter.WritableEvents); err != nil {
				return err
			}
		default:
			return fmt.Errorf("netstack/dhcp: send to %v: %v", to, e)
		}
	}
}

// Recv implements dhcp.Conn.
func (c *conn) Recv(ctx context.Context, buf []byte) (int, error) {
	for {
		w := tcpip.SliceWriter(buf)
		res, e := c.ep.Read(&w, tcpip.ReadOptions{})
		switch e.(type) {
		case nil:
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
			if err := c.wait(ctx, waiter.ReadableEvents); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("netstack/dhcp: receive: %v", e)
		}
	}
}

// wait waits for events on the endpoint or for ctx to end. A readiness
// that came before registration is caught by checking Readiness after.
func (c *conn) wait(ctx context.Context, mask waiter.EventMask) error {
	entry, ch := waiter.NewChannelEntry(mask)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	if c.ep.Readiness(mask) != 0 {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
