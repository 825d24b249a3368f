package firewall

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	client4 = netip.MustParseAddr("10.137.0.5")
	client6 = netip.MustParseAddr("fd09:24ef:4179::a89:5")
)

func TestParseRuleSet(t *testing.T) {
	tests := []struct {
		name    string
		client  netip.Addr
		entries map[string]string
		want    *RuleSet
	}{
		{
			name:    "policy only",
			client:  client4,
			entries: map[string]string{"policy": "drop"},
			want:    &RuleSet{Client: client4, Policy: Drop},
		},
		{
			name:    "accept policy",
			client:  client4,
			entries: map[string]string{"policy": "accept"},
			want:    &RuleSet{Client: client4, Policy: Accept},
		},
		{
			// Gaps are normal (expired and other-family rules are skipped by
			// dom0) and order is numeric, not lexical: 9999 before 10000.
			name:   "gaps and numeric order",
			client: client4,
			entries: map[string]string{
				"10000":  "action=drop",
				"9999":   "action=accept proto=udp",
				"0003":   "action=accept proto=tcp dstports=443-443",
				"0000":   "action=accept specialtarget=dns",
				"policy": "drop",
			},
			want: &RuleSet{Client: client4, Policy: Drop, Rules: []NumberedRule{
				{0, Rule{Action: Accept, SpecialTarget: TargetDNS}},
				{3, Rule{Action: Accept, Proto: ProtoTCP, DstPorts: ports(443, 443)}},
				{9999, Rule{Action: Accept, Proto: ProtoUDP}},
				{10000, Rule{Action: Drop}},
			}},
		},
		{
			// As a QubesDB multiread of /qubes-firewall/<ip> returns them,
			// including the empty commit marker.
			name:   "full paths",
			client: client4,
			entries: map[string]string{
				"/qubes-firewall/10.137.0.5":        "",
				"/qubes-firewall/10.137.0.5/0000":   "action=accept dst4=192.168.1.0/24",
				"/qubes-firewall/10.137.0.5/0001":   "action=drop proto=icmp icmptype=8",
				"/qubes-firewall/10.137.0.5/policy": "accept",
			},
			want: &RuleSet{Client: client4, Policy: Accept, Rules: []NumberedRule{
				{0, Rule{Action: Accept, Dst: netip.MustParsePrefix("192.168.1.0/24")}},
				{1, Rule{Action: Drop, Proto: ProtoICMP, ICMPType: new(uint8(8))}},
			}},
		},
		{
			name:   "IPv6 client",
			client: client6,
			entries: map[string]string{
				"/qubes-firewall/fd09:24ef:4179::a89:5/0000":   "action=accept dst6=2001:db8::/32 proto=tcp dstports=80-443",
				"/qubes-firewall/fd09:24ef:4179::a89:5/0001":   "action=accept dsthost=example.org",
				"/qubes-firewall/fd09:24ef:4179::a89:5/policy": "drop",
			},
			want: &RuleSet{Client: client6, Policy: Drop, Rules: []NumberedRule{
				{0, Rule{Action: Accept, Dst: netip.MustParsePrefix("2001:db8::/32"), Proto: ProtoTCP, DstPorts: ports(80, 443)}},
				{1, Rule{Action: Accept, DstHost: "example.org"}},
			}},
		},
	}
	for _, tt := range tests {
		got, err := ParseRuleSet(tt.client, tt.entries)
		if err != nil {
			t.Errorf("%s: ParseRuleSet: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpAddrs); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", tt.name, diff)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: parsed set does not validate: %v", tt.name, err)
		}
	}
}

func TestParseRuleSetErrors(t *testing.T) {
	const tail = "; all traffic from this client is dropped until dom0 writes a valid rule set"
	tests := []struct {
		name    string
		client  netip.Addr
		entries map[string]string
		want    []EntryError
		wantMsg string
	}{
		{
			name:    "no entries",
			client:  client4,
			entries: nil,
			want:    []EntryError{{Key: "policy", Reason: "missing (it must be accept or drop)"}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "policy": missing (it must be accept or drop)` + tail,
		},
		{
			name:    "missing policy",
			client:  client4,
			entries: map[string]string{"0000": "action=accept"},
			want:    []EntryError{{Key: "policy", Reason: "missing (it must be accept or drop)"}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "policy": missing (it must be accept or drop)` + tail,
		},
		{
			name:    "bad policy",
			client:  client4,
			entries: map[string]string{"policy": "reject"},
			want:    []EntryError{{Key: "policy", Text: "reject", Reason: `policy must be "accept" or "drop"`}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "policy" = "reject": policy must be "accept" or "drop"` + tail,
		},
		{
			name:   "bad rule",
			client: client4,
			entries: map[string]string{
				"0000": "action=accept proto=tcp dstports=443-443", "0001": "action=accept proto=tcp dstports=90-80", "policy": "drop",
			},
			want: []EntryError{{Key: "0001", Text: "action=accept proto=tcp dstports=90-80",
				Reason: `bad "dstports=90-80": first port 90 is above last port 80`}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "0001" = "action=accept proto=tcp dstports=90-80": ` +
				`bad "dstports=90-80": first port 90 is above last port 80` + tail,
		},
		{
			name:    "not a rule number",
			client:  client4,
			entries: map[string]string{"001": "action=accept", "abcd": "action=accept", "policy": "drop"},
			want: []EntryError{
				{Key: "001", Text: "action=accept", Reason: `not a rule number (4 to 9 digits) nor "policy"`},
				{Key: "abcd", Text: "action=accept", Reason: `not a rule number (4 to 9 digits) nor "policy"`},
			},
			wantMsg: `firewall rules for client 10.137.0.5: entry "001" = "action=accept": not a rule number (4 to 9 digits) nor "policy" (and 1 more bad entries)` + tail,
		},
		{
			name:    "duplicate number",
			client:  client4,
			entries: map[string]string{"0001": "action=accept", "00001": "action=drop", "policy": "drop"},
			want:    []EntryError{{Key: "0001", Text: "action=accept", Reason: `same rule number as entry "00001"`}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "0001" = "action=accept": same rule number as entry "00001"` + tail,
		},
		{
			name:   "keys of another client or nested",
			client: client4,
			entries: map[string]string{
				"/qubes-firewall/10.137.0.6/0000":      "action=accept",
				"/qubes-firewall/10.137.0.5/0000/more": "action=accept",
				"/qubes-other/10.137.0.5/0000":         "action=accept",
				"a/b":                                  "x",
				"policy":                               "drop",
			},
			want: []EntryError{
				{Key: "/qubes-firewall/10.137.0.5/0000/more", Text: "action=accept", Reason: "key is not in /qubes-firewall/10.137.0.5/"},
				{Key: "/qubes-firewall/10.137.0.6/0000", Text: "action=accept", Reason: "key is not in /qubes-firewall/10.137.0.5/"},
				{Key: "/qubes-other/10.137.0.5/0000", Text: "action=accept", Reason: "key is not in /qubes-firewall/10.137.0.5/"},
				{Key: "a/b", Text: "x", Reason: "key is not in /qubes-firewall/10.137.0.5/"},
			},
			wantMsg: `firewall rules for client 10.137.0.5: entry "/qubes-firewall/10.137.0.5/0000/more" = "action=accept": key is not in /qubes-firewall/10.137.0.5/ (and 3 more bad entries)` + tail,
		},
		{
			name:    "dst6 for IPv4 client",
			client:  client4,
			entries: map[string]string{"0000": "action=accept dst6=::/0", "policy": "drop"},
			want:    []EntryError{{Key: "0000", Text: "action=accept dst6=::/0", Reason: "dst6 rule for IPv4 client"}},
			wantMsg: `firewall rules for client 10.137.0.5: entry "0000" = "action=accept dst6=::/0": dst6 rule for IPv4 client` + tail,
		},
		{
			name:    "dst4 for IPv6 client",
			client:  client6,
			entries: map[string]string{"0000": "action=accept dst4=0.0.0.0/0", "policy": "drop"},
			want:    []EntryError{{Key: "0000", Text: "action=accept dst4=0.0.0.0/0", Reason: "dst4 rule for IPv6 client"}},
			wantMsg: `firewall rules for client fd09:24ef:4179::a89:5: entry "0000" = "action=accept dst4=0.0.0.0/0": dst4 rule for IPv6 client` + tail,
		},
		{
			name:    "invalid client",
			client:  netip.Addr{},
			entries: map[string]string{"policy": "accept"},
			want:    []EntryError{{Key: "/qubes-firewall/", Reason: "client address is not a plain IP address"}},
			wantMsg: `firewall rules for client invalid IP: entry "/qubes-firewall/": client address is not a plain IP address` + tail,
		},
		{
			name:   "several problems",
			client: client4,
			entries: map[string]string{
				"0000": "action=accept expire=1700000000", "0001": "action=accept", "0002": "", "policy": "open",
			},
			want: []EntryError{
				{Key: "0000", Text: "action=accept expire=1700000000",
					Reason: `bad "expire=1700000000": unknown option (known: action, dst4, dst6, dsthost, proto, specialtarget, dstports, icmptype)`},
				{Key: "0002", Reason: "no action= option"},
				{Key: "policy", Text: "open", Reason: `policy must be "accept" or "drop"`},
			},
			wantMsg: `firewall rules for client 10.137.0.5: entry "0000" = "action=accept expire=1700000000": ` +
				`bad "expire=1700000000": unknown option (known: action, dst4, dst6, dsthost, proto, specialtarget, dstports, icmptype) (and 2 more bad entries)` + tail,
		},
	}
	for _, tt := range tests {
		got, err := ParseRuleSet(tt.client, tt.entries)
		if diff := cmp.Diff(&RuleSet{Client: tt.client, Policy: Drop}, got, cmpAddrs); diff != "" {
			t.Errorf("%s: result is not deny-all (-want +got):\n%s", tt.name, diff)
		}
		var rse *RuleSetError
		if !errors.As(err, &rse) {
			t.Errorf("%s: error %v is not a *RuleSetError", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, rse.Entries); diff != "" {
			t.Errorf("%s: entries mismatch (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.wantMsg, err.Error()); diff != "" {
			t.Errorf("%s: message mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestRuleSetValidate(t *testing.T) {
	tests := []struct {
		name string
		set  *RuleSet
		want string
	}{
		{"nil", nil, "nil rule set"},
		{"no client", &RuleSet{}, "rule set client invalid IP is not a plain IP address"},
		{"zone", &RuleSet{Client: netip.MustParseAddr("fe80::1%eth0")}, `rule set client "fe80::1%eth0" is not a plain IP address`},
		{"bad policy", &RuleSet{Client: client4, Policy: 5}, "rule set for 10.137.0.5: invalid policy 5"},
		{
			"numbers not increasing",
			&RuleSet{Client: client4, Rules: []NumberedRule{{Number: 2}, {Number: 2}}},
			"rule set for 10.137.0.5: rule 2 after rule 2: numbers must increase",
		},
		{
			"bad rule",
			&RuleSet{Client: client4, Rules: []NumberedRule{{Number: 1, Rule: Rule{DstPorts: ports(1, 2)}}}},
			`rule set for 10.137.0.5: rule 1 "action=drop dstports=1-2": dstports needs proto=tcp or proto=udp`,
		},
		{
			"wrong family",
			&RuleSet{Client: client6, Rules: []NumberedRule{{Number: 1, Rule: Rule{Dst: netip.MustParsePrefix("10.0.0.0/8")}}}},
			`rule set for fd09:24ef:4179::a89:5: rule 1 "action=drop dst4=10.0.0.0/8": dst4 rule for IPv6 client`,
		},
	}
	for _, tt := range tests {
		err := tt.set.Validate()
		if err == nil {
			t.Errorf("%s: Validate() = nil, want %q", tt.name, tt.want)
			continue
		}
		if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestParseKey(t *testing.T) {
	type result struct {
		Client netip.Addr
		Name   string
		OK     bool
	}
	tests := []struct {
		key  string
		want result
	}{
		{"/qubes-firewall/10.137.0.5", result{client4, "", true}},
		{"/qubes-firewall/10.137.0.5/", result{client4, "", true}},
		{"/qubes-firewall/10.137.0.5/0003", result{client4, "0003", true}},
		{"/qubes-firewall/10.137.0.5/policy", result{client4, "policy", true}},
		{"/qubes-firewall/fd09:24ef:4179::a89:5/0000", result{client6, "0000", true}},
		{"/qubes-firewall/10.137.0.5/0003/x", result{}},
		{"/qubes-firewall/fe80::1%eth0/0000", result{}},
		{"/qubes-firewall/10.137.0/0000", result{}},
		{"/qubes-firewall/", result{}},
		{"/qubes-firewall", result{}},
		{"/qubes-ip", result{}},
		{"qubes-firewall/10.137.0.5/0000", result{}},
	}
	for _, tt := range tests {
		c, name, ok := ParseKey(tt.key)
		if diff := cmp.Diff(tt.want, result{c, name, ok}, cmpAddrs); diff != "" {
			t.Errorf("ParseKey(%q) mismatch (-want +got):\n%s", tt.key, diff)
		}
	}
}
