package network

import (
	"strings"
	"testing"
)

// FuzzParseIP: any ip= value gives a configuration or an error naming it,
// never a panic; a configuration's address is IPv4 with a prefix length.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"dhcp", "off", "10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:off:10.0.2.3:1.1.1.1",
		"10.0.2.15/24:10.0.2.2", "::::::dhcp:9.9.9.9", "1:2:3:4:5:6:7:8:9:10:11", "10.0.2.15:::255.0.255.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseIP(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ip=") {
				t.Errorf("ParseIP(%q): error %q does not name the parameter", s, err)
			}
			return
		}
		if c.Addr.IsValid() && (!c.Addr.Addr().Is4() || c.Addr.Bits() < 0 || c.Addr.Bits() > 32) {
			t.Errorf("ParseIP(%q): address %v", s, c.Addr)
		}
	})
}

// FuzzFromKeys: xenstore values are written by the toolstack, not by this
// domain; any values give a configuration or an error, never a panic.
func FuzzFromKeys(f *testing.F) {
	f.Add("10.137.0.18", "", "10.137.0.1", "10.139.1.1", "10.139.1.2")
	f.Add("10.0.0.2", "255.255.255.0", "", "", "")
	f.Add("x", "255.0.255.0", "::1", "dns", "")
	f.Fuzz(func(t *testing.T, ip, mask, gw, dns1, dns2 string) {
		keys := map[string]string{keyIP: ip, keyNetmask: mask, keyGateway: gw, keyDNS1: dns1, keyDNS2: dns2}
		c, ok, err := FromKeys(func(k string) string { return keys[k] })
		if err != nil || !ok {
			return
		}
		if !c.Addr.Addr().Is4() || len(c.DNS) > 2 {
			t.Errorf("FromKeys(%q): %+v", keys, c)
		}
	})
}
