package socket

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestUDP(t *testing.T) {
	a, b := newPair(t)
	lo := newLoopback(t)
	for _, tc := range []struct {
		name                string
		client, server      *Sockets
		family              int
		bind, dst, wantFrom netip.Addr
	}{
		{"IPv4", a, b, unix.AF_INET, addrB, addrB, addrA},
		{"IPv6", a, b, unix.AF_INET6, addrB6, addrB6, addrA6},
		{"IPv4 to dual-stack", a, b, unix.AF_INET6, netip.IPv6Unspecified(), netip.AddrFrom16(addrB.As16()), netip.AddrFrom16(addrA.As16())},
		{"loopback", lo, lo, unix.AF_INET, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			srv := mustSocket(t, tc.server, tc.family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
			if srv.Protocol() != unix.IPPROTO_UDP {
				t.Errorf("protocol %d, want IPPROTO_UDP", srv.Protocol())
			}
			must(t, "bind", srv.Bind(sockaddr(tc.family, netip.AddrPortFrom(tc.bind, 0))))
			name, e := srv.Getsockname()
			must(t, "getsockname", e)
			port := addrPort(t, name).Port()
			if _, _, _, e := srv.RecvMsg(ctx, [][]byte{make([]byte, 10)}, 0); e != unix.EAGAIN {
				t.Errorf("recv on empty socket: %v, want EAGAIN", e)
			}
			w := watch(srv)

			c := mustSocket(t, tc.client, tc.family, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
			must(t, "SO_BROADCAST", setIntOpt(c, unix.SOL_SOCKET, unix.SO_BROADCAST, 1))
			if _, e := c.Write(ctx, []byte("no address")); e != unix.EDESTADDRREQ {
				t.Errorf("send without address: %v, want EDESTADDRREQ", e)
			}
			to := sockaddr(tc.family, netip.AddrPortFrom(tc.dst, port))
			// One datagram first: gVisor may send a packet that found
			// the neighbour resolved before those that waited for the
			// resolution, and the order matters below.
			if _, e := c.SendMsg(ctx, [][]byte{[]byte("warm-up")}, to, 0); e != 0 {
				t.Fatal(e)
			}
			w.waitEvents(t, srv, unix.EPOLLIN)
			if n, _, _, e := srv.RecvMsg(ctx, [][]byte{make([]byte, 10)}, 0); n != 7 || e != 0 {
				t.Fatalf("warm-up: %d, %v", n, e)
			}
			for _, m := range []string{"first datagram", "second"} {
				n, e := c.SendMsg(ctx, [][]byte{[]byte(m[:3]), []byte(m[3:])}, to, 0)
				if n != len(m) || e != 0 {
					t.Fatalf("sendto: %d, %v", n, e)
				}
			}
			cname, e := c.Getsockname()
			must(t, "client getsockname", e)

			w.waitEvents(t, srv, unix.EPOLLIN)
			if n, e := srv.InQueue(); n != len("first datagram") || e != 0 {
				t.Errorf("FIONREAD %d, %v; want the first datagram's size", n, e)
			}
			buf := make([]byte, 5)
			n, from, flags, e := srv.RecvMsg(ctx, [][]byte{buf}, unix.MSG_PEEK|unix.MSG_TRUNC)
			if diff := cmp.Diff([]any{14, "first", unix.MSG_TRUNC, unix.Errno(0)}, []any{n, string(buf), flags, e}); diff != "" {
				t.Errorf("peek with MSG_TRUNC (-want +got):\n%s", diff)
			}
			n, from, flags, e = srv.RecvMsg(ctx, [][]byte{buf}, 0)
			if diff := cmp.Diff([]any{5, "first", unix.MSG_TRUNC, unix.Errno(0)}, []any{n, string(buf), flags, e}); diff != "" {
				t.Errorf("truncated recv (-want +got):\n%s", diff)
			}
			if got, want := addrPort(t, from), netip.AddrPortFrom(tc.wantFrom, addrPort(t, cname).Port()); got != want {
				t.Errorf("from %v, want %v", got, want)
			}
			big := make([]byte, 100)
			w.waitEvents(t, srv, unix.EPOLLIN)
			n, from, flags, e = srv.RecvMsg(ctx, [][]byte{big}, 0)
			if diff := cmp.Diff([]any{6, "second", 0, unix.Errno(0)}, []any{n, string(big[:n]), flags, e}); diff != "" {
				t.Errorf("recv (-want +got):\n%s", diff)
			}
			if ev := srv.Events(); ev&unix.EPOLLIN != 0 {
				t.Errorf("drained socket events %#x", ev)
			}

			// Reply to the sender's address; the client, connected,
			// sees its peer.
			if _, e := srv.SendMsg(ctx, [][]byte{[]byte("reply")}, from, 0); e != 0 {
				t.Fatalf("reply: %v", e)
			}
			n, rfrom, _, e := c.RecvMsg(ctx, [][]byte{big}, 0)
			if n != 5 || e != 0 || string(big[:5]) != "reply" {
				t.Errorf("client recv %d %q %v", n, big[:n], e)
			}
			if got := addrPort(t, rfrom); got != netip.AddrPortFrom(tc.dst, port) {
				t.Errorf("reply from %v, want %v", got, netip.AddrPortFrom(tc.dst, port))
			}
			if _, e := c.Getpeername(); e != unix.ENOTCONN {
				t.Errorf("unconnected getpeername: %v, want ENOTCONN", e)
			}
			must(t, "connect", c.Connect(ctx, to))
			peer, e := c.Getpeername()
			must(t, "getpeername", e)
			if got := addrPort(t, peer); got != netip.AddrPortFrom(tc.dst, port) {
				t.Errorf("peer %v", got)
			}
			if n, e := c.Write(ctx, []byte("connected")); n != 9 || e != 0 {
				t.Errorf("write on connected socket: %d, %v", n, e)
			}
			w.waitEvents(t, srv, unix.EPOLLIN)
			// A zero-length read takes the datagram, as Linux.
			n, _, flags, e = srv.RecvMsg(ctx, nil, 0)
			if n != 0 || flags != unix.MSG_TRUNC || e != 0 {
				t.Errorf("zero-length recv: %d %#x %v", n, flags, e)
			}
			if ev := srv.Events(); ev&unix.EPOLLIN != 0 {
				t.Errorf("zero-length read left the datagram: events %#x", ev)
			}
			// AF_UNSPEC dissolves the association.
			unspec := make([]byte, 16)
			must(t, "disconnect", c.Connect(ctx, unspec))
			if _, e := c.Getpeername(); e != unix.ENOTCONN {
				t.Errorf("getpeername after disconnect: %v, want ENOTCONN", e)
			}
		})
	}
}

// TestUDPRefused sends on a connected UDP socket to a port nobody
// listens on: the ICMP port unreachable comes back as ECONNREFUSED.
func TestUDPRefused(t *testing.T) {
	a, _ := newPair(t)
	ctx := ctxT(t)
	c := mustSocket(t, a, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	w := watch(c)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, netip.AddrPortFrom(addrB, 9))))
	if _, e := c.Write(ctx, []byte("anyone?")); e != 0 {
		t.Fatal(e)
	}
	w.waitEvents(t, c, unix.EPOLLERR)
	if v := getIntOpt(t, c, unix.SOL_SOCKET, unix.SO_ERROR); unix.Errno(v) != unix.ECONNREFUSED {
		t.Errorf("SO_ERROR %v, want ECONNREFUSED", unix.Errno(v))
	}
	if ev := c.Events(); ev&unix.EPOLLERR != 0 {
		t.Errorf("events %#x after SO_ERROR cleared the error", ev)
	}
}

// TestPing sends an ICMP echo request from a ping socket and reads the
// reply.
func TestPing(t *testing.T) {
	a, _ := newPair(t)
	for _, tc := range []struct {
		name         string
		family       int
		proto        int
		dst          netip.Addr
		req, replyTy byte
	}{
		{"IPv4", unix.AF_INET, unix.IPPROTO_ICMP, addrB, 8, 0},
		{"IPv6", unix.AF_INET6, unix.IPPROTO_ICMPV6, addrB6, 128, 129},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			s := mustSocket(t, a, tc.family, unix.SOCK_DGRAM, tc.proto)
			if s.Protocol() != tc.proto {
				t.Errorf("protocol %d", s.Protocol())
			}
			req := []byte{tc.req, 0, 0, 0, 0, 0, 0, 1, 'p', 'i', 'n', 'g'}
			if _, e := s.SendMsg(ctx, [][]byte{req}, sockaddr(tc.family, netip.AddrPortFrom(tc.dst, 0)), 0); e != 0 {
				t.Fatalf("sendto: %v", e)
			}
			buf := make([]byte, 64)
			n, from, _, e := s.RecvMsg(ctx, [][]byte{buf}, 0)
			must(t, "recv", e)
			if n != len(req) || buf[0] != tc.replyTy || string(buf[8:n]) != "ping" || buf[7] != 1 {
				t.Errorf("reply %x", buf[:n])
			}
			if got := addrPort(t, from).Addr(); got != tc.dst {
				t.Errorf("reply from %v", got)
			}
		})
	}
}
