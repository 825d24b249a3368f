package netstack

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

var (
	addrA  = netip.MustParseAddr("10.0.0.1")
	addrB  = netip.MustParseAddr("10.0.0.2")
	addrA6 = netip.MustParseAddr("fd00::1")
	addrB6 = netip.MustParseAddr("fd00::2")
)

// newPair returns two stacks joined by a nictest cable: A is 10.0.0.1/24 and
// fd00::1/64, B is 10.0.0.2/24 and fd00::2/64.
func newPair(t testing.TB) (a, b *Stack) {
	t.Helper()
	na, nb := nictest.Pipe(1500)
	a, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)}, Hostname: "a", NoSLAAC: true, NoDAD: true}, na)
	if err != nil {
		t.Fatal(err)
	}
	b, err = New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrB, 24), netip.PrefixFrom(addrB6, 64)}, Hostname: "b", NoSLAAC: true, NoDAD: true}, nb)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func fullAddr(a netip.Addr, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: port}
}

func proto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func TestStackTCPUDP(t *testing.T) {
	a, b := newPair(t)
	for _, peer := range []netip.Addr{addrB, addrB6} {
		t.Run(peer.String(), func(t *testing.T) {
			nictest.TCPEcho(t, a.Gvisor(), b.Gvisor(), peer, bytes.Repeat([]byte("echo "), 10000), 10*time.Second)

			local := fullAddr(peer, 9)
			us, err := gonet.DialUDP(b.Gvisor(), &local, nil, proto(peer))
			if err != nil {
				t.Fatal(err)
			}
			defer us.Close()
			uc, err := gonet.DialUDP(a.Gvisor(), nil, &local, proto(peer))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			if _, err := uc.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			us.SetDeadline(time.Now().Add(10 * time.Second))
			n, from, err := us.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "ping" {
				t.Errorf("UDP got %q, want ping", buf[:n])
			}
			want := uc.LocalAddr().(*net.UDPAddr)
			if diff := cmp.Diff(want.String(), from.String()); diff != "" {
				t.Errorf("UDP source (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStackPing sends an ICMP echo request from A's ping endpoint and
// expects B's stack to answer it.
func TestStackPing(t *testing.T) {
	a, _ := newPair(t)
	for _, peer := range []netip.Addr{addrB, addrB6} {
		t.Run(peer.String(), func(t *testing.T) {
			var wq waiter.Queue
			tp, typ := icmp.ProtocolNumber4, uint8(header.ICMPv4Echo)
			if peer.Is6() {
				tp, typ = icmp.ProtocolNumber6, uint8(header.ICMPv6EchoRequest)
			}
			ep, err := a.Gvisor().NewEndpoint(tp, proto(peer), &wq)
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			e, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
			wq.EventRegister(&e)
			defer wq.EventUnregister(&e)
			req := make([]byte, 8+4)
			req[0] = typ
			req[6], req[7] = 0, 1 // sequence 1
			copy(req[8:], "data")
			to := fullAddr(peer, 0)
			var r bytes.Reader
			r.Reset(req)
			if _, err := ep.Write(&r, tcpip.WriteOptions{To: &to}); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			deadline := time.After(10 * time.Second)
			for {
				_, err := ep.Read(&got, tcpip.ReadOptions{})
				if err == nil {
					break
				}
				if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
					t.Fatal(err)
				}
				select {
				case <-ch:
				case <-deadline:
					t.Fatal("no echo reply")
				}
			}
			reply := got.Bytes()
			if len(reply) != len(req) || string(reply[8:]) != "data" || reply[6] != 0 || reply[7] != 1 {
				t.Errorf("echo reply %x does not match request %x", reply, req)
			}
		})
	}
}

func TestStackResolvConfAndHosts(t *testing.T) {
	st, err := New(Config{DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("fd00::53")}, Domain: "lan", Hostname: "uni"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetIPv4(1, netip.MustParsePrefix("127.0.0.2/8"), netip.Addr{}, []netip.Addr{netip.MustParseAddr("10.0.0.54"), netip.MustParseAddr("10.0.0.53")}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("search lan\nnameserver 10.0.0.53\nnameserver fd00::53\nnameserver 10.0.0.54\n", string(st.ResolvConf())); diff != "" {
		t.Errorf("resolv.conf (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tuni\n", string(st.Hosts())); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if err := st.SetIPv4(1, netip.Prefix{}, netip.Addr{}, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("search lan\nnameserver 10.0.0.53\nnameserver fd00::53\n", string(st.ResolvConf())); diff != "" {
		t.Errorf("resolv.conf after withdrawal (-want +got):\n%s", diff)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		nic  bool
	}{
		{"address without NIC", Config{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}}, false},
		{"gateway without NIC", Config{Gateway: netip.MustParseAddr("10.0.0.254")}, false},
		{"mapped address", Config{Addrs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.1/120")}}, true},
		{"long hostname", Config{Hostname: string(bytes.Repeat([]byte("h"), 65))}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.nic {
				n, _ := nictest.Pipe(1500)
				_, err = New(tc.cfg, n)
				if n.Err() == nil {
					t.Error("failed New left its NIC open")
				}
			} else {
				_, err = New(tc.cfg)
			}
			if err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

// stackGoroutines lists the goroutines running code of this package or of
// gVisor, other than the caller.
func stackGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		if strings.Contains(g, "gvisor.dev/gvisor/") || strings.Contains(g, "unikgo/netstack.") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseLeavesNoGoroutines closes stacks that carried traffic, with
// connections and listeners still open, and checks that no goroutine of
// the stack survives: receive loops, TCP processors, timers.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	na, nb := nictest.Pipe(1500)
	a, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrA, 24)}, NoSLAAC: true, NoDAD: true}, na)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrB, 24)}, NoSLAAC: true, NoDAD: true}, nb)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gonet.ListenTCP(b.Gvisor(), fullAddr(addrB, 7), proto(addrB))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, a.Gvisor(), fullAddr(addrB, 7), proto(addrB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("left unread")); err != nil {
		t.Fatal(err)
	}
	if len(stackGoroutines()) == 0 {
		t.Fatal("no stack goroutines seen before Close: the leak check is blind")
	}
	a.Close()
	b.Close()
	a.Close() // twice is harmless
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := stackGoroutines()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if na.Err() == nil || nb.Err() == nil {
		t.Error("Close left a NIC open")
	}
	_ = ln
}
