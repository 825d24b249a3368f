package firewall_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/unikgo/unikgo/services/firewall"
)

// Example shows the life of a rule set: entries read from QubesDB after dom0's
// commit write, parsed (deny-all on error), compiled, published, matched.
func Example() {
	client := netip.MustParseAddr("10.137.0.5")
	entries := map[string]string{ // a QubesDB multiread of /qubes-firewall/10.137.0.5
		"/qubes-firewall/10.137.0.5":        "",
		"/qubes-firewall/10.137.0.5/0000":   "action=accept specialtarget=dns",
		"/qubes-firewall/10.137.0.5/0002":   "action=accept proto=tcp dstports=443-443",
		"/qubes-firewall/10.137.0.5/policy": "drop",
	}
	set, err := firewall.ParseRuleSet(client, entries)
	if err != nil {
		fmt.Println(err) // set is deny-all: still compile and publish it
	}
	m, err := firewall.Compile(context.Background(), map[netip.Addr]*firewall.RuleSet{client: set}, firewall.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var active firewall.Active
	active.Store(m)

	web := netip.MustParseAddr("203.0.113.10")
	dns := netip.MustParseAddr("10.139.1.1")
	fmt.Println("https:", active.Match(client, web, 6, 443, 0))
	fmt.Println("http: ", active.Match(client, web, 6, 80, 0))
	fmt.Println("dns:  ", active.Match(client, dns, 17, 53, 0))
	fmt.Println("other:", active.Match(netip.MustParseAddr("10.137.0.6"), web, 6, 443, 0))

	// A bad rule makes the whole client deny-all and is reported.
	entries["/qubes-firewall/10.137.0.5/0003"] = "action=accept proto=tcp dstports=80-70"
	set, err = firewall.ParseRuleSet(client, entries)
	fmt.Println(err)
	if m, err = m.With(context.Background(), set); err == nil {
		active.Store(m)
	}
	fmt.Println("https:", active.Match(client, web, 6, 443, 0))
	// Output:
	// https: accept
	// http:  drop
	// dns:   accept
	// other: drop
	// firewall rules for client 10.137.0.5: entry "0003" = "action=accept proto=tcp dstports=80-70": bad "dstports=80-70": first port 80 is above last port 70; all traffic from this client is dropped until dom0 writes a valid rule set
	// https: drop
}
