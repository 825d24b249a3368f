package network

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/unikgo/unikgo/services/dhcp"
)

// Config is the IPv4 configuration of the first interface (eth0), from
// the kernel command line or the hypervisor. IPv6 configures itself
// (link-local and SLAAC addresses, DNS from router advertisements).
type Config struct {
	// Addr is the static address; invalid means none.
	Addr    netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
	// Hostname is the machine's name; empty leaves the default.
	Hostname string
	// DHCP asks for a lease (when no static address is given, unless
	// Off).
	DHCP bool
	// Off leaves IPv4 unconfigured.
	Off bool
}

// ParseIP reads Linux's ip= kernel parameter (Documentation/admin-guide/
// nfs/nfsroot.rst), the form users of Linux guests know:
//
//	ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>
//
// or just ip=dhcp, ip=on, ip=off. Fields may be empty; server-ip and the
// NTP server are not used. client-ip may carry a prefix length
// (10.0.2.15/24) instead of a netmask. A device other than eth0 (or
// empty) is refused: one interface is configured.
func ParseIP(s string) (Config, error) {
	var c Config
	switch s {
	case "", "dhcp", "on", "any", "both", "bootp":
		c.DHCP = true
		return c, nil
	case "off", "none":
		c.Off = true
		return c, nil
	}
	f := strings.Split(s, ":")
	if len(f) > 10 {
		return c, fmt.Errorf("ip=%s: %d fields, at most 10 (client:server:gateway:netmask:hostname:device:autoconf:dns0:dns1:ntp)", s, len(f))
	}
	f = append(f, make([]string, 10-len(f))...)
	addr := func(i int, what string) (netip.Addr, error) {
		if f[i] == "" {
			return netip.Addr{}, nil
		}
		a, err := netip.ParseAddr(f[i])
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("ip=%s: %s %q is not an IPv4 address", s, what, f[i])
		}
		return a, nil
	}
	var client netip.Addr
	bits := -1
	if strings.Contains(f[0], "/") {
		p, err := netip.ParsePrefix(f[0])
		if err != nil || !p.Addr().Is4() {
			return c, fmt.Errorf("ip=%s: client address %q is not an IPv4 address with prefix length", s, f[0])
		}
		client, bits = p.Addr(), p.Bits()
	} else {
		var err error
		if client, err = addr(0, "client address"); err != nil {
			return c, err
		}
	}
	gw, err := addr(2, "gateway")
	if err != nil {
		return c, err
	}
	if f[3] != "" {
		m, err := addr(3, "netmask")
		if err != nil {
			return c, err
		}
		if bits, err = maskBits(m); err != nil {
			return c, fmt.Errorf("ip=%s: %v", s, err)
		}
	}
	c.Hostname = f[4]
	if f[5] != "" && f[5] != "eth0" {
		return c, fmt.Errorf("ip=%s: device %q: only eth0 is configured from the command line", s, f[5])
	}
	switch f[6] {
	case "", "off", "none":
		c.Off = !client.IsValid()
	case "dhcp", "on", "any", "both", "bootp":
		c.DHCP = true
	default:
		return c, fmt.Errorf("ip=%s: autoconf %q: want off, none, dhcp or on", s, f[6])
	}
	for i := 7; i <= 8; i++ {
		d, err := addr(i, "DNS server")
		if err != nil {
			return c, err
		}
		if d.IsValid() {
			c.DNS = append(c.DNS, d)
		}
	}
	if client.IsValid() {
		if bits < 0 {
			bits = dhcp.ClassfulBits(client)
		}
		c.Addr = netip.PrefixFrom(client, bits)
		c.Gateway = gw
		c.DHCP = false
		c.Off = false
	}
	return c, nil
}

// maskBits is the prefix length of a contiguous netmask.
func maskBits(m netip.Addr) (int, error) {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&(1<<31) != 0 {
		v <<= 1
		n++
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %v is not contiguous", m)
	}
	return n, nil
}

// Qubes keys (in the domain's xenstore directory, as Qubes R3 wrote them
// and as a Qubes-style toolstack may).
const (
	keyIP       = "qubes-ip"
	keyNetmask  = "qubes-netmask"
	keyGateway  = "qubes-gateway"
	keyDNS1     = "qubes-primary-dns"
	keyDNS2     = "qubes-secondary-dns"
	keyHostname = "name"
)

// FromKeys makes a static configuration from Qubes-style keys (read is
// the domain's xenstore, key relative to its home; a missing key reads as
// ""). ok is false when no address is given. The values come from the
// toolstack but are checked all the same: a bad one is an error.
func FromKeys(read func(key string) string) (c Config, ok bool, err error) {
	ip := read(keyIP)
	if ip == "" {
		return c, false, nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return c, false, fmt.Errorf("xenstore %s %q is not an IPv4 address", keyIP, ip)
	}
	bits := 32 // Qubes gives VMs /32 with an on-link gateway
	if m := read(keyNetmask); m != "" {
		ma, err := netip.ParseAddr(m)
		if err != nil || !ma.Is4() {
			return c, false, fmt.Errorf("xenstore %s %q is not an IPv4 netmask", keyNetmask, m)
		}
		if bits, err = maskBits(ma); err != nil {
			return c, false, fmt.Errorf("xenstore %s: %v", keyNetmask, err)
		}
	}
	c.Addr = netip.PrefixFrom(a, bits)
	if g := read(keyGateway); g != "" {
		if c.Gateway, err = netip.ParseAddr(g); err != nil || !c.Gateway.Is4() {
			return c, false, fmt.Errorf("xenstore %s %q is not an IPv4 address", keyGateway, g)
		}
	}
	for _, k := range []string{keyDNS1, keyDNS2} {
		if v := read(k); v != "" {
			d, err := netip.ParseAddr(v)
			if err != nil {
				return c, false, fmt.Errorf("xenstore %s %q is not an IP address", k, v)
			}
			c.DNS = append(c.DNS, d)
		}
	}
	c.Hostname = read(keyHostname)
	return c, true, nil
}
