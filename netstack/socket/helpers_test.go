package socket

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/nictest"
	"golang.org/x/sys/unix"
)

var (
	addrA  = netip.MustParseAddr("10.0.0.1")
	addrB  = netip.MustParseAddr("10.0.0.2")
	addrA6 = netip.MustParseAddr("fd00::1")
	addrB6 = netip.MustParseAddr("fd00::2")
)

// newPair returns the socket layers of two stacks joined by a nictest
// cable: A is 10.0.0.1/24 and fd00::1/64, B 10.0.0.2/24 and fd00::2/64.
func newPair(t testing.TB) (a, b *Sockets) {
	t.Helper()
	na, nb := nictest.Pipe(1500)
	sa, err := netstack.New(netstack.Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)}, NoSLAAC: true, NoDAD: true}, na)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := netstack.New(netstack.Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrB, 24), netip.PrefixFrom(addrB6, 64)}, NoSLAAC: true, NoDAD: true}, nb)
	if err != nil {
		sa.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { sa.Close(); sb.Close() })
	return New(sa), New(sb)
}

// newLoopback returns the socket layer of a stack without NICs.
func newLoopback(t testing.TB) *Sockets {
	t.Helper()
	st, err := netstack.New(netstack.Config{NoSLAAC: true, NoDAD: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return New(st)
}

// sockaddr renders ap as a sockaddr_in (for an IPv4 address and family
// AF_INET) or sockaddr_in6.
func sockaddr(family int, ap netip.AddrPort) []byte {
	if family == unix.AF_INET {
		b := make([]byte, 16)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().Unmap().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	if z := ap.Addr().Zone(); z != "" {
		id, err := strconv.Atoi(z)
		if err != nil {
			panic(err)
		}
		binary.NativeEndian.PutUint32(b[24:], uint32(id))
	}
	return b
}

// addrPort decodes a sockaddr_in or sockaddr_in6.
func addrPort(t testing.TB, sa []byte) netip.AddrPort {
	t.Helper()
	if len(sa) < 2 {
		t.Fatalf("sockaddr of %d bytes", len(sa))
	}
	port := binary.BigEndian.Uint16(sa[2:])
	switch f := binary.NativeEndian.Uint16(sa); {
	case f == unix.AF_INET && len(sa) == 16:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port)
	case f == unix.AF_INET6 && len(sa) == 28:
		a := netip.AddrFrom16([16]byte(sa[8:24]))
		if scope := binary.NativeEndian.Uint32(sa[24:]); scope != 0 {
			a = a.WithZone(strconv.Itoa(int(scope)))
		}
		return netip.AddrPortFrom(a, port)
	default:
		t.Fatalf("bad sockaddr %x", sa)
	}
	return netip.AddrPort{}
}

func familyFor(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustSocket(t testing.TB, ss *Sockets, domain, typ, proto int) *Socket {
	t.Helper()
	s, e := ss.Socket(domain, typ, proto)
	if e != 0 {
		t.Fatalf("socket(%d, %#x, %d): %v", domain, typ, proto, e)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func must(t testing.TB, what string, e unix.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatalf("%s: %v", what, e)
	}
}

// listenOn returns a listening TCP socket bound to ap (port 0: any) and
// its address.
func listenOn(t testing.TB, ss *Sockets, family int, ap netip.AddrPort) (*Socket, netip.AddrPort) {
	t.Helper()
	ln := mustSocket(t, ss, family, unix.SOCK_STREAM, 0)
	must(t, "bind", ln.Bind(sockaddr(family, ap)))
	must(t, "listen", ln.Listen(16))
	name, e := ln.Getsockname()
	must(t, "getsockname", e)
	return ln, addrPort(t, name)
}

// getInt reads an int socket option.
func getIntOpt(t testing.TB, s *Socket, level, name int) int {
	t.Helper()
	b := make([]byte, 4)
	n, e := s.Getsockopt(level, name, b)
	must(t, "getsockopt", e)
	if n != 4 {
		t.Fatalf("getsockopt(%d, %d) gave %d bytes", level, name, n)
	}
	return int(int32(binary.NativeEndian.Uint32(b)))
}

func setIntOpt(s *Socket, level, name, v int) unix.Errno {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, uint32(int32(v)))
	return s.Setsockopt(level, name, b)
}

// notifier counts notify calls and lets a test wait for a condition on
// Events that a notify call should reveal.
type notifier struct {
	mu    sync.Mutex
	calls int
	ch    chan struct{}
}

func watch(s *Socket) *notifier {
	n := &notifier{ch: make(chan struct{}, 1)}
	s.SetNotify(func() {
		n.mu.Lock()
		n.calls++
		n.mu.Unlock()
		select {
		case n.ch <- struct{}{}:
		default:
		}
	})
	return n
}

func (n *notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

// waitEvents waits until s.Events() has all of want, woken by notify
// calls only (no polling): it fails if a change came without a call.
func (n *notifier) waitEvents(t testing.TB, s *Socket, want uint32) uint32 {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if ev := s.Events(); ev&want == want {
			return ev
		}
		select {
		case <-n.ch:
		case <-deadline:
			t.Fatalf("events %#x, want %#x; no notify call brought them", s.Events(), want)
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
