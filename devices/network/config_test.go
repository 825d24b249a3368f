package network

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrs(s ...string) []netip.Addr {
	var as []netip.Addr
	for _, a := range s {
		as = append(as, netip.MustParseAddr(a))
	}
	return as
}

func TestParseIP(t *testing.T) {
	cmpAddrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	cmpPrefix := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	tests := []struct {
		in   string
		want Config
	}{
		{"dhcp", Config{DHCP: true}},
		{"on", Config{DHCP: true}},
		{"off", Config{Off: true}},
		{"none", Config{Off: true}},
		{"10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off:10.0.2.3:1.1.1.1",
			Config{Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"), DNS: addrs("10.0.2.3", "1.1.1.1"), Hostname: "box"}},
		{"10.0.2.15/24:10.0.2.2", Config{Addr: netip.MustParsePrefix("10.0.2.15/24")}},
		{"10.0.2.15/24::10.0.2.2", Config{Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2")}},
		// No netmask: classful, as Linux's ipconfig.
		{"10.1.2.3", Config{Addr: netip.MustParsePrefix("10.1.2.3/8")}},
		{"172.16.1.1", Config{Addr: netip.MustParsePrefix("172.16.1.1/16")}},
		{"192.168.7.9", Config{Addr: netip.MustParsePrefix("192.168.7.9/24")}},
		// No client address: autoconf decides.
		{":::::eth0:dhcp", Config{DHCP: true}},
		{"::::myname::off", Config{Off: true, Hostname: "myname"}},
		{"::::::dhcp:9.9.9.9", Config{DHCP: true, DNS: addrs("9.9.9.9")}},
	}
	for _, tt := range tests {
		got, err := ParseIP(tt.in)
		if err != nil {
			t.Errorf("ParseIP(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpAddrs, cmpPrefix); diff != "" {
			t.Errorf("ParseIP(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseIPErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.2.300", "client address"},
		{"fe80::1", "client address"}, // colons split fields: IPv6 is not for ip=
		{"10.0.2.15/33", "prefix length"},
		{"10.0.2.15::nope", "gateway"},
		{"10.0.2.15:::255.0.255.0", "not contiguous"},
		{"10.0.2.15:::::eth1", "only eth0"},
		{"10.0.2.15::::::sometimes", "autoconf"},
		{"10.0.2.15:::::::8.8.8.x", "DNS server"},
		{"1:2:3:4:5:6:7:8:9:10:11", "at most 10"},
	}
	for _, tt := range tests {
		_, err := ParseIP(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "ip="+tt.in) {
			t.Errorf("ParseIP(%q) = %v, want an error naming the value and mentioning %q", tt.in, err, tt.want)
		}
	}
}

func TestFromKeys(t *testing.T) {
	keys := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	c, ok, err := FromKeys(keys(map[string]string{
		"qubes-ip": "10.137.0.18", "qubes-gateway": "10.137.0.1",
		"qubes-primary-dns": "10.139.1.1", "qubes-secondary-dns": "10.139.1.2", "name": "sys-firewall",
	}))
	if err != nil || !ok {
		t.Fatalf("FromKeys: %v, %v", ok, err)
	}
	want := Config{Addr: netip.MustParsePrefix("10.137.0.18/32"), Gateway: netip.MustParseAddr("10.137.0.1"), DNS: addrs("10.139.1.1", "10.139.1.2"), Hostname: "sys-firewall"}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("FromKeys (-want +got):\n%s", diff)
	}
	if c, ok, err := FromKeys(keys(map[string]string{"qubes-ip": "10.0.0.2", "qubes-netmask": "255.255.255.0"})); err != nil || !ok || c.Addr != netip.MustParsePrefix("10.0.0.2/24") {
		t.Errorf("FromKeys with a netmask: %v %v %v", c.Addr, ok, err)
	}
	if _, ok, err := FromKeys(keys(nil)); ok || err != nil {
		t.Errorf("FromKeys without keys: %v, %v; want nothing", ok, err)
	}
	for _, bad := range []map[string]string{
		{"qubes-ip": "x"},
		{"qubes-ip": "fe80::1"},
		{"qubes-ip": "10.0.0.2", "qubes-netmask": "255.0.255.0"},
		{"qubes-ip": "10.0.0.2", "qubes-gateway": "10.0.0.300"},
		{"qubes-ip": "10.0.0.2", "qubes-primary-dns": "dns"},
	} {
		if _, ok, err := FromKeys(keys(bad)); ok || err == nil {
			t.Errorf("FromKeys(%v): %v, %v; want an error", bad, ok, err)
		}
	}
}
