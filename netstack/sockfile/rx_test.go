package sockfile

import (
	"bytes"
	"net/netip"
	"runtime"
	"testing"

	"github.com/unikgo/unikgo/kernel/serve"
	"golang.org/x/sys/unix"
)

// tcpPair connects non-blocking TCP sockets: client cl to sv, accepted on
// listener ln.
func (f *fixture) tcpPair(ln, cl, sv serve.Obj) {
	f.t.Helper()
	f.ok("socket", unix.SYS_SOCKET, provider, ln, false, unix.AF_INET, unix.SOCK_STREAM, 0)
	sa := sockaddr4(netip.MustParseAddrPort("127.0.0.1:0"))
	f.ok("bind", unix.SYS_BIND, ln, -1, false, bufAddr(sa), uintptr(len(sa)))
	f.ok("listen", unix.SYS_LISTEN, ln, -1, false, 16)
	f.ok("socket", unix.SYS_SOCKET, provider, cl, false, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	dst := sockaddr4(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(f.rd.name(ln, false))))
	if v := f.call(unix.SYS_CONNECT, cl, -1, true, bufAddr(dst), uintptr(len(dst))); v != -int64(unix.EINPROGRESS) && v != 0 {
		f.t.Fatalf("connect: %d", v)
	}
	f.rd.wait(f.t, ln, unix.EPOLLIN, 0)
	f.ok("accept4", unix.SYS_ACCEPT4, ln, sv, false, 0, 0, unix.SOCK_NONBLOCK)
	f.rd.wait(f.t, cl, unix.EPOLLOUT, 0)
}

// kernelRead is read(2) as the kernel answers it on a socket with a
// receive ring: from the ring while it holds bytes (telling the server
// when it waited for space), else forwarded. It reports whether the ring
// answered, and whether it told the server of space.
func (f *fixture) kernelRead(o serve.Obj, buf []byte) (v int64, ring, space bool) {
	if ring := f.rd.ring(o); ring != nil {
		if n, space := ring.Take([][]byte{buf}, false); n > 0 {
			if space {
				r := serve.Request{ID: 1<<63 | 1<<61 | uint64(o), Sysno: unix.SYS_READ, Obj: o, New: -1, RxSpace: true}
				if v := f.srv.Handle(&r); v != 0 {
					f.t.Errorf("RxSpace: %d", v)
				}
			}
			return int64(n), true, space
		}
	}
	return f.call(unix.SYS_READ, o, -1, true, bufAddr(buf), uintptr(len(buf))), false, false
}

// TestRxRing reads 200 KiB, more than six ring-fulls, in every way a
// program may, mixed: reads the kernel answers from the ring, reads it
// forwards, readv, recvfrom with MSG_PEEK and with MSG_WAITALL, FIONREAD.
// The bytes must come out in order, the ring must have answered and been
// refilled after filling up, and the end of the stream must come after
// the last byte.
func TestRxRing(t *testing.T) {
	f := newFixture(t)
	const ln, cl, sv = 10, 11, 12
	f.tcpPair(ln, cl, sv)
	want := make([]byte, 200<<10)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	for off := 0; off < len(want); {
		f.rd.wait(t, cl, unix.EPOLLOUT, 0)
		v := f.call(unix.SYS_WRITE, cl, -1, true, bufAddr(want[off:]), uintptr(len(want)-off))
		if v < 0 && v != -int64(unix.EAGAIN) {
			t.Fatalf("write: %v", unix.Errno(-v))
		}
		off += int(max(v, 0))
	}
	f.ok("shutdown", unix.SYS_SHUTDOWN, cl, -1, true, unix.SHUT_WR)

	var got []byte
	var fromRing, spaces int
	buf := make([]byte, 8<<10)
	for i := 0; ; i++ {
		f.rd.wait(t, sv, unix.EPOLLIN, 0)
		var v int64
		switch i % 5 {
		case 0, 1, 2:
			var ring, space bool
			v, ring, space = f.kernelRead(sv, buf)
			if ring {
				fromRing++
			}
			if space {
				spaces++
			}
			if v > 0 {
				got = append(got, buf[:v]...)
			}
		case 3:
			a, b := make([]byte, 1000), make([]byte, 3000)
			iov := []uintptr{bufAddr(a), uintptr(len(a)), bufAddr(b), uintptr(len(b))}
			v = f.call(unix.SYS_READV, sv, -1, true, addr(&iov[0]), 2)
			runtime.KeepAlive(iov)
			if v > 0 {
				got = append(got, append(a, b...)[:v]...)
			}
		case 4:
			inq := new(int32)
			f.ok("FIONREAD", unix.SYS_IOCTL, sv, -1, true, ioctlFIONREAD, addr(inq))
			if left := len(want) - len(got); *inq > int32(left) || *inq == 0 && left > 0 {
				t.Fatalf("FIONREAD %d with %d bytes left", *inq, left)
			}
			peek := make([]byte, 5000)
			p := f.call(unix.SYS_RECVFROM, sv, -1, true, bufAddr(peek), uintptr(len(peek)), unix.MSG_PEEK, 0, 0)
			if p < 0 || int(p) > len(want)-len(got) {
				t.Fatalf("recvfrom MSG_PEEK: %d with %d bytes left", p, len(want)-len(got))
			}
			n := min(3000, len(want)-len(got))
			all := make([]byte, n)
			v = f.call(unix.SYS_RECVFROM, sv, -1, true, bufAddr(all), uintptr(n), unix.MSG_WAITALL, 0, 0)
			if v != int64(n) {
				t.Fatalf("recvfrom MSG_WAITALL of %d: %d", n, v)
			}
			if !bytes.Equal(peek[:min(p, v)], all[:min(p, v)]) {
				t.Fatalf("MSG_PEEK saw bytes the next recvfrom did not get")
			}
			got = append(got, all...)
		}
		if v == 0 {
			break
		}
		if v < 0 && v != -int64(unix.EAGAIN) {
			t.Fatalf("receive %d: %v", i%5, unix.Errno(-v))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("read %d bytes before the end of the stream, want %d", len(got), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("byte %d differs: %#x, want %#x", i, got[i], want[i])
	}
	if ring := f.rd.ring(sv); ring == nil || fromRing == 0 || spaces == 0 {
		t.Errorf("ring attached %v, answered %d reads, reported space %d times; want it to answer some, and to fill up", ring != nil, fromRing, spaces)
	}
	if ring := f.rd.ring(cl); ring != nil {
		t.Error("a ring attached to a socket that never received")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestRxRingCloseResets: a socket closed while its ring holds bytes the
// program never read resets the connection, as Linux does, though the
// socket itself holds none of them.
func TestRxRingCloseResets(t *testing.T) {
	for _, unread := range []bool{true, false} {
		f := newFixture(t)
		const ln, cl, sv = 10, 11, 12
		f.tcpPair(ln, cl, sv)
		msg := []byte("never read")
		if v := f.call(unix.SYS_WRITE, cl, -1, true, bufAddr(msg), uintptr(len(msg))); v != int64(len(msg)) {
			t.Fatalf("write: %d", v)
		}
		f.rd.wait(t, sv, unix.EPOLLIN, 0)
		if !unread {
			buf := make([]byte, 64)
			if v, _, _ := f.kernelRead(sv, buf); v != int64(len(msg)) {
				t.Fatalf("read: %d", v)
			}
		} else if ring := f.rd.ring(sv); ring == nil || ring.Len() != len(msg) {
			t.Fatalf("the ring does not hold the %d bytes written", len(msg))
		}
		f.ok("close", unix.SYS_CLOSE, sv, -1, true)
		f.rd.wait(t, cl, unix.EPOLLIN, 0)
		buf := make([]byte, 64)
		v := f.call(unix.SYS_READ, cl, -1, true, bufAddr(buf), uintptr(len(buf)))
		want := int64(0) // FIN: end of stream
		if unread {
			want = -int64(unix.ECONNRESET)
		}
		if v != want {
			t.Errorf("unread bytes %v: the peer's read after close = %d, want %d", unread, v, want)
		}
	}
}
