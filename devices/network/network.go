// Package network gives the program a network: imported for its side
// effect,
//
//	import _ "github.com/unikgo/unikgo/devices/network"
//
// it brings up the machine's network interfaces when the program starts,
// before main, runs gVisor's netstack over them and answers the program's
// socket system calls with it, so Go's own net package (net/http, DNS
// resolution, net.Interfaces) works unchanged. On Xen the interfaces are
// the vifs the toolstack gave the domain (netfront); under QEMU the
// virtio-net devices. They are eth0, eth1... after lo.
//
// eth0's IPv4 configuration comes from, in order: Linux's ip= parameter
// on the kernel command line (see ParseIP; with unikbuild, --env ip=...),
// the domain's Qubes-style xenstore keys (qubes-ip, qubes-netmask,
// qubes-gateway, qubes-primary-dns, qubes-secondary-dns), else DHCP. IPv6
// configures itself. /etc/resolv.conf, /etc/hosts and
// /proc/sys/kernel/hostname are served from the configuration.
//
// A failure is reported on stderr in one line and the program goes on
// without that interface (or without a network). Outside a unikgo image
// (go test on the host) the package does nothing.
package network

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/unikgo/unikgo/boot"
	"github.com/unikgo/unikgo/devices/xenglue"
	"github.com/unikgo/unikgo/kernel/serve/textfile"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/netfront"
	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/socket"
	"github.com/unikgo/unikgo/netstack/sockfile"
	"github.com/unikgo/unikgo/virtio/net"
	"github.com/unikgo/unikgo/xenpv/domain"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// probeTimeout bounds bringing the interfaces up at start.
const probeTimeout = 30 * time.Second

// Eth0 is eth0's interface index.
const Eth0 = 2

var (
	mu    sync.Mutex
	stack *netstack.Stack
)

// Stack is the program's network stack, or nil when it has none.
func Stack() *netstack.Stack {
	mu.Lock()
	defer mu.Unlock()
	return stack
}

func init() {
	if !boot.Booted() {
		return
	}
	if err := start(); err != nil {
		fmt.Fprintf(os.Stderr, "network: %v; the program runs without a network\n", err)
	}
}

func warn(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "network: "+format+"\n", args...)
}

func start() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var nics []netdev.NIC
	var cfg Config
	haveCfg := false
	if v, ok := os.LookupEnv("ip"); ok {
		c, err := ParseIP(v)
		if err != nil {
			return err
		}
		cfg, haveCfg = c, true
	}
	if domain.OnXen() {
		var xc Config
		var xok bool
		nics, xc, xok = xenNICs(ctx)
		if !haveCfg && xok {
			cfg, haveCfg = xc, true
		}
		if cfg.Hostname == "" {
			cfg.Hostname = xc.Hostname
		}
	} else {
		vs, err := net.Probe(ctx)
		if err != nil {
			warn("virtio-net: %v", err)
		}
		for _, n := range vs {
			nics = append(nics, n)
		}
	}
	if !haveCfg {
		cfg.DHCP = true
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "unikgo"
	}
	sc := netstack.Config{DNS: cfg.DNS, Hostname: cfg.Hostname}
	if cfg.Addr.IsValid() && len(nics) > 0 {
		sc.Addrs = []netip.Prefix{cfg.Addr}
		sc.Gateway = cfg.Gateway
	}
	st, err := netstack.New(sc, nics...)
	if err != nil {
		return err
	}
	mu.Lock()
	stack = st
	mu.Unlock()

	bg := context.Background()
	if err := sockfile.Serve(bg, socket.New(st), func(err error) {
		warn("socket server stopped: %v; socket calls fail from now on", err)
	}); err != nil {
		return err
	}
	err = textfile.Serve(bg, map[string]textfile.Content{
		"/etc/resolv.conf":          st.ResolvConf,
		"/etc/hosts":                st.Hosts,
		"/proc/sys/kernel/hostname": func() []byte { return []byte(st.Hostname() + "\n") },
		"/proc/net/snmp":            st.SNMP,
		"/proc/net/netstat":         st.Netstat,
	}, func(err error) { warn("serving /etc/resolv.conf, /etc/hosts and /proc/net stopped: %v", err) })
	if err != nil {
		warn("%v; no /etc/resolv.conf or /etc/hosts", err)
	}
	if cfg.DHCP && len(nics) > 0 {
		startDHCP(st, cfg)
	}
	return nil
}

// xenNICs brings up the domain's vifs and reads the Qubes-style
// configuration keys.
func xenNICs(ctx context.Context) ([]netdev.NIC, Config, bool) {
	d, err := xenglue.Open()
	if err != nil {
		warn("%v; Xen network unavailable", err)
		return nil, Config{}, false
	}
	read := func(key string) string {
		v, err := d.Store.Read(ctx, key)
		if err != nil {
			return ""
		}
		return v
	}
	cfg, ok, err := FromKeys(read)
	if err != nil {
		warn("%v; ignored", err)
		ok = false
	}
	ids, err := xenbus.Devices(ctx, d.Store, "vif")
	if err != nil {
		warn("listing device/vif: %v; Xen network unavailable", err)
		return nil, cfg, ok
	}
	var nics []netdev.NIC
	for _, id := range ids {
		n, err := netfront.New(ctx, netfront.Config{Store: d.Store, Grants: d.Grants, Memory: d.Memory, Events: ports{d}, Device: id, Offload: true})
		if err != nil {
			warn("device/vif/%s: %v; left out", id, err)
			continue
		}
		nics = append(nics, n)
	}
	return nics, cfg, ok
}

// ports adapts the domain's event channels to netfront.
type ports struct{ d *xenglue.Domain }

func (p ports) AllocUnbound(remote gnttab.DomID) (netfront.EventChannel, error) {
	return p.d.AllocUnbound(remote)
}
