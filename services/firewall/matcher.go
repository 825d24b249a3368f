package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
)

// qubesDNS are the virtual DNS server addresses dom0 gives every networked VM
// (qubes-core-admin's NetVMMixin.dns); the NetVM redirects TCP and UDP port
// 53 sent to them to the real resolvers. Released Qubes versions define no
// IPv6 equivalents; Qubes 4.3 work (qubes-issues#10038) adds
// fd09:24ef:4179::a8b:101 and ::a8b:102, which a caller that is given them
// passes in Options.DNS.
var qubesDNS = [...]netip.Addr{
	netip.AddrFrom4([4]byte{10, 139, 1, 1}),
	netip.AddrFrom4([4]byte{10, 139, 1, 2}),
}

// DefaultDNS returns the Qubes virtual DNS servers that specialtarget=dns
// means when Options.DNS is empty: 10.139.1.1 and 10.139.1.2.
func DefaultDNS() []netip.Addr { return slices.Clone(qubesDNS[:]) }

// Options are the inputs of a compilation besides the rule sets. A Matcher
// keeps them for later updates (With).
type Options struct {
	// Resolver resolves dsthost names; nil means names never resolve (their
	// rules match nothing and are reported by Problems).
	Resolver Resolver
	// DNS are the addresses specialtarget=dns stands for, the DNS servers the
	// firewall VM itself is given (the Linux agent reads them from its
	// resolv.conf); empty means DefaultDNS.
	DNS []netip.Addr
}

// allPorts is the port condition of a rule without dstports.
var allPorts = PortRange{First: 0, Last: 65535}

// Rule numbers MatchRule reports when no rule decided.
const (
	// RulePolicy means no rule matched and the client's policy decided.
	RulePolicy = -1
	// RuleNoClient means the source is not a known client (or the
	// destination is of the other address family): the packet is dropped.
	RuleNoClient = -2
)

// Resolver looks up the addresses of a dsthost name; network is "ip4" or
// "ip6", the family of the client the rule belongs to. *net.Resolver
// satisfies it. Compile calls it synchronously, once per distinct name and
// family, so an implementation that does network I/O should honour ctx.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolveError records a dsthost name that did not resolve when a rule set
// was compiled. An accept rule then matches nothing; a drop rule makes the
// whole client deny-all (FailedClosed), as the Linux agent blocks a client
// whose rules it cannot apply: letting traffic meant to be dropped fall
// through to later accept rules would open the firewall.
type ResolveError struct {
	Client       netip.Addr
	Rule         int
	Host         string
	Err          error
	FailedClosed bool
}

func (e *ResolveError) Error() string {
	effect := "the rule matches nothing"
	if e.FailedClosed {
		effect = "all traffic from this client is dropped"
	}
	return fmt.Sprintf("firewall rules for client %s: rule %04d dsthost %s did not resolve (%v); %s until the rules are applied again",
		e.Client, e.Rule, quote(e.Host), e.Err, effect)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// compiledRule is one rule reduced to comparisons on packet fields. A parsed
// rule may expand into several (one per resolved address, per DNS server, or
// TCP and UDP for specialtarget=dns), kept adjacent so the first-match order
// is unchanged.
type compiledRule struct {
	// Destination network over the 16-byte form of the address (IPv4 as
	// ::ffff:a.b.c.d); a zero mask matches every destination.
	netHi, netLo   uint64
	maskHi, maskLo uint64
	ports          PortRange
	// proto is the IP protocol number, 0 for any.
	proto         uint8
	icmpType      uint8
	matchICMPType bool
	action        Action
	number        int32
}

// clientRules is everything Match needs about one client.
type clientRules struct {
	client   netip.Addr
	rules    []compiledRule
	policy   Action
	ipv4     bool
	problems []error
}

// Matcher is an immutable, compiled form of every client's rule set. It is
// safe for concurrent use; a nil *Matcher drops everything.
type Matcher struct {
	v4   map[uint32]*clientRules
	v6   map[[16]byte]*clientRules
	opts Options
}

// Compile builds a Matcher from the rule sets of all clients, keyed by client
// address. Every set is validated first (see RuleSet.Validate); an invalid
// set fails the whole compilation, so that the caller keeps its previous
// Matcher. dsthost names are resolved through opts.Resolver, each distinct
// name once per family; failures are not errors but are reported by
// Problems.
func Compile(ctx context.Context, sets map[netip.Addr]*RuleSet, opts Options) (*Matcher, error) {
	for _, a := range opts.DNS {
		if !a.IsValid() || a.Zone() != "" {
			return nil, fmt.Errorf("firewall: DNS server %s in Options is not a plain IP address; fix the caller's configuration", addrText(a))
		}
	}
	m := &Matcher{
		v4:   make(map[uint32]*clientRules),
		v6:   make(map[[16]byte]*clientRules),
		opts: Options{Resolver: opts.Resolver, DNS: slices.Clone(opts.DNS)},
	}
	comp := m.compiler(ctx)
	for _, client := range slices.SortedFunc(maps.Keys(sets), netip.Addr.Compare) {
		c, err := comp.client(client, sets[client])
		if err != nil {
			return nil, err
		}
		m.put(client, c)
	}
	return m, nil
}

// With returns a new Matcher with set replacing (or adding) the rule set of
// set.Client, compiled with the receiver's Options; the receiver is unchanged
// and other clients' compiled rules are shared. On error the receiver should
// stay in use.
func (m *Matcher) With(ctx context.Context, set *RuleSet) (*Matcher, error) {
	if set == nil {
		return nil, errors.New("firewall: With called with a nil rule set")
	}
	c, err := m.compiler(ctx).client(set.Client, set)
	if err != nil {
		return nil, err
	}
	n := m.clone()
	n.put(set.Client, c)
	return n, nil
}

// Without returns a new Matcher that no longer knows client, whose packets
// are then dropped.
func (m *Matcher) Without(client netip.Addr) *Matcher {
	n := m.clone()
	if client.Is4() {
		delete(n.v4, v4Key(client))
	} else {
		delete(n.v6, client.As16())
	}
	return n
}

// Len returns the number of clients with a rule set.
func (m *Matcher) Len() int {
	if m == nil {
		return 0
	}
	return len(m.v4) + len(m.v6)
}

// Problems returns the dsthost resolution failures (*ResolveError) of every
// client, ordered by client and rule.
func (m *Matcher) Problems() []error {
	if m == nil {
		return nil
	}
	var all []*clientRules
	for _, c := range m.v4 {
		all = append(all, c)
	}
	for _, c := range m.v6 {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b *clientRules) int { return a.client.Compare(b.client) })
	var out []error
	for _, c := range all {
		out = append(out, c.problems...)
	}
	return out
}

// Match decides what happens to a packet from src to dst. proto is the IP
// protocol number (next header for IPv6); dstPort is read only for TCP and
// UDP and icmpType only for ICMP and ICMPv6. Unknown sources, and
// destinations of another address family than the source, are dropped.
// Match does not allocate and its cost depends only on the rules of src.
func (m *Matcher) Match(src, dst netip.Addr, proto uint8, dstPort uint16, icmpType uint8) Action {
	a, _ := m.MatchRule(src, dst, proto, dstPort, icmpType)
	return a
}

// MatchRule is Match that also returns the number of the deciding rule, or
// RulePolicy or RuleNoClient, for logging.
func (m *Matcher) MatchRule(src, dst netip.Addr, proto uint8, dstPort uint16, icmpType uint8) (Action, int) {
	c := m.lookup(src)
	if c == nil || !dst.IsValid() || dst.Is4() != c.ipv4 {
		return Drop, RuleNoClient
	}
	b := dst.As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := range c.rules {
		r := &c.rules[i]
		if r.proto != 0 && r.proto != proto {
			continue
		}
		if (hi^r.netHi)&r.maskHi != 0 || (lo^r.netLo)&r.maskLo != 0 {
			continue
		}
		if dstPort < r.ports.First || dstPort > r.ports.Last {
			continue
		}
		if r.matchICMPType && icmpType != r.icmpType {
			continue
		}
		return r.action, int(r.number)
	}
	return c.policy, RulePolicy
}

func (m *Matcher) lookup(src netip.Addr) *clientRules {
	if m == nil {
		return nil
	}
	if src.Is4() {
		return m.v4[v4Key(src)]
	}
	if src.Is6() {
		return m.v6[src.As16()]
	}
	return nil
}

func (m *Matcher) put(client netip.Addr, c *clientRules) {
	if client.Is4() {
		m.v4[v4Key(client)] = c
	} else {
		m.v6[client.As16()] = c
	}
}

func (m *Matcher) clone() *Matcher {
	if m == nil {
		return &Matcher{v4: make(map[uint32]*clientRules), v6: make(map[[16]byte]*clientRules)}
	}
	return &Matcher{v4: maps.Clone(m.v4), v6: maps.Clone(m.v6), opts: m.opts}
}

func v4Key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// lookupFunc resolves a name for one family, memoising results for the
// duration of one compilation so that a name shared by many clients is
// looked up once.
type lookupFunc func(host string, ipv6 bool) ([]netip.Addr, error)

func newLookup(ctx context.Context, r Resolver) lookupFunc {
	type key struct {
		host string
		ipv6 bool
	}
	type result struct {
		addrs []netip.Addr
		err   error
	}
	cache := make(map[key]result)
	return func(host string, ipv6 bool) ([]netip.Addr, error) {
		k := key{host, ipv6}
		if res, ok := cache[k]; ok {
			return res.addrs, res.err
		}
		var res result
		if r == nil {
			res.err = errors.New("no resolver configured")
		} else {
			network := "ip4"
			if ipv6 {
				network = "ip6"
			}
			res.addrs, res.err = r.LookupNetIP(ctx, network, host)
			if res.err == nil && len(res.addrs) == 0 {
				res.err = errors.New("no addresses")
			}
		}
		cache[k] = res
		return res.addrs, res.err
	}
}

// compiler holds what one compilation needs besides the rule sets.
type compiler struct {
	lookup lookupFunc
	dns    []netip.Addr
}

// compiler returns the compiler for m's Options (defaults for a nil m).
func (m *Matcher) compiler(ctx context.Context) compiler {
	var opts Options
	if m != nil {
		opts = m.opts
	}
	dns := opts.DNS
	if len(dns) == 0 {
		dns = qubesDNS[:]
	}
	return compiler{lookup: newLookup(ctx, opts.Resolver), dns: dns}
}

// client validates one client's rule set and compiles it.
func (comp compiler) client(client netip.Addr, set *RuleSet) (*clientRules, error) {
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("firewall: cannot compile rules of client %s: %w; keeping the previous rules", addrText(client), err)
	}
	if set.Client != client {
		return nil, fmt.Errorf("firewall: rule set for %s is filed under client %s; keeping the previous rules", addrText(set.Client), addrText(client))
	}
	c := &clientRules{client: client, policy: set.Policy, ipv4: client.Is4()}
	failClosed := false
	for _, nr := range set.Rules {
		dsts, err := comp.destinations(nr.Rule, !c.ipv4)
		if err != nil {
			closed := nr.Action == Drop
			failClosed = failClosed || closed
			c.problems = append(c.problems, &ResolveError{Client: client, Rule: nr.Number, Host: nr.DstHost, Err: err, FailedClosed: closed})
		}
		c.rules = appendCompiled(c.rules, nr, dsts, !c.ipv4)
	}
	if failClosed {
		c.rules, c.policy = nil, Drop
	}
	return c, nil
}

// destinations returns the destination networks of r for a client of the
// given family: the zero Prefix alone for "any destination", an empty list
// when the rule can match no destination.
func (comp compiler) destinations(r Rule, ipv6 bool) ([]netip.Prefix, error) {
	var dsts []netip.Prefix
	switch {
	case r.Dst.IsValid():
		dsts = []netip.Prefix{r.Dst}
	case r.DstHost != "":
		addrs, err := hostAddrs(r.DstHost, ipv6, comp.lookup)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			dsts = append(dsts, netip.PrefixFrom(a, a.BitLen()))
		}
	default:
		dsts = []netip.Prefix{{}}
	}
	if r.SpecialTarget != TargetDNS {
		return dsts, nil
	}
	// specialtarget=dns: the DNS servers that also satisfy the rule's own
	// destination, if it has one.
	var dns []netip.Prefix
	for _, server := range comp.dns {
		if server.Is4() == ipv6 {
			continue
		}
		if slices.ContainsFunc(dsts, func(p netip.Prefix) bool { return !p.IsValid() || p.Contains(server) }) {
			dns = append(dns, netip.PrefixFrom(server, server.BitLen()))
		}
	}
	return dns, nil
}

// hostAddrs resolves a dsthost name to the distinct addresses of the
// client's family. A name that is an address literal needs no resolver.
func hostAddrs(host string, ipv6 bool, lookup lookupFunc) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is6() != ipv6 {
			return nil, fmt.Errorf("address literal of the other family")
		}
		return []netip.Addr{a}, nil
	}
	addrs, err := lookup(host, ipv6)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		switch {
		case !ipv6 && a.Is4In6():
			a = a.Unmap()
		case a.Is4() == ipv6 || a.Is4In6():
			continue // the other family
		}
		a = a.WithZone("")
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no addresses of the client's family")
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out, nil
}

// appendCompiled appends the compiled forms of nr, one per destination and
// protocol, in order.
func appendCompiled(out []compiledRule, nr NumberedRule, dsts []netip.Prefix, ipv6 bool) []compiledRule {
	protos := []uint8{nr.Proto.number(ipv6)}
	ports := allPorts
	if nr.DstPorts != nil {
		ports = *nr.DstPorts
	}
	if nr.SpecialTarget == TargetDNS {
		if nr.DstPorts != nil && *nr.DstPorts != (PortRange{dnsPort, dnsPort}) {
			return out // the Linux agent skips such a rule: it matches nothing
		}
		ports = PortRange{dnsPort, dnsPort}
		if nr.Proto == ProtoAny {
			protos = []uint8{ipProtoTCP, ipProtoUDP}
		}
	}
	for _, dst := range dsts {
		cr := compiledRule{
			ports:  ports,
			action: nr.Action,
			number: int32(nr.Number),
		}
		if dst.IsValid() {
			cr.netHi, cr.netLo, cr.maskHi, cr.maskLo = prefixWords(dst)
		}
		if nr.ICMPType != nil {
			cr.icmpType, cr.matchICMPType = *nr.ICMPType, true
		}
		for _, p := range protos {
			cr.proto = p
			out = append(out, cr)
		}
	}
	return out
}

// prefixWords returns the network and mask of p over the 16-byte address
// form, where an IPv4 prefix of length n covers ::ffff:0:0/96+n.
func prefixWords(p netip.Prefix) (netHi, netLo, maskHi, maskLo uint64) {
	b := p.Addr().As16()
	netHi = binary.BigEndian.Uint64(b[:8])
	netLo = binary.BigEndian.Uint64(b[8:])
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	maskHi = highBits(min(bits, 64))
	maskLo = highBits(max(bits-64, 0))
	return netHi & maskHi, netLo & maskLo, maskHi, maskLo
}

// highBits returns a uint64 with its n (0 to 64) most significant bits set.
func highBits(n int) uint64 {
	if n == 0 {
		return 0
	}
	return ^uint64(0) << (64 - n)
}

// Active publishes the Matcher in force. Readers (the packet path) call Load
// or Match and never lock; the single writer that applies QubesDB updates
// builds a new Matcher and Stores it. Before the first Store everything is
// dropped.
type Active struct {
	p atomic.Pointer[Matcher]
}

// Load returns the current Matcher (nil before the first Store).
func (a *Active) Load() *Matcher { return a.p.Load() }

// Store makes m the Matcher in force.
func (a *Active) Store(m *Matcher) { a.p.Store(m) }

// Match applies the current Matcher; see Matcher.Match.
func (a *Active) Match(src, dst netip.Addr, proto uint8, dstPort uint16, icmpType uint8) Action {
	return a.p.Load().Match(src, dst, proto, dstPort, icmpType)
}
