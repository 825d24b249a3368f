package socket

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/netstack"
	"golang.org/x/sys/unix"
)

// readFull reads n bytes from a blocking socket.
func readFull(t testing.TB, ctx context.Context, s *Socket, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, e := s.Read(ctx, buf[got:])
		must(t, "read", e)
		if m == 0 {
			t.Fatalf("EOF after %d of %d bytes", got, n)
		}
		got += m
	}
	return buf
}

func TestTCPEcho(t *testing.T) {
	a, b := newPair(t)
	lo := newLoopback(t)
	for _, tc := range []struct {
		name           string
		client, server *Sockets
		family         int // of both sockets
		listen, dial   netip.Addr
		wantPeer       netip.Addr // as the server sees the client
	}{
		{"IPv4", a, b, unix.AF_INET, addrB, addrB, addrA},
		{"IPv6", a, b, unix.AF_INET6, addrB6, addrB6, addrA6},
		{"IPv4 any", a, b, unix.AF_INET, netip.IPv4Unspecified(), addrB, addrA},
		{"IPv6 link-local", a, b, unix.AF_INET6, netip.IPv6Unspecified(), netip.MustParseAddr("fe80::ff:fe00:2%2"), netip.MustParseAddr("fe80::ff:fe00:1%2")},
		{"IPv4-mapped on dual-stack", a, b, unix.AF_INET6, netip.IPv6Unspecified(), netip.AddrFrom16(addrB.As16()), netip.AddrFrom16(addrA.As16())},
		{"loopback IPv4", lo, lo, unix.AF_INET, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")},
		{"loopback IPv6", lo, lo, unix.AF_INET6, netip.IPv6Loopback(), netip.IPv6Loopback(), netip.IPv6Loopback()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			ln, laddr := listenOn(t, tc.server, tc.family, netip.AddrPortFrom(tc.listen, 0))
			c := mustSocket(t, tc.client, tc.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			must(t, "connect", c.Connect(ctx, sockaddr(tc.family, netip.AddrPortFrom(tc.dial, laddr.Port()))))
			srv, peer, e := ln.Accept(ctx, unix.SOCK_CLOEXEC)
			must(t, "accept", e)
			defer srv.Close(ctx)

			cname, e := c.Getsockname()
			must(t, "getsockname", e)
			cpeer, e := c.Getpeername()
			must(t, "getpeername", e)
			speer, e := srv.Getpeername()
			must(t, "server getpeername", e)
			if diff := cmp.Diff(addrPort(t, cname).String(), addrPort(t, peer).String()); diff != "" {
				t.Errorf("accept's peer is not the client's name (-client +peer):\n%s", diff)
			}
			if diff := cmp.Diff(peer, speer); diff != "" {
				t.Errorf("getpeername differs from accept's peer:\n%s", diff)
			}
			if got := addrPort(t, peer).Addr(); got != tc.wantPeer {
				t.Errorf("peer address %v, want %v", got, tc.wantPeer)
			}
			if got := addrPort(t, cpeer); got != netip.AddrPortFrom(tc.dial, laddr.Port()) {
				t.Errorf("client's peer %v, want %v:%d", got, tc.dial, laddr.Port())
			}
			if !srv.CloseOnExec() || srv.Nonblock() || srv.Family() != tc.family || srv.Type() != unix.SOCK_STREAM || srv.Protocol() != unix.IPPROTO_TCP {
				t.Errorf("accepted socket: cloexec %v nonblock %v family %d type %d proto %d", srv.CloseOnExec(), srv.Nonblock(), srv.Family(), srv.Type(), srv.Protocol())
			}

			// Both ways, more than the send buffer, in several iovecs.
			msg := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
			for _, dir := range []struct {
				name     string
				from, to *Socket
			}{{"client to server", c, srv}, {"server to client", srv, c}} {
				done := make(chan unix.Errno, 1)
				go func() {
					n, e := dir.from.SendMsg(ctx, [][]byte{msg[:1000], msg[1000:]}, nil, 0)
					if e == 0 && n != len(msg) {
						e = unix.EIO
					}
					done <- e
				}()
				got := readFull(t, ctx, dir.to, len(msg))
				if !bytes.Equal(got, msg) {
					t.Errorf("%s: bytes differ", dir.name)
				}
				must(t, dir.name+" send", <-done)
			}

			// Orderly close: EOF on the other side.
			must(t, "shutdown", c.Shutdown(unix.SHUT_WR))
			n, e := srv.Read(ctx, make([]byte, 10))
			if n != 0 || e != 0 {
				t.Errorf("read after peer's shutdown: %d, %v; want EOF", n, e)
			}
			if _, e := c.Write(ctx, []byte("x")); e != unix.EPIPE {
				t.Errorf("write after SHUT_WR: %v, want EPIPE", e)
			}
		})
	}
}

func TestNonblockingConnect(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name   string
		family int
		dst    netip.Addr
	}{{"IPv4", unix.AF_INET, addrB}, {"IPv6", unix.AF_INET6, addrB6}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, laddr := listenOn(t, b, tc.family, netip.AddrPortFrom(tc.dst, 0))
			lnw := watch(ln)
			if ev := ln.Events(); ev != 0 {
				t.Errorf("idle listener events %#x, want 0", ev)
			}
			c := mustSocket(t, a, tc.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
			cw := watch(c)
			dst := sockaddr(tc.family, netip.AddrPortFrom(tc.dst, laddr.Port()))
			if e := c.Connect(ctx, dst); e != unix.EINPROGRESS {
				t.Fatalf("connect: %v, want EINPROGRESS", e)
			}
			ev := cw.waitEvents(t, c, unix.EPOLLOUT)
			if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				t.Errorf("connected socket events %#x", ev)
			}
			if v := getIntOpt(t, c, unix.SOL_SOCKET, unix.SO_ERROR); v != 0 {
				t.Errorf("SO_ERROR %v", unix.Errno(v))
			}
			if _, e := c.Getpeername(); e != 0 {
				t.Errorf("getpeername: %v", e)
			}
			// Linux: the first connect after completion says 0, then EISCONN.
			if e := c.Connect(ctx, dst); e != 0 {
				t.Errorf("connect after completion: %v, want 0", e)
			}
			if e := c.Connect(ctx, dst); e != unix.EISCONN {
				t.Errorf("connect again: %v, want EISCONN", e)
			}
			lnw.waitEvents(t, ln, unix.EPOLLIN)
			ln.SetNonblock(true)
			srv, _, e := ln.Accept(ctx, unix.SOCK_NONBLOCK)
			must(t, "accept", e)
			defer srv.Close(ctx)
			if !srv.Nonblock() {
				t.Error("SOCK_NONBLOCK not applied to accepted socket")
			}
			if _, _, e := ln.Accept(ctx, 0); e != unix.EAGAIN {
				t.Errorf("second accept: %v, want EAGAIN", e)
			}
			if ev := ln.Events(); ev&unix.EPOLLIN != 0 {
				t.Errorf("drained listener events %#x", ev)
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	a, _ := newPair(t)
	lo := newLoopback(t)
	for _, tc := range []struct {
		name   string
		ss     *Sockets
		family int
		dst    netip.Addr
	}{
		{"IPv4", a, unix.AF_INET, addrB},
		{"IPv6", a, unix.AF_INET6, addrB6},
		{"loopback", lo, unix.AF_INET, netip.MustParseAddr("127.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			dst := sockaddr(tc.family, netip.AddrPortFrom(tc.dst, 9))
			c := mustSocket(t, tc.ss, tc.family, unix.SOCK_STREAM, 0)
			if e := c.Connect(ctx, dst); e != unix.ECONNREFUSED {
				t.Errorf("blocking connect: %v, want ECONNREFUSED", e)
			}

			nc := mustSocket(t, tc.ss, tc.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
			w := watch(nc)
			if e := nc.Connect(ctx, dst); e != unix.EINPROGRESS && e != unix.ECONNREFUSED {
				t.Fatalf("connect: %v", e)
			}
			ev := w.waitEvents(t, nc, unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR)
			if ev&unix.EPOLLIN == 0 {
				t.Errorf("refused socket events %#x lack EPOLLIN", ev)
			}
			if v := getIntOpt(t, nc, unix.SOL_SOCKET, unix.SO_ERROR); unix.Errno(v) != unix.ECONNREFUSED {
				t.Errorf("SO_ERROR %v, want ECONNREFUSED", unix.Errno(v))
			}
			if v := getIntOpt(t, nc, unix.SOL_SOCKET, unix.SO_ERROR); v != 0 {
				t.Errorf("second SO_ERROR %v, want 0", unix.Errno(v))
			}
			if _, e := nc.Getpeername(); e != unix.ENOTCONN {
				t.Errorf("getpeername: %v, want ENOTCONN", e)
			}
		})
	}
}

// TestReadiness follows a connection's epoll bits through data, reads,
// the peer's shutdown and a reset, checking that each change is notified.
func TestReadiness(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, b, unix.AF_INET, netip.AddrPortFrom(addrB, 0))
	c := mustSocket(t, a, unix.AF_INET, unix.SOCK_STREAM, 0)
	if ev := c.Events(); ev != unix.EPOLLOUT|unix.EPOLLWRNORM|unix.EPOLLHUP {
		t.Errorf("new socket events %#x, want OUT|WRNORM|HUP as Linux", ev)
	}
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
	srv, _, e := ln.Accept(ctx, unix.SOCK_NONBLOCK)
	must(t, "accept", e)
	defer srv.Close(ctx)
	w := watch(srv)
	if ev := srv.Events(); ev != unix.EPOLLOUT|unix.EPOLLWRNORM {
		t.Errorf("idle connection events %#x, want OUT|WRNORM", ev)
	}
	if _, e := srv.Read(ctx, make([]byte, 10)); e != unix.EAGAIN {
		t.Errorf("read of idle non-blocking socket: %v, want EAGAIN", e)
	}

	before := w.count()
	if _, e := c.Write(ctx, []byte("hello")); e != 0 {
		t.Fatal(e)
	}
	w.waitEvents(t, srv, unix.EPOLLIN|unix.EPOLLRDNORM)
	if w.count() == before {
		t.Error("data arrived without a notify call")
	}
	if n, e := srv.InQueue(); n != 5 || e != 0 {
		t.Errorf("FIONREAD %d, %v; want 5", n, e)
	}
	buf := make([]byte, 3)
	n, _, _, e := srv.RecvMsg(ctx, [][]byte{buf}, unix.MSG_PEEK)
	if n != 3 || e != 0 || string(buf) != "hel" {
		t.Errorf("peek: %d %q %v", n, buf[:n], e)
	}
	n, _, _, e = srv.RecvMsg(ctx, [][]byte{buf[:2], buf[2:]}, 0)
	if n != 3 || e != 0 || string(buf) != "hel" {
		t.Errorf("read: %d %q %v", n, buf[:n], e)
	}
	got, e := srv.Read(ctx, buf)
	if got != 2 || e != 0 || string(buf[:2]) != "lo" {
		t.Errorf("read rest: %d %q %v", got, buf[:got], e)
	}
	if ev := srv.Events(); ev&unix.EPOLLIN != 0 {
		t.Errorf("drained socket events %#x", ev)
	}

	must(t, "shutdown", c.Shutdown(unix.SHUT_WR))
	ev := w.waitEvents(t, srv, unix.EPOLLIN|unix.EPOLLRDHUP)
	if ev&unix.EPOLLHUP != 0 {
		t.Errorf("half-closed events %#x have HUP", ev)
	}
	if n, e := srv.Read(ctx, buf); n != 0 || e != 0 {
		t.Errorf("read at EOF: %d, %v", n, e)
	}
	// Writing to the half-closed peer still works.
	if _, e := srv.Write(ctx, []byte("bye")); e != 0 {
		t.Errorf("write to half-closed peer: %v", e)
	}
	if got := readFull(t, ctx, c, 3); string(got) != "bye" {
		t.Errorf("client read %q", got)
	}
}

// TestEPIPE writes to a connection whose peer has closed: the first write
// draws a reset, after which writes fail with EPIPE (not a signal).
func TestEPIPE(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, b, unix.AF_INET6, netip.AddrPortFrom(addrB6, 0))
	c := mustSocket(t, a, unix.AF_INET6, unix.SOCK_STREAM, 0)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET6, laddr)))
	srv, _, e := ln.Accept(ctx, 0)
	must(t, "accept", e)
	w := watch(c)
	must(t, "close", srv.Close(ctx))
	if e := srv.Close(ctx); e != unix.EBADF {
		t.Errorf("second close: %v, want EBADF", e)
	}
	if n, e := c.Read(ctx, make([]byte, 1)); n != 0 || e != 0 {
		t.Fatalf("read after peer close: %d, %v; want EOF", n, e)
	}
	if _, e := c.Write(ctx, []byte("into the void")); e != 0 {
		t.Fatalf("first write after peer close: %v", e)
	}
	w.waitEvents(t, c, unix.EPOLLHUP)
	for i := 0; i < 2; i++ {
		if _, e := c.Write(ctx, []byte("again")); e != unix.EPIPE {
			t.Errorf("write %d after reset: %v, want EPIPE", i, e)
		}
	}
}

// TestConnectionReset closes a socket with unread data, which resets the
// connection: the peer's read says ECONNRESET.
func TestConnectionReset(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, b, unix.AF_INET, netip.AddrPortFrom(addrB, 0))
	c := mustSocket(t, a, unix.AF_INET, unix.SOCK_STREAM, 0)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
	srv, _, e := ln.Accept(ctx, 0)
	must(t, "accept", e)
	if _, e := c.Write(ctx, []byte("unread")); e != 0 {
		t.Fatal(e)
	}
	w := watch(srv)
	w.waitEvents(t, srv, unix.EPOLLIN)
	must(t, "close", srv.Close(ctx))
	n, e := c.Read(ctx, make([]byte, 10))
	if n != 0 || e != unix.ECONNRESET {
		t.Errorf("read after reset: %d, %v; want ECONNRESET", n, e)
	}
}

func TestBlockingLimits(t *testing.T) {
	lo := newLoopback(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, lo, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:0"))
	c := mustSocket(t, lo, unix.AF_INET, unix.SOCK_STREAM, 0)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
	srv, _, e := ln.Accept(ctx, 0)
	must(t, "accept", e)
	defer srv.Close(ctx)

	t.Run("SO_RCVTIMEO", func(t *testing.T) {
		tv := timeval(50 * time.Millisecond)
		must(t, "setsockopt", c.Setsockopt(unix.SOL_SOCKET, unix.SO_RCVTIMEO, tv))
		got := make([]byte, 16)
		n, e := c.Getsockopt(unix.SOL_SOCKET, unix.SO_RCVTIMEO, got)
		if e != 0 || !bytes.Equal(got[:n], tv) {
			t.Errorf("SO_RCVTIMEO reads back %x, %v; want %x", got[:n], e, tv)
		}
		start := time.Now()
		if _, e := c.Read(ctx, make([]byte, 1)); e != unix.EAGAIN {
			t.Errorf("read: %v, want EAGAIN", e)
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
			t.Errorf("timed out after %v, want about 50ms", d)
		}
		must(t, "setsockopt", c.Setsockopt(unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(0)))
	})
	t.Run("MSG_DONTWAIT", func(t *testing.T) {
		if _, _, _, e := c.RecvMsg(ctx, [][]byte{make([]byte, 1)}, unix.MSG_DONTWAIT); e != unix.EAGAIN {
			t.Errorf("recv: %v, want EAGAIN", e)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		ictx, cancel := context.WithCancel(ctx)
		time.AfterFunc(20*time.Millisecond, cancel)
		if _, e := c.Read(ictx, make([]byte, 1)); e != unix.EINTR {
			t.Errorf("read: %v, want EINTR", e)
		}
	})
	t.Run("MSG_WAITALL", func(t *testing.T) {
		go func() {
			for _, s := range []string{"ab", "cd", "ef"} {
				srv.Write(ctx, []byte(s))
				time.Sleep(5 * time.Millisecond)
			}
		}()
		buf := make([]byte, 6)
		n, _, _, e := c.RecvMsg(ctx, [][]byte{buf}, unix.MSG_WAITALL)
		if n != 6 || e != 0 || string(buf) != "abcdef" {
			t.Errorf("recv: %d %q %v", n, buf[:n], e)
		}
	})
	t.Run("accept timeout", func(t *testing.T) {
		must(t, "setsockopt", ln.Setsockopt(unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(20*time.Millisecond)))
		if _, _, e := ln.Accept(ctx, 0); e != unix.EAGAIN {
			t.Errorf("accept: %v, want EAGAIN", e)
		}
	})
	t.Run("closed while blocked", func(t *testing.T) {
		s := mustSocket(t, lo, unix.AF_INET, unix.SOCK_STREAM, 0)
		must(t, "connect", s.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
		time.AfterFunc(20*time.Millisecond, func() { s.Close(ctx) })
		if _, e := s.Read(ctx, make([]byte, 1)); e != unix.EBADF {
			t.Errorf("read: %v, want EBADF", e)
		}
		if _, e := s.Write(ctx, []byte("x")); e != unix.EBADF {
			t.Errorf("write after close: %v, want EBADF", e)
		}
	})
}

func TestLinger(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, b, unix.AF_INET, netip.AddrPortFrom(addrB, 0))
	for _, tc := range []struct {
		name    string
		secs    int
		wantErr unix.Errno // on the peer's read after draining
	}{{"graceful", 5, 0}, {"abortive", 0, unix.ECONNRESET}} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustSocket(t, a, unix.AF_INET, unix.SOCK_STREAM, 0)
			l := make([]byte, 8)
			ne.PutUint32(l, 1)
			ne.PutUint32(l[4:], uint32(tc.secs))
			must(t, "SO_LINGER", c.Setsockopt(unix.SOL_SOCKET, unix.SO_LINGER, l))
			got := make([]byte, 8)
			if n, e := c.Getsockopt(unix.SOL_SOCKET, unix.SO_LINGER, got); n != 8 || e != 0 || !bytes.Equal(got, l) {
				t.Errorf("SO_LINGER reads back %x, %v", got[:n], e)
			}
			must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
			srv, _, e := ln.Accept(ctx, 0)
			must(t, "accept", e)
			defer srv.Close(ctx)
			if tc.wantErr == 0 {
				if _, e := c.Write(ctx, []byte("last words")); e != 0 {
					t.Fatal(e)
				}
			}
			start := time.Now()
			must(t, "close", c.Close(ctx))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("close lingered %v", d)
			}
			buf := make([]byte, 100)
			n, e := srv.Read(ctx, buf)
			if tc.wantErr != 0 {
				if e != tc.wantErr {
					t.Errorf("peer read: %d %v, want %v", n, e, tc.wantErr)
				}
				return
			}
			if string(buf[:n]) != "last words" || e != 0 {
				t.Errorf("peer read %q, %v", buf[:n], e)
			}
			if n, e := srv.Read(ctx, buf); n != 0 || e != 0 {
				t.Errorf("peer read after data: %d, %v; want EOF", n, e)
			}
		})
	}
}

// TestNotifyReentrant calls back into the socket from the notify
// callback, as an epoll implementation does, while traffic flows: no
// deadlock, and calls for one socket never overlap.
func TestNotifyReentrant(t *testing.T) {
	a, b := newPair(t)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, b, unix.AF_INET, netip.AddrPortFrom(addrB, 0))
	c := mustSocket(t, a, unix.AF_INET, unix.SOCK_STREAM, 0)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
	srv, _, e := ln.Accept(ctx, unix.SOCK_NONBLOCK)
	must(t, "accept", e)
	defer srv.Close(ctx)

	const total = 200 << 10
	var (
		inside  atomic.Int32
		got     atomic.Int64
		overlap atomic.Bool
		done    = make(chan struct{})
	)
	drain := func() {
		if inside.Add(1) != 1 {
			overlap.Store(true)
		}
		defer inside.Add(-1)
		buf := make([]byte, 4096)
		for srv.Events()&unix.EPOLLIN != 0 {
			n, e := srv.Read(ctx, buf)
			if e != 0 || n == 0 {
				break
			}
			if got.Add(int64(n)) == total {
				close(done)
			}
		}
		srv.Getsockopt(unix.SOL_SOCKET, unix.SO_ERROR, make([]byte, 4))
	}
	srv.SetNotify(drain) // nothing has arrived yet
	go c.Write(ctx, make([]byte, total))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("read %d of %d bytes through notify calls", got.Load(), total)
	}
	if overlap.Load() {
		t.Error("notify calls overlapped")
	}
}

// TestStackCloseWakesBlocked closes the stack under sockets blocked in
// accept and read: they return instead of hanging.
func TestStackCloseWakesBlocked(t *testing.T) {
	st, err := netstack.New(netstack.Config{NoSLAAC: true, NoDAD: true})
	if err != nil {
		t.Fatal(err)
	}
	lo := New(st)
	ctx := ctxT(t)
	ln, laddr := listenOn(t, lo, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:0"))
	c := mustSocket(t, lo, unix.AF_INET, unix.SOCK_STREAM, 0)
	must(t, "connect", c.Connect(ctx, sockaddr(unix.AF_INET, laddr)))
	type result struct {
		what string
		n    int
		e    unix.Errno
	}
	res := make(chan result, 2)
	go func() { n, e := c.Read(ctx, make([]byte, 1)); res <- result{"read", n, e} }()
	go func() {
		// The queued connection first, then a wait.
		if s, _, e := ln.Accept(ctx, 0); e == 0 {
			s.Close(ctx)
		}
		_, _, e := ln.Accept(ctx, 0)
		res <- result{"accept", 0, e}
	}()
	time.Sleep(20 * time.Millisecond)
	st.Close()
	for i := 0; i < 2; i++ {
		select {
		case r := <-res:
			// A read may see end of file or an error; accept an error.
			if r.n != 0 || (r.what == "accept" && r.e == 0) {
				t.Errorf("%s after the stack closed: %d, %v", r.what, r.n, r.e)
			}
			t.Logf("%s: %d, %v", r.what, r.n, r.e)
		case <-time.After(5 * time.Second):
			t.Fatal("a blocked call did not return after the stack closed")
		}
	}
}
