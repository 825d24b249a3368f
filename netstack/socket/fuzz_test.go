package socket

import (
	"context"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzNetlinkRequest sends arbitrary bytes to the NETLINK_ROUTE "kernel",
// as an untrusted program may: nothing panics, the send is taken whole,
// and every reply is well-formed netlink that package syscall parses.
func FuzzNetlinkRequest(f *testing.F) {
	f.Add(nlRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP|unix.NLM_F_REQUEST, 1, []byte{unix.AF_UNSPEC}))
	f.Add(nlRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP|unix.NLM_F_REQUEST|unix.NLM_F_ACK, 2, []byte{unix.AF_INET6}))
	f.Add(nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 3, ifinfoIndex(2)))
	lo := newLoopback(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, req []byte) {
		s, e := lo.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
		if e != 0 {
			t.Fatal(e)
		}
		defer s.Close(ctx)
		n, e := s.SendMsg(ctx, [][]byte{req}, nil, 0)
		if e != 0 || n != len(req) {
			t.Fatalf("send of %d bytes: %d, %v", len(req), n, e)
		}
		for {
			b := make([]byte, 1<<16)
			n, _, flags, e := s.RecvMsg(ctx, [][]byte{b}, 0)
			if e == unix.EAGAIN {
				return
			}
			if e != 0 || flags != 0 {
				t.Fatalf("recv: %v, flags %#x", e, flags)
			}
			if n%unix.NLMSG_ALIGNTO != 0 {
				t.Fatalf("datagram of %d bytes is not aligned", n)
			}
			msgs, err := syscall.ParseNetlinkMessage(b[:n])
			if err != nil {
				t.Fatalf("reply %x: %v", b[:n], err)
			}
			for _, m := range msgs {
				switch m.Header.Type {
				case unix.RTM_NEWLINK, unix.RTM_NEWADDR, unix.RTM_NEWROUTE:
					if _, err := syscall.ParseNetlinkRouteAttr(&m); err != nil {
						t.Fatalf("attributes of %+v: %v", m.Header, err)
					}
				case unix.NLMSG_ERROR:
					if len(m.Data) < unix.SizeofNlMsgerr {
						t.Fatalf("short error %x", m.Data)
					}
				case unix.NLMSG_DONE:
				default:
					t.Fatalf("reply of type %d", m.Header.Type)
				}
			}
		}
	})
}

// FuzzSockopt sets and gets arbitrary options on every kind of socket:
// nothing panics, and a get never claims more bytes than the buffer.
func FuzzSockopt(f *testing.F) {
	f.Add(unix.SOL_SOCKET, unix.SO_LINGER, []byte{1, 0, 0, 0, 5, 0, 0, 0}, 8)
	f.Add(unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, []byte{224, 0, 0, 1, 0, 0, 0, 0}, 4)
	f.Add(unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, make([]byte, 20), 4)
	f.Add(unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, []byte{1, 0, 0, 0}, 4)
	f.Add(unix.SOL_SOCKET, unix.SO_RCVTIMEO, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0}, 16)
	lo := newLoopback(f)
	ctx := context.Background()
	kinds := [][3]int{
		{unix.AF_INET, unix.SOCK_STREAM, 0}, {unix.AF_INET6, unix.SOCK_STREAM, 0},
		{unix.AF_INET, unix.SOCK_DGRAM, 0}, {unix.AF_INET6, unix.SOCK_DGRAM, 0},
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP}, {unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE},
	}
	f.Fuzz(func(t *testing.T, level, name int, val []byte, getLen int) {
		if getLen < 0 || getLen > 1024 {
			getLen = 64
		}
		for _, k := range kinds {
			s, e := lo.Socket(k[0], k[1], k[2])
			if e != 0 {
				t.Fatal(e)
			}
			s.Setsockopt(level, name, val)
			if n, _ := s.Getsockopt(level, name, make([]byte, getLen)); n < 0 || n > getLen {
				t.Fatalf("getsockopt(%d, %d) into %d bytes says %d", level, name, getLen, n)
			}
			s.Close(ctx)
		}
	})
}

// FuzzSockaddr hands arbitrary socket addresses to bind, connect and
// sendto of non-blocking sockets of each family: nothing panics.
func FuzzSockaddr(f *testing.F) {
	f.Add(sockaddr(unix.AF_INET, mustAddrPort("127.0.0.1:7")))
	f.Add(sockaddr(unix.AF_INET6, mustAddrPort("[fe80::1]:7")))
	f.Add(encodeNetlink(0, 0))
	lo := newLoopback(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, sa []byte) {
		for _, k := range [][2]int{{unix.AF_INET, unix.SOCK_DGRAM}, {unix.AF_INET6, unix.SOCK_DGRAM}, {unix.AF_INET6, unix.SOCK_STREAM}, {unix.AF_NETLINK, unix.SOCK_RAW}} {
			for _, op := range []string{"bind", "sendto", "connect"} {
				s, e := lo.Socket(k[0], k[1]|unix.SOCK_NONBLOCK, 0)
				if e != 0 {
					t.Fatal(e)
				}
				switch op {
				case "bind":
					s.Bind(sa)
				case "sendto":
					s.SendMsg(ctx, [][]byte{[]byte("x")}, sa, 0)
				case "connect":
					s.Connect(ctx, sa)
				}
				s.Getsockname()
				s.Getpeername()
				s.Close(ctx)
			}
		}
	})
}
