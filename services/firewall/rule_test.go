package firewall

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpAddrs lets go-cmp compare the netip types, whose fields are unexported.
var cmpAddrs = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func ports(first, last uint16) *PortRange { return &PortRange{First: first, Last: last} }

func TestParseRule(t *testing.T) {
	tests := []struct {
		text string
		want Rule
	}{
		{"action=accept", Rule{Action: Accept}},
		{"action=drop", Rule{Action: Drop}},
		{"action=accept dst4=192.168.0.0/16", Rule{Action: Accept, Dst: netip.MustParsePrefix("192.168.0.0/16")}},
		{"action=accept dst4=10.1.2.3/8", Rule{Action: Accept, Dst: netip.MustParsePrefix("10.0.0.0/8")}},
		{"action=accept dst4=10.1.2.3", Rule{Action: Accept, Dst: netip.MustParsePrefix("10.1.2.3/32")}},
		{"action=accept dst4=0.0.0.0/0", Rule{Action: Accept, Dst: netip.MustParsePrefix("0.0.0.0/0")}},
		{"action=drop dst6=2001:db8::/32", Rule{Action: Drop, Dst: netip.MustParsePrefix("2001:db8::/32")}},
		{"action=drop dst6=2001:db8::1", Rule{Action: Drop, Dst: netip.MustParsePrefix("2001:db8::1/128")}},
		{"action=accept dsthost=www.qubes-os.org", Rule{Action: Accept, DstHost: "www.qubes-os.org"}},
		{"action=accept dsthost=host_1.example.", Rule{Action: Accept, DstHost: "host_1.example."}},
		{"action=accept proto=tcp", Rule{Action: Accept, Proto: ProtoTCP}},
		{"action=accept proto=udp", Rule{Action: Accept, Proto: ProtoUDP}},
		{"action=accept proto=icmp", Rule{Action: Accept, Proto: ProtoICMP}},
		{"action=accept specialtarget=dns", Rule{Action: Accept, SpecialTarget: TargetDNS}},
		{"action=accept proto=udp specialtarget=dns", Rule{Action: Accept, Proto: ProtoUDP, SpecialTarget: TargetDNS}},
		{"action=accept proto=tcp dstports=443-443", Rule{Action: Accept, Proto: ProtoTCP, DstPorts: ports(443, 443)}},
		{"action=accept proto=udp dstports=0-65535", Rule{Action: Accept, Proto: ProtoUDP, DstPorts: ports(0, 65535)}},
		{"action=accept proto=tcp dstports=8080", Rule{Action: Accept, Proto: ProtoTCP, DstPorts: ports(8080, 8080)}},
		{"action=accept proto=icmp icmptype=8", Rule{Action: Accept, Proto: ProtoICMP, ICMPType: new(uint8(8))}},
		{"action=accept proto=icmp icmptype=255", Rule{Action: Accept, Proto: ProtoICMP, ICMPType: new(uint8(255))}},
		{
			"action=drop dst4=10.137.0.0/16 proto=tcp dstports=1-1024",
			Rule{Action: Drop, Dst: netip.MustParsePrefix("10.137.0.0/16"), Proto: ProtoTCP, DstPorts: ports(1, 1024)},
		},
		{
			// Any order, as the Linux agent reads a dictionary; extra blanks tolerated.
			"dstports=22-22  proto=tcp\taction=accept ",
			Rule{Action: Accept, Proto: ProtoTCP, DstPorts: ports(22, 22)},
		},
	}
	for _, tt := range tests {
		got, err := ParseRule(tt.text)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tt.text, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpAddrs); diff != "" {
			t.Errorf("ParseRule(%q) mismatch (-want +got):\n%s", tt.text, diff)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	const known = "unknown option (known: action, dst4, dst6, dsthost, proto, specialtarget, dstports, icmptype)"
	tests := []struct {
		text, want string
	}{
		{"", `rule "": no action= option`},
		{"proto=tcp", `rule "proto=tcp": no action= option`},
		{"action", `rule "action": option "action" is not key=value`},
		{"action=allow", `rule "action=allow": bad "action=allow": action must be "accept" or "drop"`},
		{"action=accept action=drop", `rule "action=accept action=drop": option "action" given twice`},
		{"action=accept proto=tcp proto=udp", `rule "action=accept proto=tcp proto=udp": option "proto" given twice`},
		{"action=accept expire=1700000000", `rule "action=accept expire=1700000000": bad "expire=1700000000": ` + known},
		{"action=accept comment=hello", `rule "action=accept comment=hello": bad "comment=hello": ` + known},
		{"action=accept dpi=NO", `rule "action=accept dpi=NO": bad "dpi=NO": ` + known},
		{"action=accept =x", `rule "action=accept =x": bad "=x": ` + known},
		{"action=accept dst4=10.0.0/8", `rule "action=accept dst4=10.0.0/8": bad "dst4=10.0.0/8": not an address/prefix-length`},
		{"action=accept dst4=10.0.0.0/33", `rule "action=accept dst4=10.0.0.0/33": bad "dst4=10.0.0.0/33": not an address/prefix-length`},
		{"action=accept dst4=10.0.0.0/-1", `rule "action=accept dst4=10.0.0.0/-1": bad "dst4=10.0.0.0/-1": not an address/prefix-length`},
		{"action=accept dst4=010.0.0.1", `rule "action=accept dst4=010.0.0.1": bad "dst4=010.0.0.1": not an address`},
		{"action=accept dst4=", `rule "action=accept dst4=": bad "dst4=": not an address`},
		{"action=accept dst4=2001:db8::/32", `rule "action=accept dst4=2001:db8::/32": bad "dst4=2001:db8::/32": dst4 needs an IPv4 address`},
		{"action=accept dst6=10.0.0.0/8", `rule "action=accept dst6=10.0.0.0/8": bad "dst6=10.0.0.0/8": dst6 needs an IPv6 address`},
		{"action=accept dst6=2001:db8::/129", `rule "action=accept dst6=2001:db8::/129": bad "dst6=2001:db8::/129": not an address/prefix-length`},
		{"action=accept dst6=fe80::1%eth0", `rule "action=accept dst6=fe80::1%eth0": bad "dst6=fe80::1%eth0": not an address`},
		{
			"action=accept dst4=10.0.0.0/8 dst6=::/0",
			`rule "action=accept dst4=10.0.0.0/8 dst6=::/0": bad "dst6=::/0": only one of dst4, dst6 and dsthost may be given`,
		},
		{
			"action=accept dsthost=a.org dst4=10.0.0.0/8",
			`rule "action=accept dsthost=a.org dst4=10.0.0.0/8": bad "dst4=10.0.0.0/8": only one of dst4, dst6 and dsthost may be given`,
		},
		{
			"action=accept dst4=10.0.0.0/8 dsthost=a.org",
			`rule "action=accept dst4=10.0.0.0/8 dsthost=a.org": bad "dsthost=a.org": only one of dst4, dst6 and dsthost may be given`,
		},
		{"action=accept dsthost=", `rule "action=accept dsthost=": bad "dsthost=": host name must be 1 to 253 characters`},
		{"action=accept dsthost=Example.org", `rule "action=accept dsthost=Example.org": bad "dsthost=Example.org": host name may contain only a-z, 0-9, '-', '_' and '.'`},
		{"action=accept dsthost=a..org", `rule "action=accept dsthost=a..org": bad "dsthost=a..org": host name labels must be 1 to 63 characters`},
		{"action=accept dsthost=.", `rule "action=accept dsthost=.": bad "dsthost=.": host name labels must be 1 to 63 characters`},
		{"action=accept proto=sctp", `rule "action=accept proto=sctp": bad "proto=sctp": proto must be "tcp", "udp" or "icmp"`},
		{"action=accept proto=TCP", `rule "action=accept proto=TCP": bad "proto=TCP": proto must be "tcp", "udp" or "icmp"`},
		{"action=accept specialtarget=ntp", `rule "action=accept specialtarget=ntp": bad "specialtarget=ntp": the only specialtarget is "dns"`},
		{"action=accept proto=tcp dstports=90-80", `rule "action=accept proto=tcp dstports=90-80": bad "dstports=90-80": first port 90 is above last port 80`},
		{"action=accept proto=tcp dstports=1-65536", `rule "action=accept proto=tcp dstports=1-65536": bad "dstports=1-65536": dstports must be N-M with ports from 0 to 65535`},
		{"action=accept proto=tcp dstports=80-", `rule "action=accept proto=tcp dstports=80-": bad "dstports=80-": dstports must be N-M with ports from 0 to 65535`},
		{"action=accept proto=tcp dstports=-80", `rule "action=accept proto=tcp dstports=-80": bad "dstports=-80": dstports must be N-M with ports from 0 to 65535`},
		{"action=accept proto=tcp dstports=1-2-3", `rule "action=accept proto=tcp dstports=1-2-3": bad "dstports=1-2-3": dstports must be N-M with ports from 0 to 65535`},
		{"action=accept proto=tcp dstports=+80", `rule "action=accept proto=tcp dstports=+80": bad "dstports=+80": dstports must be N-M with ports from 0 to 65535`},
		{"action=accept dstports=80-80", `rule "action=accept dstports=80-80": dstports needs proto=tcp or proto=udp`},
		{"action=accept proto=icmp dstports=80-80", `rule "action=accept proto=icmp dstports=80-80": dstports needs proto=tcp or proto=udp`},
		{"action=accept proto=icmp icmptype=256", `rule "action=accept proto=icmp icmptype=256": bad "icmptype=256": icmptype must be a number from 0 to 255`},
		{"action=accept proto=icmp icmptype=-1", `rule "action=accept proto=icmp icmptype=-1": bad "icmptype=-1": icmptype must be a number from 0 to 255`},
		{"action=accept icmptype=8", `rule "action=accept icmptype=8": icmptype needs proto=icmp`},
		{"action=accept proto=udp icmptype=8", `rule "action=accept proto=udp icmptype=8": icmptype needs proto=icmp`},
		{"action=accept proto=icmp specialtarget=dns", `rule "action=accept proto=icmp specialtarget=dns": specialtarget=dns needs proto=tcp, proto=udp or no proto`},
		{"action=accept\nproto=tcp", `rule "action=accept\nproto=tcp": bad "action=accept\nproto=tcp": action must be "accept" or "drop"`},
		{
			// Long offending text is cut to maxQuoted bytes in messages.
			"action=accept dsthost=" + strings.Repeat("a", 84) + ".org",
			`rule "action=accept dsthost=` + strings.Repeat("a", 80-22) + `"...: ` +
				`bad "dsthost=` + strings.Repeat("a", 80-8) + `"...: host name labels must be 1 to 63 characters`,
		},
	}
	for _, tt := range tests {
		got, err := ParseRule(tt.text)
		if err == nil {
			t.Errorf("ParseRule(%q) = %v, want error %q", tt.text, got, tt.want)
			continue
		}
		if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
			t.Errorf("ParseRule(%q) error mismatch (-want +got):\n%s", tt.text, diff)
		}
	}
}

func TestRuleStringRoundTrip(t *testing.T) {
	tests := []struct {
		rule Rule
		want string
	}{
		{Rule{Action: Accept}, "action=accept"},
		{Rule{Action: Drop, Dst: netip.MustParsePrefix("10.0.0.0/8")}, "action=drop dst4=10.0.0.0/8"},
		{Rule{Action: Drop, Dst: netip.MustParsePrefix("2001:db8::/32"), Proto: ProtoICMP, ICMPType: new(uint8(128))},
			"action=drop dst6=2001:db8::/32 proto=icmp icmptype=128"},
		{Rule{Action: Accept, DstHost: "qubes-os.org", Proto: ProtoTCP, DstPorts: ports(443, 443)},
			"action=accept dsthost=qubes-os.org proto=tcp dstports=443-443"},
		{Rule{Action: Accept, Proto: ProtoUDP, SpecialTarget: TargetDNS, DstPorts: ports(53, 53)},
			"action=accept proto=udp specialtarget=dns dstports=53-53"},
	}
	for _, tt := range tests {
		if got := tt.rule.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		back, err := ParseRule(tt.want)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tt.want, err)
			continue
		}
		if diff := cmp.Diff(tt.rule, back, cmpAddrs); diff != "" {
			t.Errorf("round trip of %q mismatch (-want +got):\n%s", tt.want, diff)
		}
	}
}

func TestRuleValidate(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"bad action", Rule{Action: 7}, "invalid action 7"},
		{"bad proto", Rule{Proto: 9}, "invalid proto 9"},
		{"bad target", Rule{SpecialTarget: 3}, "invalid specialtarget 3"},
		{"dst and host", Rule{Dst: netip.MustParsePrefix("10.0.0.0/8"), DstHost: "a.org"}, "only one of dst4, dst6 and dsthost may be given"},
		{"unmasked", Rule{Dst: netip.MustParsePrefix("10.1.0.0/8")}, "destination 10.1.0.0/8 is not a plain masked prefix"},
		{"bad host", Rule{DstHost: "A.org"}, `bad dsthost "A.org": host name may contain only a-z, 0-9, '-', '_' and '.'`},
		{"reversed ports", Rule{Proto: ProtoTCP, DstPorts: ports(9, 8)}, "dstports first port 9 is above last port 8"},
		{"ports without proto", Rule{DstPorts: ports(8, 9)}, "dstports needs proto=tcp or proto=udp"},
		{"icmptype with tcp", Rule{Proto: ProtoTCP, ICMPType: new(uint8(0))}, "icmptype needs proto=icmp"},
		{"dns with icmp", Rule{Proto: ProtoICMP, SpecialTarget: TargetDNS}, "specialtarget=dns needs proto=tcp, proto=udp or no proto"},
	}
	for _, tt := range tests {
		err := tt.rule.Validate()
		if err == nil {
			t.Errorf("%s: Validate() = nil, want %q", tt.name, tt.want)
			continue
		}
		if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
			t.Errorf("%s: error mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestEnumStrings(t *testing.T) {
	got := []string{
		Accept.String(), Drop.String(), Action(9).String(),
		ProtoAny.String(), ProtoTCP.String(), ProtoUDP.String(), ProtoICMP.String(), Proto(9).String(),
		TargetNone.String(), TargetDNS.String(), SpecialTarget(9).String(),
	}
	want := []string{
		"accept", "drop", "action(9)",
		"", "tcp", "udp", "icmp", "proto(9)",
		"", "dns", "specialtarget(9)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("String() mismatch (-want +got):\n%s", diff)
	}
}
