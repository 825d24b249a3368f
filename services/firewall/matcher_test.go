package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The standard library resolver can be passed as Options.Resolver as is.
var _ Resolver = (*net.Resolver)(nil)

// errHost is the name fakeResolver fails with errResolverDown.
const errHost = "down.example"

var errResolverDown = errors.New("resolver down")

// fakeResolver answers from a fixed table and counts lookups per name and
// network.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	calls   map[string]int
}

func (f *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = make(map[string]int)
	}
	f.calls[network+" "+host]++
	if host == errHost {
		return nil, errResolverDown
	}
	addrs, ok := f.answers[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	return addrs, nil
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// mustRuleSet parses a rule set given as rule texts numbered 0000, 0001, ...
func mustRuleSet(t testing.TB, client netip.Addr, policy string, rules ...string) *RuleSet {
	t.Helper()
	entries := map[string]string{"policy": policy}
	for i, r := range rules {
		entries[fmt.Sprintf("%04d", i)] = r
	}
	set, err := ParseRuleSet(client, entries)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

type packet struct {
	src, dst string
	proto    uint8
	port     uint16
	icmpType uint8
}

type verdict struct {
	Action Action
	Rule   int
}

func TestMatch(t *testing.T) {
	resolver := &fakeResolver{answers: map[string][]netip.Addr{
		"updates.example": addrs("198.51.100.7", "198.51.100.8", "2001:db8::7"),
		"v6only.example":  addrs("2001:db8::9"),
		"mapped.example":  addrs("::ffff:203.0.113.9"),
		"dns.example":     addrs("10.139.1.2"),
		"empty.example":   {},
	}}
	a := netip.MustParseAddr("10.137.0.10")  // general IPv4 client
	b := netip.MustParseAddr("10.137.0.11")  // accept policy, drop rules
	d := netip.MustParseAddr("10.137.0.12")  // specialtarget=dns variants
	e := netip.MustParseAddr("10.137.0.13")  // specialtarget=dns narrowed by name
	c6 := netip.MustParseAddr("fd09::a89:5") // IPv6 client
	sets := map[netip.Addr]*RuleSet{
		a: mustRuleSet(t, a, "drop",
			"action=drop dst4=192.168.1.66/32",                      // 0000
			"action=accept dst4=192.168.1.0/24",                     // 0001
			"action=accept proto=tcp dstports=443-443",              // 0002
			"action=accept proto=udp dstports=1000-2000",            // 0003
			"action=accept proto=icmp icmptype=8",                   // 0004
			"action=accept dsthost=updates.example proto=tcp",       // 0005
			"action=accept dsthost=unknown.example",                 // 0006
			"action=accept dsthost=v6only.example",                  // 0007
			"action=accept dsthost=mapped.example",                  // 0008
			"action=accept dsthost=203.0.113.200",                   // 0009
			"action=accept dst4=0.0.0.0/0 proto=tcp dstports=22-22", // 0010
		),
		b: mustRuleSet(t, b, "accept",
			"action=drop dst4=172.16.0.0/12",
			"action=drop proto=icmp",
		),
		d: mustRuleSet(t, d, "drop",
			"action=accept proto=udp specialtarget=dns dstports=50-60", // 0000: never matches
			"action=accept proto=udp specialtarget=dns",                // 0001
			"action=drop dst4=10.139.1.2 specialtarget=dns",            // 0002
			"action=accept specialtarget=dns",                          // 0003
			"action=accept dst4=8.8.8.8 specialtarget=dns",             // 0004: never matches
		),
		e: mustRuleSet(t, e, "drop",
			"action=accept dsthost=dns.example specialtarget=dns",   // 0000: 10.139.1.2 only
			"action=accept proto=tcp specialtarget=dns dstports=53", // 0001
		),
		c6: mustRuleSet(t, c6, "drop",
			"action=accept dst6=2001:db8:1::/48 proto=tcp dstports=80-80", // 0000
			"action=accept proto=icmp icmptype=128",                       // 0001
			"action=accept dsthost=updates.example",                       // 0002
			"action=accept specialtarget=dns",                             // 0003: no IPv6 DNS
			"action=accept dsthost=192.0.2.9",                             // 0004: IPv4 literal
			"action=accept dsthost=empty.example",                         // 0005: no answer
			"action=accept dsthost=down.example",                          // 0006: resolver error
		),
	}
	m, err := Compile(context.Background(), sets, Options{Resolver: resolver})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    packet
		want verdict
	}{
		{"first match wins over later accept", packet{"10.137.0.10", "192.168.1.66", 6, 443, 0}, verdict{Drop, 0}},
		{"prefix", packet{"10.137.0.10", "192.168.1.1", 17, 9, 0}, verdict{Accept, 1}},
		{"prefix edge", packet{"10.137.0.10", "192.168.1.255", 1, 0, 0}, verdict{Accept, 1}},
		{"outside prefix", packet{"10.137.0.10", "192.168.2.1", 17, 9, 0}, verdict{Drop, RulePolicy}},
		{"tcp port", packet{"10.137.0.10", "203.0.113.1", 6, 443, 0}, verdict{Accept, 2}},
		{"tcp other port", packet{"10.137.0.10", "203.0.113.1", 6, 444, 0}, verdict{Drop, RulePolicy}},
		{"udp on tcp-only port", packet{"10.137.0.10", "203.0.113.1", 17, 443, 0}, verdict{Drop, RulePolicy}},
		{"udp range low", packet{"10.137.0.10", "203.0.113.1", 17, 1000, 0}, verdict{Accept, 3}},
		{"udp range high", packet{"10.137.0.10", "203.0.113.1", 17, 2000, 0}, verdict{Accept, 3}},
		{"udp above range", packet{"10.137.0.10", "203.0.113.1", 17, 2001, 0}, verdict{Drop, RulePolicy}},
		{"icmp echo", packet{"10.137.0.10", "203.0.113.1", 1, 0, 8}, verdict{Accept, 4}},
		{"icmp other type", packet{"10.137.0.10", "203.0.113.1", 1, 0, 0}, verdict{Drop, RulePolicy}},
		{"dsthost first address", packet{"10.137.0.10", "198.51.100.7", 6, 80, 0}, verdict{Accept, 5}},
		{"dsthost second address", packet{"10.137.0.10", "198.51.100.8", 6, 80, 0}, verdict{Accept, 5}},
		{"dsthost wrong proto", packet{"10.137.0.10", "198.51.100.8", 17, 80, 0}, verdict{Drop, RulePolicy}},
		{"dsthost mapped answer", packet{"10.137.0.10", "203.0.113.9", 17, 80, 0}, verdict{Accept, 8}},
		{"dsthost literal", packet{"10.137.0.10", "203.0.113.200", 17, 80, 0}, verdict{Accept, 9}},
		{"any destination ssh", packet{"10.137.0.10", "203.0.113.50", 6, 22, 0}, verdict{Accept, 10}},
		{"unknown client", packet{"10.137.0.99", "192.168.1.1", 6, 443, 0}, verdict{Drop, RuleNoClient}},
		{"mapped source is not the client", packet{"::ffff:10.137.0.10", "::ffff:192.168.1.1", 6, 443, 0}, verdict{Drop, RuleNoClient}},
		{"destination of other family", packet{"10.137.0.10", "2001:db8::7", 6, 443, 0}, verdict{Drop, RuleNoClient}},
		{"invalid destination", packet{"10.137.0.10", "", 6, 443, 0}, verdict{Drop, RuleNoClient}},
		{"invalid source", packet{"", "192.168.1.1", 6, 443, 0}, verdict{Drop, RuleNoClient}},
		{"drop rule", packet{"10.137.0.11", "172.31.255.255", 6, 80, 0}, verdict{Drop, 0}},
		{"drop any icmp", packet{"10.137.0.11", "1.1.1.1", 1, 0, 3}, verdict{Drop, 1}},
		{"accept policy", packet{"10.137.0.11", "1.1.1.1", 6, 80, 0}, verdict{Accept, RulePolicy}},
		{"dns udp", packet{"10.137.0.12", "10.139.1.1", 17, 53, 0}, verdict{Accept, 1}},
		{"dns udp second server before narrowed drop", packet{"10.137.0.12", "10.139.1.2", 17, 53, 0}, verdict{Accept, 1}},
		{"dns tcp second server", packet{"10.137.0.12", "10.139.1.2", 6, 53, 0}, verdict{Drop, 2}},
		{"dns tcp first server", packet{"10.137.0.12", "10.139.1.1", 6, 53, 0}, verdict{Accept, 3}},
		{"dns wrong port", packet{"10.137.0.12", "10.139.1.1", 6, 54, 0}, verdict{Drop, RulePolicy}},
		{"dns other server", packet{"10.137.0.12", "8.8.8.8", 17, 53, 0}, verdict{Drop, RulePolicy}},
		{"dns not icmp", packet{"10.137.0.12", "10.139.1.1", 1, 0, 0}, verdict{Drop, RulePolicy}},
		{"dns narrowed by name", packet{"10.137.0.13", "10.139.1.2", 17, 53, 0}, verdict{Accept, 0}},
		{"dns narrowed by name other server", packet{"10.137.0.13", "10.139.1.1", 17, 53, 0}, verdict{Drop, RulePolicy}},
		{"dns single port form", packet{"10.137.0.13", "10.139.1.1", 6, 53, 0}, verdict{Accept, 1}},
		{"v6 web", packet{"fd09::a89:5", "2001:db8:1:ffff::1", 6, 80, 0}, verdict{Accept, 0}},
		{"v6 outside prefix", packet{"fd09::a89:5", "2001:db8:2::1", 6, 80, 0}, verdict{Drop, RulePolicy}},
		{"v6 icmpv6 echo", packet{"fd09::a89:5", "2001:db8:2::1", 58, 0, 128}, verdict{Accept, 1}},
		{"v6 icmpv4 number is not icmpv6", packet{"fd09::a89:5", "2001:db8:2::1", 1, 0, 128}, verdict{Drop, RulePolicy}},
		{"v6 dsthost", packet{"fd09::a89:5", "2001:db8::7", 17, 5, 0}, verdict{Accept, 2}},
		{"v6 dsthost other", packet{"fd09::a89:5", "2001:db8::8", 17, 5, 0}, verdict{Drop, RulePolicy}},
		{"v6 client to v4", packet{"fd09::a89:5", "198.51.100.7", 17, 5, 0}, verdict{Drop, RuleNoClient}},
	}
	for _, tt := range tests {
		var dst netip.Addr
		if tt.p.dst != "" {
			dst = netip.MustParseAddr(tt.p.dst)
		}
		var src netip.Addr
		if tt.p.src != "" {
			src = netip.MustParseAddr(tt.p.src)
		}
		action, rule := m.MatchRule(src, dst, tt.p.proto, tt.p.port, tt.p.icmpType)
		if diff := cmp.Diff(tt.want, verdict{action, rule}); diff != "" {
			t.Errorf("%s: MatchRule%+v mismatch (-want +got):\n%s", tt.name, tt.p, diff)
		}
		if got := m.Match(src, dst, tt.p.proto, tt.p.port, tt.p.icmpType); got != tt.want.Action {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want.Action)
		}
	}

	wantProblems := []string{
		`firewall rules for client 10.137.0.10: rule 0006 dsthost "unknown.example" did not resolve (lookup unknown.example: no such host); the rule matches nothing until the rules are applied again`,
		`firewall rules for client 10.137.0.10: rule 0007 dsthost "v6only.example" did not resolve (no addresses of the client's family); the rule matches nothing until the rules are applied again`,
		`firewall rules for client fd09::a89:5: rule 0004 dsthost "192.0.2.9" did not resolve (address literal of the other family); the rule matches nothing until the rules are applied again`,
		`firewall rules for client fd09::a89:5: rule 0005 dsthost "empty.example" did not resolve (no addresses); the rule matches nothing until the rules are applied again`,
		`firewall rules for client fd09::a89:5: rule 0006 dsthost "down.example" did not resolve (resolver down); the rule matches nothing until the rules are applied again`,
	}
	var gotProblems []string
	for _, p := range m.Problems() {
		gotProblems = append(gotProblems, p.Error())
	}
	if diff := cmp.Diff(wantProblems, gotProblems); diff != "" {
		t.Errorf("Problems() mismatch (-want +got):\n%s", diff)
	}
	if problems := m.Problems(); len(problems) == 0 || !errors.Is(problems[len(problems)-1], errResolverDown) {
		t.Errorf("the last problem does not wrap the resolver's error: %v", problems)
	}
	// Resolved once per name and family, and only names that need it.
	wantCalls := map[string]int{
		"ip4 updates.example": 1, "ip4 unknown.example": 1, "ip4 v6only.example": 1, "ip4 mapped.example": 1,
		"ip4 dns.example": 1, "ip6 updates.example": 1, "ip6 empty.example": 1, "ip6 down.example": 1,
	}
	if diff := cmp.Diff(wantCalls, resolver.calls); diff != "" {
		t.Errorf("resolver calls mismatch (-want +got):\n%s", diff)
	}
}

func TestCompileSharesLookups(t *testing.T) {
	resolver := &fakeResolver{answers: map[string][]netip.Addr{"a.example": addrs("192.0.2.1")}}
	sets := make(map[netip.Addr]*RuleSet)
	for i := range 10 {
		c := netip.AddrFrom4([4]byte{10, 137, 0, byte(i + 1)})
		sets[c] = mustRuleSet(t, c, "drop", "action=accept dsthost=a.example")
	}
	m, err := Compile(context.Background(), sets, Options{Resolver: resolver})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"ip4 a.example": 1}, resolver.calls); diff != "" {
		t.Errorf("resolver calls mismatch (-want +got):\n%s", diff)
	}
	if got := m.Match(netip.MustParseAddr("10.137.0.7"), netip.MustParseAddr("192.0.2.1"), 6, 1, 0); got != Accept {
		t.Errorf("Match = %v, want accept", got)
	}
}

func TestCompileNilResolver(t *testing.T) {
	set := mustRuleSet(t, client4, "accept", "action=drop dsthost=blocked.example", "action=drop dsthost=192.0.2.9")
	m, err := Compile(context.Background(), map[netip.Addr]*RuleSet{client4: set}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range m.Problems() {
		var re *ResolveError
		if !errors.As(p, &re) {
			t.Fatalf("problem %v is not a *ResolveError", p)
		}
		got = append(got, fmt.Sprintf("%d %s %v", re.Rule, re.Host, re.Err))
	}
	if diff := cmp.Diff([]string{"0 blocked.example no resolver configured"}, got); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	// An unresolved drop rule fails closed: the whole client is dropped,
	// even traffic the other rules or the policy would accept.
	for _, dst := range []string{"192.0.2.9", "198.51.100.1"} {
		if a, rule := m.MatchRule(client4, netip.MustParseAddr(dst), 6, 1, 0); a != Drop || rule != RulePolicy {
			t.Errorf("MatchRule(%s) = %v, %d; want drop by policy (deny-all)", dst, a, rule)
		}
	}
	var re *ResolveError
	if !errors.As(m.Problems()[0], &re) || !re.FailedClosed || !strings.Contains(re.Error(), "all traffic from this client is dropped") {
		t.Errorf("problem %v does not report failing closed", m.Problems()[0])
	}

	// An unresolved accept rule only matches nothing; the rest applies.
	set = mustRuleSet(t, client4, "drop", "action=accept dsthost=allowed.example", "action=accept dsthost=192.0.2.9")
	m, err = Compile(context.Background(), map[netip.Addr]*RuleSet{client4: set}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a, rule := m.MatchRule(client4, netip.MustParseAddr("192.0.2.9"), 6, 1, 0); a != Accept || rule != 1 {
		t.Errorf("MatchRule = %v, %d; want accept, 1", a, rule)
	}
	if !errors.As(m.Problems()[0], &re) || re.FailedClosed {
		t.Errorf("accept-rule problem %v reported as failing closed", m.Problems()[0])
	}
}

func TestCompileErrors(t *testing.T) {
	good := mustRuleSet(t, client4, "drop", "action=accept")
	tests := []struct {
		name string
		sets map[netip.Addr]*RuleSet
		opts Options
		want string
	}{
		{
			"nil set",
			map[netip.Addr]*RuleSet{client4: nil},
			Options{},
			"firewall: cannot compile rules of client 10.137.0.5: nil rule set; keeping the previous rules",
		},
		{
			"filed under another client",
			map[netip.Addr]*RuleSet{netip.MustParseAddr("10.137.0.6"): good},
			Options{},
			"firewall: rule set for 10.137.0.5 is filed under client 10.137.0.6; keeping the previous rules",
		},
		{
			"invalid rule built in code",
			map[netip.Addr]*RuleSet{client4: {Client: client4, Rules: []NumberedRule{{Number: 4, Rule: Rule{Proto: ProtoUDP, ICMPType: new(uint8(1))}}}}},
			Options{},
			`firewall: cannot compile rules of client 10.137.0.5: rule set for 10.137.0.5: rule 4 "action=drop proto=udp icmptype=1": icmptype needs proto=icmp; keeping the previous rules`,
		},
		{
			"zoned DNS server",
			map[netip.Addr]*RuleSet{client4: good},
			Options{DNS: addrs("10.139.1.1", "fe80::1%eth0")},
			`firewall: DNS server "fe80::1%eth0" in Options is not a plain IP address; fix the caller's configuration`,
		},
		{
			"invalid DNS server",
			map[netip.Addr]*RuleSet{client4: good},
			Options{DNS: []netip.Addr{{}}},
			"firewall: DNS server invalid IP in Options is not a plain IP address; fix the caller's configuration",
		},
	}
	for _, tt := range tests {
		m, err := Compile(context.Background(), tt.sets, tt.opts)
		if err == nil {
			t.Errorf("%s: Compile succeeded, want %q", tt.name, tt.want)
			continue
		}
		if m != nil {
			t.Errorf("%s: Compile returned a matcher with its error", tt.name)
		}
		if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestWithWithout(t *testing.T) {
	ctx := context.Background()
	dst := netip.MustParseAddr("192.0.2.1")
	m1, err := Compile(ctx, map[netip.Addr]*RuleSet{client4: mustRuleSet(t, client4, "accept")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := m1.With(ctx, mustRuleSet(t, client4, "drop"))
	if err != nil {
		t.Fatal(err)
	}
	m3, err := m2.With(ctx, mustRuleSet(t, client6, "accept"))
	if err != nil {
		t.Fatal(err)
	}
	m4 := m3.Without(client4)
	m5 := m4.Without(client6)
	dst6 := netip.MustParseAddr("2001:db8::1")
	got := []string{
		fmt.Sprint(m1.Len(), m1.Match(client4, dst, 6, 1, 0), m1.Match(client6, dst6, 6, 1, 0)),
		fmt.Sprint(m2.Len(), m2.Match(client4, dst, 6, 1, 0), m2.Match(client6, dst6, 6, 1, 0)),
		fmt.Sprint(m3.Len(), m3.Match(client4, dst, 6, 1, 0), m3.Match(client6, dst6, 6, 1, 0)),
		fmt.Sprint(m4.Len(), m4.Match(client4, dst, 6, 1, 0), m4.Match(client6, dst6, 6, 1, 0)),
		fmt.Sprint(m5.Len(), m5.Match(client4, dst, 6, 1, 0), m5.Match(client6, dst6, 6, 1, 0)),
	}
	want := []string{"1 accept drop", "1 drop drop", "2 drop accept", "1 drop accept", "0 drop drop"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("matchers after updates (-want +got):\n%s", diff)
	}
	if _, err := m1.With(ctx, nil); err == nil {
		t.Error("With(nil) succeeded")
	}
	if _, err := m1.With(ctx, &RuleSet{Client: client4, Policy: 9}); err == nil {
		t.Error("With(invalid set) succeeded")
	}
	if got := m1.Match(client4, dst, 6, 1, 0); got != Accept {
		t.Errorf("failed With changed the receiver: Match = %v", got)
	}
}

func TestNilMatcherAndActive(t *testing.T) {
	var m *Matcher
	dst := netip.MustParseAddr("192.0.2.1")
	if got := m.Match(client4, dst, 6, 1, 0); got != Drop {
		t.Errorf("nil Matcher: Match = %v, want drop", got)
	}
	if m.Len() != 0 || m.Problems() != nil {
		t.Errorf("nil Matcher: Len = %d, Problems = %v", m.Len(), m.Problems())
	}
	n, err := m.With(context.Background(), mustRuleSet(t, client4, "accept"))
	if err != nil {
		t.Fatal(err)
	}

	var active Active
	if got := active.Match(client4, dst, 6, 1, 0); got != Drop {
		t.Errorf("empty Active: Match = %v, want drop", got)
	}
	active.Store(n)
	if active.Load() != n {
		t.Error("Load does not return the stored matcher")
	}
	if got := active.Match(client4, dst, 6, 1, 0); got != Accept {
		t.Errorf("Active after Store: Match = %v, want accept", got)
	}
}

// TestActiveConcurrentSwap checks that readers see either the old or the new
// matcher while a writer swaps them (meaningful under -race as well).
func TestActiveConcurrentSwap(t *testing.T) {
	ctx := context.Background()
	accept, _ := Compile(ctx, map[netip.Addr]*RuleSet{client4: mustRuleSet(t, client4, "accept")}, Options{})
	drop, _ := accept.With(ctx, mustRuleSet(t, client4, "drop"))
	var active Active
	active.Store(accept)
	dst := netip.MustParseAddr("192.0.2.1")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a := active.Match(client4, dst, 6, 1, 0); a != Accept && a != Drop {
					t.Errorf("Match = %v", a)
					return
				}
			}
		})
	}
	for i := range 1000 {
		if i%2 == 0 {
			active.Store(drop)
		} else {
			active.Store(accept)
		}
	}
	close(stop)
	wg.Wait()
}

func TestMatchDoesNotAllocate(t *testing.T) {
	m, _ := benchMatcher(t, 50, 20)
	src := netip.AddrFrom4([4]byte{10, 137, 0, 25})
	src6 := netip.MustParseAddr("fd09::1")
	dst := netip.MustParseAddr("198.51.100.19")
	allocs := testing.AllocsPerRun(1000, func() {
		m.Match(src, dst, 6, 443, 0)
		m.Match(src6, dst, 6, 443, 0)
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per call", allocs)
	}
}

// TestMatcherIgnoresLaterEdits checks that a Matcher does not share state
// with the rule sets it was compiled from: editing them afterwards changes no
// decision.
func TestMatcherIgnoresLaterEdits(t *testing.T) {
	set := mustRuleSet(t, client4, "drop", "action=accept proto=tcp dstports=443-443")
	m, err := Compile(context.Background(), map[netip.Addr]*RuleSet{client4: set}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	set.Policy = Accept
	set.Rules[0].Action = Drop
	set.Rules[0].DstPorts.Last = 1000
	dst := netip.MustParseAddr("192.0.2.1")
	got := []Action{m.Match(client4, dst, 6, 443, 0), m.Match(client4, dst, 6, 444, 0)}
	if diff := cmp.Diff([]Action{Accept, Drop}, got); diff != "" {
		t.Errorf("decisions after editing the source set (-want +got):\n%s", diff)
	}
}

// TestOptionsDNS checks that specialtarget=dns follows Options.DNS (here with
// the IPv6 virtual DNS addresses of Qubes 4.3) and that With keeps the
// Options of the Matcher it extends, resolver included.
func TestOptionsDNS(t *testing.T) {
	ctx := context.Background()
	resolver := &fakeResolver{answers: map[string][]netip.Addr{"a.example": addrs("192.0.2.1", "2001:db8::1")}}
	opts := Options{Resolver: resolver, DNS: addrs("10.139.1.1", "fd09:24ef:4179::a8b:101", "fd09:24ef:4179::a8b:102")}
	m, err := Compile(ctx, map[netip.Addr]*RuleSet{client4: mustRuleSet(t, client4, "drop", "action=accept specialtarget=dns")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.DNS[0] = netip.MustParseAddr("192.0.2.53") // the Matcher keeps its own copy
	m, err = m.With(ctx, mustRuleSet(t, client6, "drop", "action=accept specialtarget=dns", "action=accept dsthost=a.example"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src, dst string
		want     verdict
	}{
		{"10.137.0.5", "10.139.1.1", verdict{Accept, 0}},
		{"10.137.0.5", "10.139.1.2", verdict{Drop, RulePolicy}}, // not in Options.DNS
		{"10.137.0.5", "192.0.2.53", verdict{Drop, RulePolicy}},
		{"fd09:24ef:4179::a89:5", "fd09:24ef:4179::a8b:101", verdict{Accept, 0}},
		{"fd09:24ef:4179::a89:5", "fd09:24ef:4179::a8b:102", verdict{Accept, 0}},
		{"fd09:24ef:4179::a89:5", "2001:db8::1", verdict{Accept, 1}}, // resolved by the kept resolver
	}
	for _, tt := range tests {
		a, rule := m.MatchRule(netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst), ipProtoUDP, 53, 0)
		if diff := cmp.Diff(tt.want, verdict{a, rule}); diff != "" {
			t.Errorf("%s -> %s mismatch (-want +got):\n%s", tt.src, tt.dst, diff)
		}
	}
	if diff := cmp.Diff(addrs("10.139.1.1", "10.139.1.2"), DefaultDNS(), cmpAddrs); diff != "" {
		t.Errorf("DefaultDNS mismatch (-want +got):\n%s", diff)
	}
}
