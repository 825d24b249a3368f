package kernel

import (
	"testing"
	"time"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/socket"
	"golang.org/x/sys/unix"
)

// loopbackSockets is the socket layer of a stack with loopback only.
func loopbackSockets(t *testing.T) *socket.Sockets {
	st, err := netstack.New(netstack.Config{NoSLAAC: true, NoDAD: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return socket.New(st)
}

// TestCheckSocketMatchesServer: the kernel answers socket(2) before the
// server makes the socket, so its argument checks must agree with
// netstack/socket's: same success, same errno.
func TestCheckSocketMatchesServer(t *testing.T) {
	ss := loopbackSockets(t)
	domains := []int{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_UNIX, unix.AF_PACKET, 0, 99}
	types := []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_RAW, unix.SOCK_SEQPACKET, unix.SOCK_PACKET, 0, 11,
		unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, unix.SOCK_DGRAM | 0x100}
	protos := []int{0, unix.IPPROTO_ICMP, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMPV6, unix.IPPROTO_RAW, 1000}
	for _, d := range domains {
		for _, ty := range types {
			for _, p := range protos {
				s, e := ss.Socket(d, ty, p)
				if s != nil {
					s.Close(t.Context())
				}
				if k := checkSocket(int32(d), int32(ty), int32(p)); k != e {
					t.Errorf("socket(%d, %#x, %d): kernel says %v, server %v", d, ty, p, k, e)
				}
			}
		}
	}
}

// TestWouldBlockMatchesServer: the kernel answers a non-blocking read or
// write EAGAIN itself when a socket's exact readiness says it would block
// (wouldBlock); the server must then have answered EAGAIN too. Checked for
// every call wouldBlock covers, on TCP and UDP sockets in the states a
// program meets: listening, connecting, connected with and without data,
// after the peer's shutdown, and with SO_RCVLOWAT (which gVisor does not
// act on).
func TestWouldBlockMatchesServer(t *testing.T) {
	ss := loopbackSockets(t)
	ctx := t.Context()
	mk := func(typ int) *socket.Socket {
		s, e := ss.Socket(unix.AF_INET, typ|unix.SOCK_NONBLOCK, 0)
		if e != 0 {
			t.Fatal(e)
		}
		t.Cleanup(func() { s.Close(ctx) })
		return s
	}
	local := func(port uint16) []byte {
		sa := make([]byte, 16)
		sa[0], sa[1] = unix.AF_INET, 0
		sa[2], sa[3] = byte(port>>8), byte(port)
		sa[4], sa[7] = 127, 1
		return sa
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; !cond(); i++ {
			if i == 5000 {
				t.Fatalf("%s: still waiting after 5 s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}

	ln := mk(unix.SOCK_STREAM)
	if e := ln.Bind(local(7000)); e != 0 {
		t.Fatal(e)
	}
	if e := ln.Listen(8); e != 0 {
		t.Fatal(e)
	}
	cl := mk(unix.SOCK_STREAM)
	if e := cl.Connect(ctx, local(7000)); e != 0 && e != unix.EINPROGRESS {
		t.Fatal(e)
	}
	wait("accept", func() bool { return ln.Events()&unix.EPOLLIN != 0 })
	sv, _, e := ln.Accept(ctx, unix.SOCK_NONBLOCK)
	if e != 0 {
		t.Fatal(e)
	}
	t.Cleanup(func() { sv.Close(ctx) })
	wait("connect", func() bool { return cl.Events()&unix.EPOLLOUT != 0 })
	u1, u2 := mk(unix.SOCK_DGRAM), mk(unix.SOCK_DGRAM)
	if e := u1.Bind(local(7001)); e != 0 {
		t.Fatal(e)
	}

	engaged := 0
	check := func(state string, s *socket.Socket) {
		t.Helper()
		ev, exact := s.Events(), s.EventsExact()
		buf := make([]byte, 4)
		for _, c := range []struct {
			name   string
			sysno  uint64
			r10    uint64
			rdx    uint64
			server func() unix.Errno
		}{
			{"read", unix.SYS_READ, 0, 0, func() unix.Errno { _, e := s.Read(ctx, buf); return e }},
			{"recvfrom", unix.SYS_RECVFROM, 0, 0, func() unix.Errno { _, _, _, e := s.RecvMsg(ctx, [][]byte{buf}, 0); return e }},
			{"recvmsg MSG_PEEK", unix.SYS_RECVMSG, 0, unix.MSG_PEEK, func() unix.Errno {
				_, _, _, e := s.RecvMsg(ctx, [][]byte{buf}, unix.MSG_PEEK)
				return e
			}},
			{"write", unix.SYS_WRITE, 0, 0, func() unix.Errno { _, e := s.Write(ctx, []byte("x")); return e }},
		} {
			if !exact || !wouldBlock(c.sysno, c.r10, c.rdx, ev) {
				continue
			}
			engaged++
			if e := c.server(); e != unix.EAGAIN {
				t.Errorf("%s: %s: the kernel would answer EAGAIN (events %#x), the server answered %v", state, c.name, ev, e)
			}
		}
	}
	if ln.EventsExact() {
		t.Error("a listening socket's readiness is exact; its reads fail with ENOTCONN rather than block")
	}
	check("listening", ln)
	check("connected, nothing to read", sv)
	if !sv.EventsExact() || !wouldBlock(unix.SYS_READ, 0, 0, sv.Events()) {
		t.Errorf("connected TCP socket without data: exact %v, events %#x; want a read the kernel answers", sv.EventsExact(), sv.Events())
	}
	if _, e := cl.Write(ctx, []byte("data")); e != 0 {
		t.Fatal(e)
	}
	wait("data", func() bool { return sv.Events()&unix.EPOLLIN != 0 })
	check("connected, data to read", sv)
	check("UDP, nothing to read", u1)
	if _, e := u2.SendMsg(ctx, [][]byte{[]byte("d")}, local(7001), 0); e != 0 {
		t.Fatal(e)
	}
	wait("datagram", func() bool { return u1.Events()&unix.EPOLLIN != 0 })
	check("UDP, a datagram to read", u1)
	if e := sv.Setsockopt(unix.SOL_SOCKET, unix.SO_RCVLOWAT, []byte{100, 0, 0, 0}); e != 0 {
		t.Fatal(e)
	}
	check("SO_RCVLOWAT 100", sv)
	if e := cl.Shutdown(unix.SHUT_WR); e != 0 {
		t.Fatal(e)
	}
	wait("FIN", func() bool { return sv.Events()&unix.EPOLLRDHUP != 0 })
	check("after the peer's shutdown", sv)
	if engaged == 0 {
		t.Error("wouldBlock never applied: the test checked nothing")
	}
}

// TestWouldBlock covers the flags wouldBlock lets through.
func TestWouldBlock(t *testing.T) {
	for _, c := range []struct {
		sysno, r10, rdx uint64
		events          uint32
		want            bool
	}{
		{unix.SYS_READ, 0, 0, 0, true},
		{unix.SYS_READ, 0, 0, epollOut, true},
		{unix.SYS_READ, 0, 0, epollIn, false},
		{unix.SYS_READV, 0, 0, epollRdhup, false},
		{unix.SYS_READ, 0, 0, epollHup, false},
		{unix.SYS_READ, 0, 0, epollErr, false},
		{unix.SYS_RECVFROM, unix.MSG_DONTWAIT, 0, epollOut, true},
		{unix.SYS_RECVFROM, unix.MSG_PEEK, 0, epollOut, false},
		{unix.SYS_RECVMSG, 0, unix.MSG_ERRQUEUE, 0, false},
		{unix.SYS_RECVMSG, 0, 0, 0, true},
		{unix.SYS_WRITE, 0, 0, epollIn, true},
		{unix.SYS_WRITEV, 0, 0, epollOut, false},
		{unix.SYS_SENDTO, unix.MSG_NOSIGNAL, 0, 0, false},
		{unix.SYS_SENDMSG, 0, 0, epollHup, false},
		{unix.SYS_SENDMSG, 0, 0, 0, true},
		{unix.SYS_ACCEPT4, 0, 0, 0, false},
		{unix.SYS_CONNECT, 0, 0, 0, false},
	} {
		if got := wouldBlock(c.sysno, c.r10, c.rdx, c.events); got != c.want {
			t.Errorf("wouldBlock(%d, r10 %#x, rdx %#x, events %#x) = %v, want %v", c.sysno, c.r10, c.rdx, c.events, got, c.want)
		}
	}
}
