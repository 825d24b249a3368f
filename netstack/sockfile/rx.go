package sockfile

import (
	"context"
	"runtime"

	"github.com/unikgo/unikgo/kernel/serve"
	"github.com/unikgo/unikgo/netstack/socket"
	"golang.org/x/sys/unix"
)

// Receive rings: once a TCP socket first holds bytes, the server hands
// the kernel a serve.RxRing for it and keeps it filled from the socket, so
// that the program's read(2) calls are answered in the kernel without a
// round trip through this server. Bytes stay in order because the ring is
// filled only under rxMu, and every receive call that reaches the server
// (under rxMu too) takes what the ring holds before it asks the socket; the
// kernel forwards a read only when the ring is empty. Readiness stays
// right because the socket's own events (what report sends) still say
// when it holds bytes, and the kernel adds EPOLLIN while the ring does.
//
// The ring is filled when the socket's readiness changes (new bytes),
// after each receive call the server answers, and when the kernel reports
// that the program made space in a ring that had filled up (RxSpace).
// Bytes are moved only while the socket reports them queued, so an error
// or the end of the stream is never taken by a fill: the program meets it
// through a forwarded read once the ring is empty.

// ringable reports whether s gets a receive ring: a TCP socket, whose
// bytes carry no boundaries for a ring to lose.
func ringable(s *socket.Socket) bool {
	return s.Type() == unix.SOCK_STREAM && (s.Family() == unix.AF_INET || s.Family() == unix.AF_INET6)
}

// refill fills k's ring if no receive call is under way; one that is fills
// it when it ends.
func (k *sock) refill() {
	if !k.stream || !k.rxMu.TryLock() {
		return
	}
	defer k.rxMu.Unlock()
	k.fillLocked()
}

// fillLocked moves the bytes queued on k's socket into its ring, attaching
// a ring first if it has none, and reports the socket readable if the
// ring was empty (the program's epoll waits for an edge).
//
// +checklocks:k.rxMu
func (k *sock) fillLocked() {
	if !k.stream || k.noRing {
		return
	}
	queued, e := k.s.InQueue()
	if e != 0 || queued == 0 {
		return
	}
	rx := k.rx.Load()
	if rx == nil {
		rx = new(serve.RxRing)
		// Under mu, and not once closed: the close's reply frees the
		// object, which the kernel may hand to another socket at once.
		k.mu.Lock()
		var err error = unix.EBADF
		if !k.dead {
			err = k.rd.Attach(k.obj, rx)
		}
		k.mu.Unlock()
		if err != nil {
			k.noRing = true
			return
		}
		k.rx.Store(rx)
	}
	moved := 0
	for queued > 0 {
		a, b := rx.Free()
		if len(a) == 0 {
			// Full: ask the consumers to say when they make space, then
			// look again, as one may have just before we asked.
			rx.Want.Store(1)
			if a, b = rx.Free(); len(a) == 0 {
				break
			}
		}
		n, _, _, e := k.s.RecvMsg(context.Background(), [][]byte{a, b}, unix.MSG_DONTWAIT)
		if e != 0 || n == 0 {
			break
		}
		rx.Put(n)
		moved += n
		if queued, e = k.s.InQueue(); e != 0 {
			break
		}
	}
	// Every fill that moved bytes is an edge for the program's epoll:
	// the kernel may have emptied the ring and answered EAGAIN while
	// this fill ran, and the socket's own events did not change.
	if moved > 0 {
		k.report(k.rd, false, true)
	}
}

// recv is RecvMsg on k's socket, taking what its ring holds first: all
// of a read's answer when the ring holds any, and for MSG_WAITALL and
// MSG_PEEK the ring's bytes followed by the socket's.
//
// A non-blocking call that finds a blocking receive call under way
// (waiting in the socket for bytes, with rxMu held) answers EAGAIN rather
// than wait for it: it may run on the serving goroutine, which answers
// every other socket's calls too, and the bytes would go to that other
// call anyway. A fill, which holds rxMu only briefly, it waits for: an
// EAGAIN then, with bytes in the ring, would leave the program waiting
// for an edge that a fill moving nothing never sends.
func (k *sock) recv(ctx context.Context, iov [][]byte, flags int) (int, []byte, int, unix.Errno) {
	if !k.stream {
		return k.s.RecvMsg(ctx, iov, flags)
	}
	blocking := !k.s.Nonblock() && flags&unix.MSG_DONTWAIT == 0
	if blocking {
		k.rxMu.Lock()
	} else {
		for !k.rxMu.TryLock() {
			if k.rxBlocked.Load() {
				return 0, nil, 0, unix.EAGAIN
			}
			runtime.Gosched()
		}
	}
	defer k.rxMu.Unlock()
	defer k.fillLocked()
	rx := k.rx.Load()
	if rx == nil || flags&(unix.MSG_OOB|unix.MSG_ERRQUEUE) != 0 {
		return k.sockRecv(ctx, iov, flags, blocking)
	}
	total := socket.IOVLen(iov)
	dst := iov
	if flags&unix.MSG_TRUNC != 0 {
		// A stream's MSG_TRUNC discards the bytes.
		dst = [][]byte{make([]byte, min(total, serve.RxRingSize))}
	}
	n, _ := rx.Take(dst, flags&unix.MSG_PEEK != 0)
	if n == 0 {
		return k.sockRecv(ctx, iov, flags, blocking)
	}
	if n == total || flags&(unix.MSG_WAITALL|unix.MSG_PEEK) == 0 {
		return n, nil, 0, 0
	}
	if flags&unix.MSG_PEEK != 0 {
		flags |= unix.MSG_DONTWAIT // the ring's bytes are an answer already
	}
	m, _, _, e := k.sockRecv(ctx, skip(iov, n), flags, blocking)
	if e != 0 {
		return n, nil, 0, 0 // the error waits for the next call
	}
	return n + m, nil, 0, 0
}

// sockRecv is RecvMsg on k's socket itself, marking rxBlocked while a
// blocking call may wait there.
//
// +checklocks:k.rxMu
func (k *sock) sockRecv(ctx context.Context, iov [][]byte, flags int, blocking bool) (int, []byte, int, unix.Errno) {
	if blocking {
		k.rxBlocked.Store(true)
		defer k.rxBlocked.Store(false)
	}
	return k.s.RecvMsg(ctx, iov, flags)
}

// inQueue is FIONREAD: the bytes the ring and the socket hold. A fill
// moves bytes from one to the other, so both are read under rxMu; if a
// receive call holds it, the ring is read first, and a fill between the
// two reads makes the count short, never long.
func (k *sock) inQueue() (int, unix.Errno) {
	if k.rxMu.TryLock() {
		defer k.rxMu.Unlock()
	}
	n := 0
	if rx := k.rx.Load(); rx != nil {
		n = rx.Len()
	}
	m, e := k.s.InQueue()
	return n + m, e
}

// skip returns iov without its first n bytes.
func skip(iov [][]byte, n int) [][]byte {
	for len(iov) > 0 && n >= len(iov[0]) {
		n -= len(iov[0])
		iov = iov[1:]
	}
	if len(iov) == 0 {
		return nil
	}
	out := append([][]byte{iov[0][n:]}, iov[1:]...)
	return out
}
