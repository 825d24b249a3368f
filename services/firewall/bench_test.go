package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// benchRules returns n rule texts for one client, of which only the last
// matches the benchmark packet (TCP to 198.51.100.19 port 443): the worst
// case, every rule is examined.
func benchRules(n int) []string {
	misses := []string{
		"action=drop dst4=192.0.2.%d/32",                         // other host
		"action=accept proto=udp dstports=%d-%d",                 // other protocol
		"action=accept proto=tcp dstports=1-%d",                  // other ports
		"action=accept proto=icmp icmptype=%d",                   // other protocol
		"action=accept dst4=203.0.%d.0/24 proto=tcp",             // other network
		"action=drop dst4=198.51.%d.0/24 proto=tcp dstports=443", // other network, same port
	}
	rules := make([]string, 0, n)
	for i := range n - 1 {
		f := misses[i%len(misses)]
		switch i % len(misses) {
		case 1:
			rules = append(rules, fmt.Sprintf(f, i, i+100))
		case 5:
			rules = append(rules, fmt.Sprintf(f, 101+i))
		default:
			rules = append(rules, fmt.Sprintf(f, i+1))
		}
	}
	return append(rules, "action=accept dst4=198.51.100.0/24 proto=tcp dstports=443-443")
}

// benchMatcher compiles clients IPv4 clients 10.137.x.y (and one IPv6 client
// fd09::1) with rules rules each.
func benchMatcher(tb testing.TB, clients, rules int) (*Matcher, []netip.Addr) {
	tb.Helper()
	texts := benchRules(rules)
	sets := make(map[netip.Addr]*RuleSet, clients+1)
	list := make([]netip.Addr, 0, clients)
	for i := range clients {
		c := netip.AddrFrom4([4]byte{10, 137, byte(i >> 8), byte(i)})
		sets[c] = mustRuleSet(tb, c, "drop", texts...)
		list = append(list, c)
	}
	c6 := netip.MustParseAddr("fd09::1")
	sets[c6] = mustRuleSet(tb, c6, "drop", "action=accept proto=tcp dstports=443-443")
	m, err := Compile(context.Background(), sets, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return m, list
}

// BenchmarkMatch measures one decision for a packet that only the last of a
// client's 20 rules matches, with 1, 50 and 500 clients.
func BenchmarkMatch(b *testing.B) {
	const rulesPerClient = 20
	dst := netip.MustParseAddr("198.51.100.19")
	for _, clients := range []int{1, 50, 500} {
		b.Run(fmt.Sprintf("clients=%d/rules=%d", clients, rulesPerClient), func(b *testing.B) {
			m, list := benchMatcher(b, clients, rulesPerClient)
			src := list[len(list)/2]
			if a, rule := m.MatchRule(src, dst, 6, 443, 0); a != Accept || rule != rulesPerClient-1 {
				b.Fatalf("benchmark packet decided by %v rule %d, want accept by the last rule", a, rule)
			}
			b.ReportAllocs()
			for b.Loop() {
				m.Match(src, dst, 6, 443, 0)
			}
		})
	}
}
