package sockfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/kernel/serve"
	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/socket"
	"golang.org/x/sys/unix"
)

// readiness records what the server reports, as the kernel's epoll would
// keep it.
type readiness struct {
	mu    sync.Mutex
	ev    map[serve.Obj]uint32
	exact map[serve.Obj]bool
	names map[serve.Obj][2][]byte
	rings map[serve.Obj]*serve.RxRing
	chg   chan struct{}
}

func (r *readiness) Attach(o serve.Obj, ring *serve.RxRing) error {
	r.mu.Lock()
	r.rings[o] = ring
	r.mu.Unlock()
	return nil
}

// ring returns the receive ring attached to o, or nil.
func (r *readiness) ring(o serve.Obj) *serve.RxRing {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rings[o]
}

func (r *readiness) Names(o serve.Obj, sock, peer []byte) error {
	r.mu.Lock()
	r.names[o] = [2][]byte{bytes.Clone(sock), bytes.Clone(peer)}
	r.mu.Unlock()
	return nil
}

func (r *readiness) name(o serve.Obj, peer bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if peer {
		return r.names[o][1]
	}
	return r.names[o][0]
}

func (r *readiness) Ready(o serve.Obj, ev uint32, exact bool) error {
	r.mu.Lock()
	r.ev[o], r.exact[o] = ev, exact
	r.mu.Unlock()
	select {
	case r.chg <- struct{}{}:
	default:
	}
	return nil
}

func (r *readiness) isExact(o serve.Obj) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exact[o]
}

// get returns o's readiness as the kernel's epoll sees it: what the
// server reported, and EPOLLIN while o's receive ring holds bytes.
func (r *readiness) get(o serve.Obj) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ring := r.rings[o]; ring != nil && ring.Len() > 0 {
		return r.ev[o] | unix.EPOLLIN
	}
	return r.ev[o]
}

// wait waits until o's reported readiness has all of want and none of
// not.
func (r *readiness) wait(t *testing.T, o serve.Obj, want, not uint32) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if ev := r.get(o); ev&want == want && ev&not == 0 {
			return
		}
		select {
		case <-r.chg:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("object %d: readiness %#x, want %#x without %#x", o, r.get(o), want, not)
		}
	}
}

type fixture struct {
	t   *testing.T
	srv *Server
	rd  *readiness
}

const provider serve.Obj = 1

// udpPair makes UDP sockets a and b bound to loopback and returns b's
// address.
func (f *fixture) udpPair(a, b serve.Obj) []byte {
	for _, o := range []serve.Obj{a, b} {
		f.ok("socket", unix.SYS_SOCKET, provider, o, false, unix.AF_INET, unix.SOCK_DGRAM, 0)
		sa := sockaddr4(netip.MustParseAddrPort("127.0.0.1:0"))
		f.ok("bind", unix.SYS_BIND, o, -1, false, bufAddr(sa), uintptr(len(sa)))
	}
	bAddr := make([]byte, 16)
	bLen := new(int32)
	*bLen = 16
	f.ok("getsockname", unix.SYS_GETSOCKNAME, b, -1, false, bufAddr(bAddr), addr(bLen))
	return bAddr
}

func newFixture(t *testing.T) *fixture {
	st, err := netstack.New(netstack.Config{NoSLAAC: true, NoDAD: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rd := &readiness{ev: make(map[serve.Obj]uint32), exact: make(map[serve.Obj]bool), names: make(map[serve.Obj][2][]byte), rings: make(map[serve.Obj]*serve.RxRing), chg: make(chan struct{}, 1)}
	return &fixture{t: t, srv: New(ctx, socket.New(st), rd), rd: rd}
}

// call forwards sysno on obj as the kernel would; args follow the
// descriptor argument.
func (f *fixture) call(sysno uintptr, obj, nw serve.Obj, nonblock bool, args ...uintptr) int64 {
	r := serve.Request{ID: 7, Sysno: sysno, Obj: obj, New: nw, Nonblock: nonblock}
	if sysno == unix.SYS_SOCKET {
		// The kernel queues socket creations with no thread waiting.
		r.ID = 1<<63 | 1<<62 | uint64(nw)
		copy(r.Args[:], args)
	} else {
		copy(r.Args[1:], args) // Args[0] is the descriptor, which the server ignores
	}
	return f.srv.Handle(&r)
}

// ok is call that must succeed.
func (f *fixture) ok(what string, sysno uintptr, obj, nw serve.Obj, nonblock bool, args ...uintptr) int64 {
	f.t.Helper()
	v := f.call(sysno, obj, nw, nonblock, args...)
	if v < 0 {
		f.t.Fatalf("%s: %v", what, unix.Errno(-v))
	}
	return v
}

func addr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func bufAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func sockaddr4(ap netip.AddrPort) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:], a[:])
	return b
}

func port(sa []byte) uint16 { return binary.BigEndian.Uint16(sa[2:]) }

// TestTCP runs a connection through the system-call interface: socket,
// bind, listen, getsockname, a non-blocking connect completing through
// readiness, accept4 with the peer's address, SO_ERROR, writev, FIONREAD,
// recvfrom, readiness falling after the queue drains, shutdown and EOF,
// fstat, and close.
func TestTCP(t *testing.T) {
	f := newFixture(t)
	const ln, cl, sv = 10, 11, 12
	f.ok("socket", unix.SYS_SOCKET, provider, ln, false, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	sa := sockaddr4(netip.MustParseAddrPort("127.0.0.1:0"))
	f.ok("bind", unix.SYS_BIND, ln, -1, false, bufAddr(sa), uintptr(len(sa)))
	f.ok("listen", unix.SYS_LISTEN, ln, -1, false, 16)
	got := make([]byte, 32)
	gotLen := new(int32)
	*gotLen = int32(len(got))
	f.ok("getsockname", unix.SYS_GETSOCKNAME, ln, -1, false, bufAddr(got), addr(gotLen))
	if *gotLen != 16 || port(got) == 0 {
		t.Fatalf("getsockname: length %d, port %d", *gotLen, port(got))
	}
	lport := port(got)
	// The kernel answers getsockname from what the server reported.
	if diff := cmp.Diff(got[:16], f.rd.name(ln, false)); diff != "" {
		t.Errorf("reported address differs from getsockname (-got +reported):\n%s", diff)
	}
	if p := f.rd.name(ln, true); len(p) != 0 {
		t.Errorf("listener reported peer %x", p)
	}

	// A non-blocking accept with nothing queued.
	if v := f.call(unix.SYS_ACCEPT4, ln, 13, true, 0, 0, unix.SOCK_NONBLOCK); v != -int64(unix.EAGAIN) {
		t.Fatalf("accept4 on an empty queue: %d, want EAGAIN", v)
	}

	f.ok("socket", unix.SYS_SOCKET, provider, cl, false, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	dst := sockaddr4(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lport))
	if v := f.call(unix.SYS_CONNECT, cl, -1, true, bufAddr(dst), uintptr(len(dst))); v != -int64(unix.EINPROGRESS) && v != 0 {
		t.Fatalf("non-blocking connect: %d, want EINPROGRESS", v)
	}
	f.rd.wait(t, cl, unix.EPOLLOUT, 0)
	f.rd.wait(t, ln, unix.EPOLLIN, 0)
	soErr := new(int32)
	soLen := new(int32)
	*soErr, *soLen = -1, 4
	f.ok("getsockopt", unix.SYS_GETSOCKOPT, cl, -1, true, unix.SOL_SOCKET, unix.SO_ERROR, addr(soErr), addr(soLen))
	if *soErr != 0 || *soLen != 4 {
		t.Fatalf("SO_ERROR %d (length %d), want 0", *soErr, *soLen)
	}

	peer := make([]byte, 8) // shorter than the address: truncated, full length stored
	peerLen := new(int32)
	*peerLen = int32(len(peer))
	f.ok("accept4", unix.SYS_ACCEPT4, ln, sv, false, bufAddr(peer), addr(peerLen), unix.SOCK_NONBLOCK)
	if *peerLen != 16 || binary.LittleEndian.Uint16(peer) != unix.AF_INET || peer[4] != 127 {
		t.Fatalf("accept4 peer %x, length %d", peer, *peerLen)
	}
	f.rd.wait(t, ln, 0, unix.EPOLLIN)
	if p := f.rd.name(sv, true); len(p) != 16 || port(p) != port(f.rd.name(cl, false)) {
		t.Errorf("accepted socket's reported peer %x, client's address %x", p, f.rd.name(cl, false))
	}
	if p := f.rd.name(cl, true); len(p) != 16 || port(p) != lport {
		t.Errorf("client's reported peer %x, want port %d", p, lport)
	}
	if ev := f.rd.get(sv); ev&unix.EPOLLOUT == 0 {
		t.Errorf("accepted socket reported %#x at once, want EPOLLOUT", ev)
	}
	// A connected socket's readiness is exact (the kernel may answer
	// EAGAIN itself); a listener's is not (its reads fail, ENOTCONN).
	if !f.rd.isExact(sv) || !f.rd.isExact(cl) || f.rd.isExact(ln) {
		t.Errorf("readiness reported exact: accepted %v, client %v, listener %v; want true, true, false", f.rd.isExact(sv), f.rd.isExact(cl), f.rd.isExact(ln))
	}

	a, b := []byte("hello, "), []byte("world")
	iov := []uintptr{bufAddr(a), uintptr(len(a)), bufAddr(b), uintptr(len(b))}
	if n := f.ok("writev", unix.SYS_WRITEV, cl, -1, true, addr(&iov[0]), 2); n != 12 {
		t.Fatalf("writev wrote %d, want 12", n)
	}
	f.rd.wait(t, sv, unix.EPOLLIN, 0)
	inq := new(int32)
	f.ok("FIONREAD", unix.SYS_IOCTL, sv, -1, true, ioctlFIONREAD, addr(inq))
	if *inq != 12 {
		t.Errorf("FIONREAD %d, want 12", *inq)
	}
	in := make([]byte, 64)
	n := f.ok("recvfrom", unix.SYS_RECVFROM, sv, -1, true, bufAddr(in), uintptr(len(in)), 0, 0, 0)
	if diff := cmp.Diff("hello, world", string(in[:n])); diff != "" {
		t.Errorf("recvfrom (-want +got):\n%s", diff)
	}
	// The read drained the queue: readiness falls, and a read would block.
	if ev := f.rd.get(sv); ev&unix.EPOLLIN != 0 {
		t.Errorf("readiness %#x after draining, want no EPOLLIN", ev)
	}
	if v := f.call(unix.SYS_READ, sv, -1, true, bufAddr(in), uintptr(len(in))); v != -int64(unix.EAGAIN) {
		t.Errorf("read of an empty socket: %d, want EAGAIN", v)
	}

	f.ok("shutdown", unix.SYS_SHUTDOWN, cl, -1, true, unix.SHUT_WR)
	f.rd.wait(t, sv, unix.EPOLLIN|unix.EPOLLRDHUP, 0)
	if f.rd.isExact(sv) {
		t.Error("readiness reported exact after the peer's shutdown (CLOSE-WAIT)")
	}
	if v := f.call(unix.SYS_READ, sv, -1, true, bufAddr(in), uintptr(len(in))); v != 0 {
		t.Errorf("read after the peer's shutdown: %d, want 0 (EOF)", v)
	}

	var st unix.Stat_t
	f.ok("fstat", unix.SYS_FSTAT, sv, -1, true, addr(&st))
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Errorf("fstat mode %#o, want S_IFSOCK", st.Mode)
	}
	if v := f.call(unix.SYS_LSEEK, sv, -1, true, 0, 0); v != -int64(unix.ESPIPE) {
		t.Errorf("lseek: %d, want ESPIPE", v)
	}

	for _, o := range []serve.Obj{cl, sv, ln} {
		r := serve.Request{ID: 1<<63 | uint64(o), Sysno: unix.SYS_CLOSE, Obj: o, New: -1}
		if v := f.srv.Handle(&r); v != 0 {
			t.Errorf("close %d: %d", o, v)
		}
	}
	if v := f.call(unix.SYS_READ, sv, -1, true, bufAddr(in), uintptr(len(in))); v != -int64(unix.EBADF) {
		t.Errorf("read after close: %d, want EBADF", v)
	}
	runtime.KeepAlive(iov)
}

// TestUDP sends and receives datagrams with sendmsg and recvmsg (names,
// iovecs, MSG_TRUNC in msg_flags), sendto and recvfrom, and sendmmsg and
// recvmmsg.
func TestUDP(t *testing.T) {
	f := newFixture(t)
	const a, b = 20, 21
	bAddr := f.udpPair(a, b)

	payload := []byte("0123456789")
	if n := f.ok("sendto", unix.SYS_SENDTO, a, -1, false, bufAddr(payload), 10, 0, bufAddr(bAddr), 16); n != 10 {
		t.Fatalf("sendto: %d", n)
	}
	f.rd.wait(t, b, unix.EPOLLIN, 0)
	// A 4-byte buffer: the datagram is cut and MSG_TRUNC set.
	small := make([]byte, 4)
	iov := []uintptr{bufAddr(small), 4}
	from := make([]byte, 16)
	m := &unix.Msghdr{Name: &from[0], Namelen: 16, Iov: (*unix.Iovec)(unsafe.Pointer(&iov[0])), Iovlen: 1, Controllen: 99}
	if n := f.ok("recvmsg", unix.SYS_RECVMSG, b, -1, false, addr(m), 0); n != 4 || string(small) != "0123" {
		t.Fatalf("recvmsg: %d %q", n, small)
	}
	if m.Flags&unix.MSG_TRUNC == 0 || m.Namelen != 16 || m.Controllen != 0 || port(from) == 0 {
		t.Errorf("recvmsg: flags %#x, namelen %d, controllen %d, from %x", m.Flags, m.Namelen, m.Controllen, from)
	}

	// sendmmsg of two datagrams, recvmmsg of both.
	p1, p2 := []byte("first"), []byte("second!")
	iovs := []uintptr{bufAddr(p1), uintptr(len(p1)), bufAddr(p2), uintptr(len(p2))}
	out := make([]unix.Mmsghdr, 2)
	for i := range out {
		out[i].Hdr = unix.Msghdr{Name: &bAddr[0], Namelen: 16, Iov: (*unix.Iovec)(unsafe.Pointer(&iovs[2*i])), Iovlen: 1}
	}
	if n := f.ok("sendmmsg", unix.SYS_SENDMMSG, a, -1, false, addr(&out[0]), 2, 0); n != 2 || out[0].Len != 5 || out[1].Len != 7 {
		t.Fatalf("sendmmsg: %d, lengths %d %d", n, out[0].Len, out[1].Len)
	}
	bufs := [][]byte{make([]byte, 16), make([]byte, 16)}
	riov := []uintptr{bufAddr(bufs[0]), 16, bufAddr(bufs[1]), 16}
	in := make([]unix.Mmsghdr, 2)
	for i := range in {
		in[i].Hdr = unix.Msghdr{Iov: (*unix.Iovec)(unsafe.Pointer(&riov[2*i])), Iovlen: 1}
	}
	got := 0
	for got < 2 {
		f.rd.wait(t, b, unix.EPOLLIN, 0)
		n := f.ok("recvmmsg", unix.SYS_RECVMMSG, b, -1, true, addr(&in[got]), uintptr(2-got), unix.MSG_DONTWAIT, 0)
		got += int(n)
	}
	if diff := cmp.Diff([]string{"first", "second!"}, []string{string(bufs[0][:in[0].Len]), string(bufs[1][:in[1].Len])}); diff != "" {
		t.Errorf("recvmmsg (-want +got):\n%s", diff)
	}
	runtime.KeepAlive(iov)
	runtime.KeepAlive(iovs)
	runtime.KeepAlive(riov)
}

// TestRecvmmsgBlocking: on a blocking socket, recvmmsg with
// MSG_WAITFORONE returns after the first datagram, and with a timeout it
// returns once the timeout has passed after a datagram, writing back the
// time left (none); a bad timeout is EINVAL. A second datagram comes two
// seconds later, so an implementation that waits for it returns 2.
func TestRecvmmsgBlocking(t *testing.T) {
	f := newFixture(t)
	const a, b = 30, 31
	bAddr := f.udpPair(a, b)
	send := func(p string) {
		if n := f.ok("sendto", unix.SYS_SENDTO, a, -1, false, bufAddr([]byte(p)), uintptr(len(p)), 0, bufAddr(bAddr), 16); n != int64(len(p)) {
			t.Errorf("sendto: %d", n)
		}
	}
	bufs := [][]byte{make([]byte, 16), make([]byte, 16)}
	riov := []uintptr{bufAddr(bufs[0]), 16, bufAddr(bufs[1]), 16}
	in := make([]unix.Mmsghdr, 2)
	for i := range in {
		in[i].Hdr = unix.Msghdr{Iov: (*unix.Iovec)(unsafe.Pointer(&riov[2*i])), Iovlen: 1}
	}
	for _, c := range []struct {
		name  string
		flags uintptr
		ts    *unix.Timespec
	}{
		{"MSG_WAITFORONE", unix.MSG_WAITFORONE, nil},
		{"timeout 0", 0, &unix.Timespec{}},
	} {
		send("one")
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(2 * time.Second)
			send("two")
		}()
		var tp uintptr
		if c.ts != nil {
			tp = addr(c.ts)
		}
		n := f.ok("recvmmsg "+c.name, unix.SYS_RECVMMSG, b, -1, false, addr(&in[0]), 2, c.flags, tp)
		if n != 1 || string(bufs[0][:in[0].Len]) != "one" {
			t.Errorf("recvmmsg %s: %d messages, first %q; want 1, \"one\"", c.name, n, bufs[0][:in[0].Len])
		}
		if c.ts != nil && (c.ts.Sec != 0 || c.ts.Nsec != 0) {
			t.Errorf("recvmmsg %s: time left %v, want 0", c.name, *c.ts)
		}
		<-done
		f.call(unix.SYS_RECVFROM, b, -1, true, bufAddr(bufs[1]), 16, 0, 0, 0) // "two", if still there
	}
	bad := unix.Timespec{Nsec: 1e9}
	if v := f.call(unix.SYS_RECVMMSG, b, -1, false, addr(&in[0]), 2, 0, addr(&bad)); v != -int64(unix.EINVAL) {
		t.Errorf("recvmmsg with tv_nsec 1e9: %d, want EINVAL", v)
	}
	runtime.KeepAlive(riov)
}

// TestBadArguments: bad pointers give EFAULT without crashing the
// program, bad lengths EINVAL, unknown objects EBADF, unknown ioctls
// ENOTTY.
func TestBadArguments(t *testing.T) {
	f := newFixture(t)
	const s = 30
	f.ok("socket", unix.SYS_SOCKET, provider, s, false, unix.AF_INET, unix.SOCK_DGRAM, 0)
	sa := sockaddr4(netip.MustParseAddrPort("127.0.0.1:0"))
	f.ok("bind", unix.SYS_BIND, s, -1, false, bufAddr(sa), uintptr(len(sa)))
	saLen := new(int32)
	*saLen = 16
	f.ok("getsockname", unix.SYS_GETSOCKNAME, s, -1, false, bufAddr(sa), addr(saLen)) // its own port: a valid destination
	const unmapped = 0x10                                                             // page 0 is never mapped
	huge := uintptr(1) << 40
	tests := []struct {
		name  string
		sysno uintptr
		obj   serve.Obj
		args  []uintptr
		want  unix.Errno
	}{
		{"bind from page 0", unix.SYS_BIND, s, []uintptr{unmapped, 16}, unix.EFAULT},
		{"bind with a huge length", unix.SYS_BIND, s, []uintptr{bufAddr(sa), huge}, unix.EINVAL},
		{"sendto from page 0", unix.SYS_SENDTO, s, []uintptr{unmapped, 10, 0, bufAddr(sa), 16}, unix.EFAULT},
		{"sendmsg of page 0", unix.SYS_SENDMSG, s, []uintptr{unmapped, 0}, unix.EFAULT},
		{"writev with too many vectors", unix.SYS_WRITEV, s, []uintptr{unmapped, serve.MaxIOV + 1}, unix.EINVAL},
		{"getsockname to page 0", unix.SYS_GETSOCKNAME, s, []uintptr{unmapped, unmapped}, unix.EFAULT},
		{"getsockopt without a length", unix.SYS_GETSOCKOPT, s, []uintptr{unix.SOL_SOCKET, unix.SO_ERROR, unmapped, 0}, unix.EFAULT},
		{"unknown ioctl", unix.SYS_IOCTL, s, []uintptr{0x1234, 0}, unix.ENOTTY},
		{"pread", unix.SYS_PREAD64, s, []uintptr{0, 0, 0}, unix.ESPIPE},
		{"an object that is not a socket", unix.SYS_READ, 99, []uintptr{0, 0}, unix.EBADF},
		{"socket of an unknown family", unix.SYS_SOCKET, provider, []uintptr{unix.AF_PACKET, unix.SOCK_RAW, 0}, unix.EAFNOSUPPORT},
		// The socket the kernel installed for it answers the error.
		{"a call on the socket that could not be made", unix.SYS_LISTEN, 31, []uintptr{1}, unix.EAFNOSUPPORT},
	}
	for _, tt := range tests {
		if v := f.call(tt.sysno, tt.obj, 31, false, tt.args...); v != -int64(tt.want) {
			t.Errorf("%s: %d, want %v", tt.name, v, tt.want)
		}
	}
	// The socket still works.
	p := []byte("x")
	if n := f.ok("sendto", unix.SYS_SENDTO, s, -1, false, bufAddr(p), 1, 0, bufAddr(sa), 16); n != 1 {
		t.Errorf("sendto after the bad calls: %d", n)
	}
}
