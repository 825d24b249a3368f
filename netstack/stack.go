package netstack

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/unikgo/unikgo/netdev"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// NIC numbering follows Linux's ifindex: the loopback interface is 1 ("lo")
// and the NICs passed to New are 2, 3, ... ("eth0", "eth1", ...), so that
// interface indexes seen through netlink and IPV6 scope ids agree.
const (
	LoopbackID tcpip.NICID = 1
	firstNICID tcpip.NICID = 2
)

// Config is the static network configuration. Addresses and gateways apply
// to the first NIC (eth0); further NICs get IPv6 link-local addresses only
// until configured with SetIPv4 or AddAddress.
type Config struct {
	// Addrs are static addresses with their prefix, IPv4 or IPv6.
	Addrs []netip.Prefix
	// Gateway is the IPv4 default router; Gateway6 the IPv6 one. Either
	// may be the zero Addr for none.
	Gateway, Gateway6 netip.Addr
	// DNS lists name servers, IPv4 and IPv6, in preference order.
	DNS []netip.Addr
	// Domain is the DNS search domain, if any.
	Domain string
	// Hostname is the machine's name (uname, DHCP option 12).
	Hostname string
	// NoSLAAC turns off IPv6 router discovery and stateless address
	// autoconfiguration on the NICs; link-local addresses remain.
	NoSLAAC bool
	// NoDAD turns off IPv6 duplicate address detection, so that addresses
	// are usable at once instead of tentative for about a second (Linux's
	// accept_dad=0).
	NoDAD bool
}

// Stack is a gVisor network stack over a set of NICs plus loopback.
type Stack struct {
	s    *stack.Stack
	eps  []*linkEP
	host string

	closeOnce sync.Once

	mu     sync.Mutex
	dns    []netip.Addr                            // +checklocks:mu; static ones
	dyn    map[tcpip.NICID][]netip.Addr            // +checklocks:mu; from DHCP or RDNSS
	domain string                                  // +checklocks:mu
	lease  map[tcpip.NICID]tcpip.AddressWithPrefix // +checklocks:mu; SetIPv4's address
}

// New builds a stack with IPv4, IPv6, ARP, TCP, UDP and ICMP (ping) over
// loopback and the given NICs, and applies cfg. The stack owns the NICs:
// Close closes them, and so does New when it fails.
func New(cfg Config, nics ...netdev.NIC) (*Stack, error) {
	if len(cfg.Hostname) > 64 {
		closeNICs(nics)
		return nil, fmt.Errorf("netstack: hostname of %d bytes, at most 64", len(cfg.Hostname))
	}
	st := &Stack{
		host:   cfg.Hostname,
		dns:    slices.Clone(cfg.DNS),
		dyn:    make(map[tcpip.NICID][]netip.Addr),
		domain: cfg.Domain,
		lease:  make(map[tcpip.NICID]tcpip.AddressWithPrefix),
	}
	dad := stack.DADConfigurations{DupAddrDetectTransmits: 1, RetransmitTimer: time.Second}
	if cfg.NoDAD {
		dad.DupAddrDetectTransmits = 0
	}
	ndp := ipv6.NDPConfigurations{}
	if !cfg.NoSLAAC {
		ndp = ipv6.DefaultNDPConfigurations()
		ndp.HandleRAs = ipv6.HandlingRAsAlwaysEnabled
		ndp.DiscoverDefaultRouters = true
		ndp.DiscoverOnLinkPrefixes = true
		ndp.AutoGenGlobalAddresses = true
	}
	st.s = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{
				NDPConfigs:       ndp,
				AutoGenLinkLocal: true,
				NDPDisp:          (*ndpDisp)(st),
				DADConfigs:       dad,
			}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
		HandleLocal: true,
	})
	// Linux's defaults, which Go's net tests and most servers assume:
	// SACK on, and moderate receive buffer auto-tuning.
	sack := tcpip.TCPSACKEnabled(true)
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod)

	if err := st.s.CreateNICWithOptions(LoopbackID, loopback.New(), stack.NICOptions{Name: "lo"}); err != nil {
		st.Close()
		closeNICs(nics)
		return nil, fmt.Errorf("netstack: loopback: %v", err)
	}
	for _, a := range []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")} {
		if err := st.addAddress(LoopbackID, a); err != nil {
			st.Close()
			closeNICs(nics)
			return nil, err
		}
	}
	for i, nic := range nics {
		ep, err := newLinkEP(nic)
		if err != nil {
			st.Close()
			closeNICs(nics[i:])
			return nil, err
		}
		id := firstNICID + tcpip.NICID(i)
		if err := st.s.CreateNICWithOptions(id, ep, stack.NICOptions{Name: fmt.Sprintf("eth%d", i)}); err != nil {
			ep.Close()
			st.Close()
			closeNICs(nics[i+1:])
			return nil, fmt.Errorf("netstack: eth%d: %v", i, err)
		}
		st.eps = append(st.eps, ep)
	}
	var routes []tcpip.Route
	for _, a := range cfg.Addrs {
		if len(nics) == 0 {
			st.Close()
			return nil, errors.New("netstack: static addresses but no NIC")
		}
		if err := st.addAddress(firstNICID, a); err != nil {
			st.Close()
			return nil, err
		}
	}
	for _, gw := range []netip.Addr{cfg.Gateway, cfg.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		if len(nics) == 0 {
			st.Close()
			return nil, errors.New("netstack: a gateway but no NIC")
		}
		dst := header.IPv4EmptySubnet
		if gw.Is6() && !gw.Is4In6() {
			dst = header.IPv6EmptySubnet
		} else if !gw.Is4() {
			st.Close()
			return nil, fmt.Errorf("netstack: gateway %v is a v4-mapped address", gw)
		}
		routes = append(routes, tcpip.Route{Destination: dst, Gateway: tcpip.AddrFromSlice(gw.AsSlice()), NIC: firstNICID})
	}
	// Added, not set: SetRouteTable would drop the subnet routes that
	// addAddress installed.
	for _, r := range routes {
		st.s.AddRoute(r)
	}
	return st, nil
}

// closeNICs closes NICs that New took but did not wrap, on its error paths.
func closeNICs(nics []netdev.NIC) {
	for _, n := range nics {
		n.Close()
	}
}

// addAddress assigns a to NIC id and routes its subnet on that NIC.
func (st *Stack) addAddress(id tcpip.NICID, a netip.Prefix) error {
	pa, err := protoAddr(a)
	if err != nil {
		return err
	}
	if e := st.s.AddProtocolAddress(id, pa, stack.AddressProperties{}); e != nil {
		return fmt.Errorf("netstack: add %v to NIC %d: %v", a, id, e)
	}
	st.s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: id})
	return nil
}

func protoAddr(a netip.Prefix) (tcpip.ProtocolAddress, error) {
	if !a.IsValid() || a.Addr().Is4In6() || a.Addr().Zone() != "" {
		return tcpip.ProtocolAddress{}, fmt.Errorf("netstack: bad interface address %v", a)
	}
	proto := ipv4.ProtocolNumber
	if a.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.Addr().AsSlice()), PrefixLen: a.Bits()},
	}, nil
}

// AddAddress assigns a static address to a NIC (ifindex: 1 is lo, 2 eth0)
// and routes its subnet there.
func (st *Stack) AddAddress(nic int, a netip.Prefix) error {
	return st.addAddress(tcpip.NICID(nic), a)
}

// SetIPv4 replaces the IPv4 configuration that a previous SetIPv4 made on
// a NIC (ifindex) with addr, a default route through gw if valid, and the
// name servers dns; an invalid addr just removes the previous one. It is
// how a DHCP lease is applied and withdrawn.
func (st *Stack) SetIPv4(nic int, addr netip.Prefix, gw netip.Addr, dns []netip.Addr) error {
	id := tcpip.NICID(nic)
	if addr.IsValid() && !addr.Addr().Is4() {
		return fmt.Errorf("netstack: SetIPv4 with non-IPv4 address %v", addr)
	}
	if gw.IsValid() && !gw.Is4() {
		return fmt.Errorf("netstack: SetIPv4 with non-IPv4 gateway %v", gw)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if old, ok := st.lease[id]; ok {
		st.s.RemoveAddress(id, old.Address)
		st.s.RemoveRoutes(func(r tcpip.Route) bool {
			return r.NIC == id && (r.Destination == old.Subnet() || r.Destination == header.IPv4EmptySubnet)
		})
		delete(st.lease, id)
		delete(st.dyn, id)
	}
	if !addr.IsValid() {
		return nil
	}
	pa, err := protoAddr(addr)
	if err != nil {
		return err
	}
	if e := st.s.AddProtocolAddress(id, pa, stack.AddressProperties{}); e != nil {
		return fmt.Errorf("netstack: add %v to NIC %d: %v", addr, id, e)
	}
	st.lease[id] = pa.AddressWithPrefix
	st.s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: id})
	if gw.IsValid() {
		st.s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFromSlice(gw.AsSlice()), NIC: id})
	}
	st.dyn[id] = slices.Clone(dns)
	return nil
}

// Gvisor returns the underlying gVisor stack, for services that use its
// endpoints directly (the DHCP client).
func (st *Stack) Gvisor() *stack.Stack { return st.s }

// Hostname is the configured host name.
func (st *Stack) Hostname() string { return st.host }

// NICs returns the ifindexes of the NICs passed to New, in order.
func (st *Stack) NICs() []int {
	ids := make([]int, len(st.eps))
	for i := range st.eps {
		ids[i] = int(firstNICID) + i
	}
	return ids
}

// DNS returns the name servers: static ones first, then those learnt from
// DHCP and router advertisements, without duplicates.
func (st *Stack) DNS() []netip.Addr {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := slices.Clone(st.dns)
	ids := make([]tcpip.NICID, 0, len(st.dyn))
	for id := range st.dyn {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, a := range st.dyn[id] {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// ResolvConf renders /etc/resolv.conf for Go's resolver from DNS and the
// search domain.
func (st *Stack) ResolvConf() []byte {
	var b strings.Builder
	st.mu.Lock()
	if st.domain != "" {
		fmt.Fprintf(&b, "search %s\n", st.domain)
	}
	st.mu.Unlock()
	for _, a := range st.DNS() {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return []byte(b.String())
}

// Hosts renders /etc/hosts: localhost and the host name on loopback.
func (st *Stack) Hosts() []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	if st.host != "" {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", st.host)
	}
	return []byte(b.String())
}

// Close shuts the stack down: endpoints are aborted, NICs closed, and the
// receive goroutines waited for.
func (st *Stack) Close() {
	st.closeOnce.Do(func() {
		st.s.Close()
		// Stop receiving before gVisor's Wait: it waits for each link
		// endpoint while holding the stack's lock and only then closes
		// it, so a receive goroutine blocked in Receive (or delivering a
		// frame that needs that lock) would never finish.
		for _, ep := range st.eps {
			ep.stop()
		}
		st.s.Wait()
		for _, ep := range st.eps {
			ep.Close() // idempotent; New's error paths never attached some
		}
	})
}

// ndpDisp installs what IPv6 router advertisements teach: default and
// more-specific routes, on-link prefixes and RDNSS name servers.
type ndpDisp Stack

func (d *ndpDisp) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, stack.DADResult) {}

func (d *ndpDisp) OnOffLinkRouteUpdated(nic tcpip.NICID, dst tcpip.Subnet, gw tcpip.Address, _ header.NDPRoutePreference) {
	d.s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == nic && r.Destination == dst && r.Gateway == gw })
	d.s.AddRoute(tcpip.Route{Destination: dst, Gateway: gw, NIC: nic})
}

func (d *ndpDisp) OnOffLinkRouteInvalidated(nic tcpip.NICID, dst tcpip.Subnet, gw tcpip.Address) {
	d.s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == nic && r.Destination == dst && r.Gateway == gw })
}

func (d *ndpDisp) OnOnLinkPrefixDiscovered(nic tcpip.NICID, p tcpip.Subnet) {
	d.s.AddRoute(tcpip.Route{Destination: p, NIC: nic})
}

func (d *ndpDisp) OnOnLinkPrefixInvalidated(nic tcpip.NICID, p tcpip.Subnet) {
	d.s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == nic && r.Destination == p && r.Gateway == (tcpip.Address{}) })
}

func (d *ndpDisp) OnAutoGenAddress(tcpip.NICID, tcpip.AddressWithPrefix) stack.AddressDispatcher {
	return nil
}

func (d *ndpDisp) OnAutoGenAddressDeprecated(tcpip.NICID, tcpip.AddressWithPrefix)  {}
func (d *ndpDisp) OnAutoGenAddressInvalidated(tcpip.NICID, tcpip.AddressWithPrefix) {}

func (d *ndpDisp) OnRecursiveDNSServerOption(nic tcpip.NICID, addrs []tcpip.Address, _ time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range addrs {
		na, _ := netip.AddrFromSlice(a.AsSlice())
		if !slices.Contains(d.dyn[nic], na) {
			d.dyn[nic] = append(d.dyn[nic], na)
		}
	}
}

func (d *ndpDisp) OnDNSSearchListOption(tcpip.NICID, []string, time.Duration) {}

func (d *ndpDisp) OnDHCPv6Configuration(tcpip.NICID, ipv6.DHCPv6ConfigurationFromNDPRA) {}
