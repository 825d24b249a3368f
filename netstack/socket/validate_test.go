package socket

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestSocketErrors(t *testing.T) {
	lo := newLoopback(t)
	for _, tc := range []struct {
		name               string
		domain, typ, proto int
		want               unix.Errno
	}{
		{"tcp", unix.AF_INET, unix.SOCK_STREAM, 0, 0},
		{"tcp6 explicit", unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, unix.IPPROTO_TCP, 0},
		{"udp", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP, 0},
		{"ping", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, 0},
		{"ping6", unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, 0},
		{"netlink raw", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE, 0},
		{"netlink dgram", unix.AF_NETLINK, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE, 0},
		{"tcp with udp", unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_UDP, unix.EPROTONOSUPPORT},
		{"udp with tcp", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_TCP, unix.EPROTONOSUPPORT},
		{"icmpv6 on AF_INET", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, unix.EPROTONOSUPPORT},
		{"seqpacket", unix.AF_INET, unix.SOCK_SEQPACKET, 0, unix.ESOCKTNOSUPPORT},
		{"raw", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, unix.EPERM},
		{"bad type", unix.AF_INET, 0, 0, unix.EINVAL},
		{"bad type flags", unix.AF_INET, unix.SOCK_STREAM | 0x100, 0, unix.EINVAL},
		{"unix", unix.AF_UNIX, unix.SOCK_STREAM, 0, unix.EAFNOSUPPORT},
		{"packet", unix.AF_PACKET, unix.SOCK_RAW, 0, unix.EAFNOSUPPORT},
		{"netlink stream", unix.AF_NETLINK, unix.SOCK_STREAM, unix.NETLINK_ROUTE, unix.ESOCKTNOSUPPORT},
		{"netlink generic", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_GENERIC, unix.EPROTONOSUPPORT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, e := lo.Socket(tc.domain, tc.typ, tc.proto)
			if e != tc.want {
				t.Fatalf("socket: %v, want %v", e, tc.want)
			}
			if e != 0 {
				return
			}
			defer s.Close(context.Background())
			if got := getIntOpt(t, s, unix.SOL_SOCKET, unix.SO_TYPE); got != tc.typ&0xf {
				t.Errorf("SO_TYPE %d", got)
			}
			if got := getIntOpt(t, s, unix.SOL_SOCKET, unix.SO_DOMAIN); got != tc.domain {
				t.Errorf("SO_DOMAIN %d", got)
			}
			if s.Nonblock() != (tc.typ&unix.SOCK_NONBLOCK != 0) || s.CloseOnExec() != (tc.typ&unix.SOCK_CLOEXEC != 0) {
				t.Errorf("flags: nonblock %v cloexec %v", s.Nonblock(), s.CloseOnExec())
			}
		})
	}
}

func TestSockaddrValidation(t *testing.T) {
	lo := newLoopback(t)
	ctx := ctxT(t)
	in := func(ap string) []byte { return sockaddr(unix.AF_INET, netip.MustParseAddrPort(ap)) }
	in6 := func(ap string) []byte { return sockaddr(unix.AF_INET6, netip.MustParseAddrPort(ap)) }
	withFamily := func(sa []byte, f uint16) []byte {
		sa = bytes.Clone(sa)
		ne.PutUint16(sa, f)
		return sa
	}
	for _, tc := range []struct {
		name        string
		family, typ int
		op          string // bind, connect, sendto
		sa          []byte
		want        unix.Errno
	}{
		{"bind in", unix.AF_INET, unix.SOCK_STREAM, "bind", in("127.0.0.1:0"), 0},
		{"bind short in", unix.AF_INET, unix.SOCK_STREAM, "bind", in("127.0.0.1:0")[:15], unix.EINVAL},
		{"bind in6 on AF_INET", unix.AF_INET, unix.SOCK_STREAM, "bind", in6("[::1]:0"), unix.EAFNOSUPPORT},
		{"bind AF_UNSPEC any", unix.AF_INET, unix.SOCK_DGRAM, "bind", withFamily(in("0.0.0.0:0"), unix.AF_UNSPEC), 0},
		{"bind AF_UNSPEC address", unix.AF_INET, unix.SOCK_DGRAM, "bind", withFamily(in("127.0.0.1:0"), unix.AF_UNSPEC), unix.EAFNOSUPPORT},
		{"bind foreign address", unix.AF_INET, unix.SOCK_STREAM, "bind", in("192.0.2.1:0"), unix.EADDRNOTAVAIL},
		{"bind in6", unix.AF_INET6, unix.SOCK_STREAM, "bind", in6("[::1]:0"), 0},
		{"bind RFC 2133 in6", unix.AF_INET6, unix.SOCK_STREAM, "bind", in6("[::1]:0")[:24], 0},
		{"bind short in6", unix.AF_INET6, unix.SOCK_STREAM, "bind", in6("[::1]:0")[:23], unix.EINVAL},
		{"bind in on AF_INET6", unix.AF_INET6, unix.SOCK_STREAM, "bind", in("127.0.0.1:0"), unix.EINVAL},
		{"bind in6 with AF_INET family", unix.AF_INET6, unix.SOCK_STREAM, "bind", withFamily(in6("[::1]:0"), unix.AF_INET), unix.EAFNOSUPPORT},
		{"bind link-local without scope", unix.AF_INET6, unix.SOCK_DGRAM, "bind", in6("[fe80::1]:0"), unix.EINVAL},
		{"bind mapped", unix.AF_INET6, unix.SOCK_STREAM, "bind", in6("[::ffff:127.0.0.1]:0"), 0},
		{"connect empty", unix.AF_INET, unix.SOCK_STREAM, "connect", nil, unix.EINVAL},
		{"connect short", unix.AF_INET, unix.SOCK_STREAM, "connect", in("127.0.0.1:1")[:8], unix.EINVAL},
		{"connect in6 on AF_INET", unix.AF_INET, unix.SOCK_STREAM, "connect", in6("[::1]:1"), unix.EAFNOSUPPORT},
		{"connect in on tcp6", unix.AF_INET6, unix.SOCK_STREAM, "connect", in("127.0.0.1:1"), unix.EINVAL},
		{"connect in on udp6", unix.AF_INET6, unix.SOCK_DGRAM, "connect", in("127.0.0.1:1"), 0},
		{"connect unreachable", unix.AF_INET, unix.SOCK_STREAM, "connect", in("192.0.2.1:1"), unix.ENETUNREACH},
		{"connect link-local without scope", unix.AF_INET6, unix.SOCK_STREAM, "connect", in6("[fe80::1]:1"), unix.EINVAL},
		{"sendto short", unix.AF_INET, unix.SOCK_DGRAM, "sendto", in("127.0.0.1:1")[:10], unix.EINVAL},
		{"sendto in6 on AF_INET", unix.AF_INET, unix.SOCK_DGRAM, "sendto", in6("[::1]:1"), unix.EAFNOSUPPORT},
		{"sendto AF_UNSPEC on AF_INET", unix.AF_INET, unix.SOCK_DGRAM, "sendto", withFamily(in("127.0.0.1:1"), unix.AF_UNSPEC), 0},
		{"sendto in on udp6", unix.AF_INET6, unix.SOCK_DGRAM, "sendto", in("127.0.0.1:1"), 0},
		{"sendto bad family on udp6", unix.AF_INET6, unix.SOCK_DGRAM, "sendto", withFamily(in6("[::1]:1"), unix.AF_PACKET), unix.EINVAL},
		{"sendto unreachable", unix.AF_INET, unix.SOCK_DGRAM, "sendto", in("192.0.2.1:1"), unix.ENETUNREACH},
		{"sendto ignored on tcp", unix.AF_INET, unix.SOCK_STREAM, "sendto", in6("[::1]:1"), unix.EPIPE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSocket(t, lo, tc.family, tc.typ, 0)
			var e unix.Errno
			switch tc.op {
			case "bind":
				e = s.Bind(tc.sa)
			case "connect":
				e = s.Connect(ctx, tc.sa)
			case "sendto":
				_, e = s.SendMsg(ctx, [][]byte{[]byte("x")}, tc.sa, 0)
			}
			if e != tc.want {
				t.Errorf("%s: %v, want %v", tc.op, e, tc.want)
			}
		})
	}
}

func TestStateErrors(t *testing.T) {
	lo := newLoopback(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, lo, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:0"))
	tcp := func() *Socket { return mustSocket(t, lo, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0) }
	udp := func() *Socket { return mustSocket(t, lo, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0) }
	for _, tc := range []struct {
		name string
		do   func() unix.Errno
		want unix.Errno
	}{
		{"read unconnected tcp", func() unix.Errno { _, e := tcp().Read(ctx, make([]byte, 1)); return e }, unix.ENOTCONN},
		{"write unconnected tcp", func() unix.Errno { _, e := tcp().Write(ctx, []byte("x")); return e }, unix.EPIPE},
		{"getpeername unconnected", func() unix.Errno { _, e := tcp().Getpeername(); return e }, unix.ENOTCONN},
		{"shutdown unconnected", func() unix.Errno { return tcp().Shutdown(unix.SHUT_RDWR) }, unix.ENOTCONN},
		{"shutdown bad how", func() unix.Errno { return tcp().Shutdown(7) }, unix.EINVAL},
		{"accept unlistened", func() unix.Errno { _, _, e := tcp().Accept(ctx, 0); return e }, unix.EINVAL},
		{"accept bad flags", func() unix.Errno { _, _, e := ln.Accept(ctx, unix.O_APPEND); return e }, unix.EINVAL},
		{"listen udp", func() unix.Errno { return udp().Listen(1) }, unix.EOPNOTSUPP},
		{"accept udp", func() unix.Errno { _, _, e := udp().Accept(ctx, 0); return e }, unix.EOPNOTSUPP},
		{"read listener", func() unix.Errno { _, e := ln.Read(ctx, make([]byte, 1)); return e }, unix.ENOTCONN},
		{"connect listener", func() unix.Errno { return ln.Connect(ctx, sockaddr(unix.AF_INET, laddr)) }, unix.EISCONN},
		{"bind twice", func() unix.Errno {
			s := tcp()
			must(t, "bind", s.Bind(sockaddr(unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:0"))))
			return s.Bind(sockaddr(unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:0")))
		}, unix.EINVAL},
		{"bind port in use", func() unix.Errno { return tcp().Bind(sockaddr(unix.AF_INET, laddr)) }, unix.EADDRINUSE},
		{"connect while connecting", func() unix.Errno {
			// A blackhole: nobody answers for 10.0.0.3 on the link.
			a, _ := newPair(t)
			s := mustSocket(t, a, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
			dst := sockaddr(unix.AF_INET, netip.MustParseAddrPort("10.0.0.3:80"))
			if e := s.Connect(ctx, dst); e != unix.EINPROGRESS {
				return e
			}
			if ev := s.Events(); ev != 0 {
				t.Errorf("connecting socket events %#x, want 0", ev)
			}
			return s.Connect(ctx, dst)
		}, unix.EALREADY},
		{"MSG_OOB recv", func() unix.Errno { _, _, _, e := udp().RecvMsg(ctx, [][]byte{make([]byte, 1)}, unix.MSG_OOB); return e }, unix.EOPNOTSUPP},
		{"MSG_ERRQUEUE", func() unix.Errno {
			_, _, _, e := udp().RecvMsg(ctx, [][]byte{make([]byte, 1)}, unix.MSG_ERRQUEUE)
			return e
		}, unix.EAGAIN},
		{"FIONREAD listener", func() unix.Errno { _, e := ln.InQueue(); return e }, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e := tc.do(); e != tc.want {
				t.Errorf("%v, want %v", e, tc.want)
			}
		})
	}
}

func TestSockopts(t *testing.T) {
	lo := newLoopback(t)
	ival := func(v int) []byte { return putInt(v) }
	type opt struct{ level, name int }
	for _, tc := range []struct {
		name        string
		family, typ int
		opt         opt
		set         []byte     // nil: no set
		setErr      unix.Errno // of the set
		want        []byte     // of the get afterwards; nil: not read
		getErr      unix.Errno
	}{
		{"SO_REUSEADDR", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_REUSEADDR}, ival(1), 0, ival(1), 0},
		{"SO_KEEPALIVE", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, ival(1), 0, ival(1), 0},
		{"SO_BROADCAST", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_BROADCAST}, ival(1), 0, ival(1), 0},
		{"SO_RCVBUF doubled", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_RCVBUF}, ival(65536), 0, ival(131072), 0},
		{"SO_SNDBUF doubled", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_SNDBUF}, ival(65536), 0, ival(131072), 0},
		{"SO_SNDBUF capped", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_SNDBUF}, ival(1 << 30), 0, ival(2 * wmemMax), 0},
		{"SO_TYPE", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_TYPE}, nil, 0, ival(unix.SOCK_DGRAM), 0},
		{"SO_TYPE is read-only", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_TYPE}, ival(1), unix.ENOPROTOOPT, nil, 0},
		{"SO_PROTOCOL", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_PROTOCOL}, nil, 0, ival(unix.IPPROTO_TCP), 0},
		{"SO_ACCEPTCONN", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_ACCEPTCONN}, nil, 0, ival(0), 0},
		{"SO_ERROR", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_ERROR}, nil, 0, ival(0), 0},
		{"SO_PRIORITY", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_PRIORITY}, ival(6), 0, ival(6), 0},
		{"SO_LINGER short", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_LINGER}, ival(1), unix.EINVAL, nil, 0},
		{"SO_RCVTIMEO bad usec", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_RCVTIMEO}, append(make([]byte, 8), ival(2e6)[:4]...), unix.EINVAL, nil, 0},
		{"SO_BINDTODEVICE", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_BINDTODEVICE}, []byte("lo\x00"), 0, []byte("lo\x00"), 0},
		{"SO_BINDTODEVICE unknown", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.SOL_SOCKET, unix.SO_BINDTODEVICE}, []byte("eth9"), unix.ENODEV, nil, 0},
		{"short int", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, unix.SO_REUSEADDR}, []byte{1}, unix.EINVAL, nil, 0},
		{"unknown SOL_SOCKET", unix.AF_INET, unix.SOCK_STREAM, opt{unix.SOL_SOCKET, 9999}, ival(1), unix.ENOPROTOOPT, nil, unix.ENOPROTOOPT},
		{"TCP_NODELAY", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_NODELAY}, ival(1), 0, ival(1), 0},
		{"TCP_KEEPIDLE", unix.AF_INET6, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, ival(15), 0, ival(15), 0},
		{"TCP_KEEPIDLE zero", unix.AF_INET6, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, ival(0), unix.EINVAL, nil, 0},
		{"TCP_KEEPINTVL", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, ival(15), 0, ival(15), 0},
		{"TCP_KEEPCNT", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_KEEPCNT}, ival(9), 0, ival(9), 0},
		{"TCP_KEEPCNT too many", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_KEEPCNT}, ival(128), unix.EINVAL, nil, 0},
		{"TCP_USER_TIMEOUT", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT}, ival(5000), 0, ival(5000), 0},
		{"unknown TCP", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_TCP, 9999}, ival(1), unix.ENOPROTOOPT, nil, unix.ENOPROTOOPT},
		{"TCP level on UDP", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_TCP, unix.TCP_NODELAY}, ival(1), unix.ENOPROTOOPT, nil, unix.EOPNOTSUPP},
		{"IP_TTL default", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_IP, unix.IP_TTL}, nil, 0, ival(64), 0},
		{"IP_TTL", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_TTL}, ival(7), 0, ival(7), 0},
		{"IP_TTL zero", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_TTL}, ival(0), unix.EINVAL, nil, 0},
		{"IP_TTL back to default", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_TTL}, ival(-1), 0, ival(64), 0},
		{"IP_MULTICAST_TTL byte", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_MULTICAST_TTL}, []byte{5}, 0, ival(5), 0},
		{"IP_MULTICAST_LOOP", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP}, ival(0), 0, ival(0), 0},
		{"IP_MULTICAST_IF", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_MULTICAST_IF}, []byte{127, 0, 0, 1}, 0, []byte{127, 0, 0, 1}, 0},
		{"IP_ADD_MEMBERSHIP", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP}, []byte{224, 0, 0, 251, 0, 0, 0, 0, 1, 0, 0, 0}, 0, nil, 0},
		{"IP_ADD_MEMBERSHIP unicast", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP}, []byte{10, 0, 0, 1, 0, 0, 0, 0}, unix.EINVAL, nil, 0},
		{"unknown IP", unix.AF_INET, unix.SOCK_DGRAM, opt{unix.IPPROTO_IP, 9999}, ival(1), unix.ENOPROTOOPT, nil, unix.ENOPROTOOPT},
		{"IPV6_V6ONLY", unix.AF_INET6, unix.SOCK_STREAM, opt{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}, ival(1), 0, ival(1), 0},
		{"IPV6_V6ONLY on AF_INET", unix.AF_INET, unix.SOCK_STREAM, opt{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}, ival(1), unix.ENOPROTOOPT, nil, unix.EOPNOTSUPP},
		{"IPV6_UNICAST_HOPS default", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS}, nil, 0, ival(64), 0},
		{"IPV6_UNICAST_HOPS", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS}, ival(9), 0, ival(9), 0},
		{"IPV6_MULTICAST_HOPS", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS}, ival(3), 0, ival(3), 0},
		{"IPV6_MULTICAST_LOOP bad", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP}, ival(2), unix.EINVAL, nil, 0},
		{"IPV6_MULTICAST_IF", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF}, ival(1), 0, ival(1), 0},
		{"IPV6_MULTICAST_IF unknown", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF}, ival(77), unix.ENODEV, nil, 0},
		{"IPV6_JOIN_GROUP", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP}, append(netip.MustParseAddr("ff02::fb").AsSlice(), ival(1)...), 0, nil, 0},
		{"IPV6_JOIN_GROUP short", unix.AF_INET6, unix.SOCK_DGRAM, opt{unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP}, make([]byte, 16), unix.EINVAL, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSocket(t, lo, tc.family, tc.typ, 0)
			if tc.set != nil {
				if e := s.Setsockopt(tc.opt.level, tc.opt.name, tc.set); e != tc.setErr {
					t.Fatalf("setsockopt: %v, want %v", e, tc.setErr)
				}
			}
			if tc.want == nil && tc.getErr == 0 {
				return
			}
			buf := make([]byte, 64)
			n, e := s.Getsockopt(tc.opt.level, tc.opt.name, buf)
			if e != tc.getErr {
				t.Fatalf("getsockopt: %v, want %v", e, tc.getErr)
			}
			if diff := cmp.Diff(tc.want, buf[:n], cmp.Comparer(bytes.Equal)); tc.getErr == 0 && diff != "" {
				t.Errorf("getsockopt value (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSockoptTruncation reads options into short buffers as Linux does:
// IPPROTO_IP ints as one byte, others cut.
func TestSockoptTruncation(t *testing.T) {
	lo := newLoopback(t)
	s := mustSocket(t, lo, unix.AF_INET, unix.SOCK_DGRAM, 0)
	b := make([]byte, 1)
	if n, e := s.Getsockopt(unix.IPPROTO_IP, unix.IP_TTL, b); n != 1 || e != 0 || b[0] != 64 {
		t.Errorf("IP_TTL in a byte: %d %v %d", n, e, b[0])
	}
	b = make([]byte, 2)
	if n, e := s.Getsockopt(unix.SOL_SOCKET, unix.SO_TYPE, b); n != 2 || e != 0 || b[0] != unix.SOCK_DGRAM {
		t.Errorf("SO_TYPE in 2 bytes: %d %v %x", n, e, b)
	}
	if n, e := s.Getsockopt(unix.SOL_SOCKET, unix.SO_TYPE, nil); n != 0 || e != 0 {
		t.Errorf("SO_TYPE in nothing: %d %v", n, e)
	}
	must(t, "bind to device", s.Setsockopt(unix.SOL_SOCKET, unix.SO_BINDTODEVICE, []byte("lo")))
	if _, e := s.Getsockopt(unix.SOL_SOCKET, unix.SO_BINDTODEVICE, make([]byte, 8)); e != unix.EINVAL {
		t.Errorf("SO_BINDTODEVICE into 8 bytes: %v, want EINVAL", e)
	}
	if e := setIntOpt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); e != unix.ENOPROTOOPT {
		t.Errorf("IPv6 option on AF_INET: %v", e)
	}
	s6 := mustSocket(t, lo, unix.AF_INET6, unix.SOCK_STREAM, 0)
	must(t, "bind", s6.Bind(sockaddr(unix.AF_INET6, netip.MustParseAddrPort("[::1]:0"))))
	if e := setIntOpt(s6, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); e != unix.EINVAL {
		t.Errorf("IPV6_V6ONLY after bind: %v, want EINVAL", e)
	}
}
