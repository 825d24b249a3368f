package firewall

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseRule feeds arbitrary text to ParseRule. Bad input must give an
// error, never a panic; good input must validate and survive a round trip
// through its canonical text.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"action=accept",
		"action=drop dst4=192.168.0.0/16 proto=tcp dstports=1-1024",
		"action=accept dst6=2001:db8::/32 proto=icmp icmptype=128",
		"action=accept dsthost=www.qubes-os.org proto=udp dstports=53-53",
		"action=accept proto=udp specialtarget=dns",
		"action=accept specialtarget=dns",
		"dstports=22 proto=tcp action=accept",
		"action=accept expire=1700000000",
		"action=accept proto=tcp dstports=90-80",
		"action=accept dst4=10.0.0.0/33",
		"action==accept",
		"action=accept\x00",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := ParseRule(text)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRule(%q) = %v, which does not validate: %v", text, r, err)
		}
		back, err := ParseRule(r.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", r.String(), text, err)
		}
		if diff := cmp.Diff(r, back, cmpAddrs); diff != "" {
			t.Fatalf("round trip of %q changed the rule (-first +second):\n%s", text, diff)
		}
	})
}

// FuzzParseRuleSet feeds arbitrary entries to ParseRuleSet and compiles what
// it accepts. The entries come as one string of NUL-separated key, value,
// key, value... (QubesDB keys and values cannot contain NUL). A failure must
// yield exactly the deny-all set and a *RuleSetError; a success must compile
// and match without panicking.
func FuzzParseRuleSet(f *testing.F) {
	join := func(kv ...string) string { return strings.Join(kv, "\x00") }
	f.Add("10.137.0.5", join("policy", "drop"))
	f.Add("10.137.0.5", join("0000", "action=accept proto=tcp dstports=443-443", "0002", "action=drop", "policy", "accept"))
	f.Add("10.137.0.5", join("/qubes-firewall/10.137.0.5", "", "/qubes-firewall/10.137.0.5/0000", "action=accept dsthost=a.example", "/qubes-firewall/10.137.0.5/policy", "drop"))
	f.Add("10.137.0.5", join("0001", "action=accept specialtarget=dns", "00001", "action=drop", "policy", "drop"))
	f.Add("10.137.0.5", join("0000", "action=accept dst6=::/0", "policy", "drop"))
	f.Add("fd09::5", join("0000", "action=accept dst6=2001:db8::/32 proto=icmp icmptype=128", "policy", "drop"))
	f.Add("fd09::5", join("/qubes-firewall/fd09::5/0000", "action=accept dst4=0.0.0.0/0", "policy", "x"))
	f.Add("", join("policy", "accept"))
	f.Fuzz(func(t *testing.T, clientText, blob string) {
		client, _ := netip.ParseAddr(clientText)
		fields := strings.Split(blob, "\x00")
		entries := make(map[string]string, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			entries[fields[i]] = fields[i+1]
		}
		set, err := ParseRuleSet(client, entries)
		if err != nil {
			var rse *RuleSetError
			if !errors.As(err, &rse) || len(rse.Entries) == 0 {
				t.Fatalf("error %v is not a *RuleSetError with entries", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error spans lines: %q", err)
			}
			if diff := cmp.Diff(&RuleSet{Client: client, Policy: Drop}, set, cmpAddrs); diff != "" {
				t.Fatalf("failed parse did not yield deny-all (-want +got):\n%s", diff)
			}
			return
		}
		resolver := &fakeResolver{answers: map[string][]netip.Addr{"a.example": addrs("192.0.2.1", "2001:db8::1")}}
		m, err := Compile(context.Background(), map[netip.Addr]*RuleSet{client: set}, Options{Resolver: resolver})
		if err != nil {
			t.Fatalf("accepted rule set does not compile: %v", err)
		}
		for _, dst := range addrs("192.0.2.1", "10.139.1.1", "2001:db8::1") {
			for _, proto := range []uint8{ipProtoTCP, ipProtoUDP, ipProtoICMP, ipProtoICMPv6} {
				a, rule := m.MatchRule(client, dst, proto, 53, 8)
				if rule == RulePolicy && a != set.Policy {
					t.Fatalf("policy decision %v differs from policy %v", a, set.Policy)
				}
			}
		}
	})
}
