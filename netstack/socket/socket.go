// Package socket gives a netstack.Stack the socket system calls of Linux,
// in Linux's own terms: sockaddr structures as bytes, socket option values
// as bytes, flags and errnos with Linux's values, and epoll readiness bits.
// A kernel that forwards a program's socket(2), bind(2), connect(2)...
// calls to Go code hands their arguments to a Socket and returns what it
// answers; the program's Go net package (or C library) sees Linux.
//
// AF_INET and AF_INET6 sockets of type SOCK_STREAM (TCP), SOCK_DGRAM (UDP)
// and SOCK_DGRAM with IPPROTO_ICMP/IPPROTO_ICMPV6 (ping sockets) run on
// gVisor's endpoints; AF_NETLINK sockets of protocol NETLINK_ROUTE answer
// the link, address and route dumps that net.Interfaces and
// net.InterfaceAddrs make.
//
// Every call may be made from any goroutine. Calls that wait (a blocking
// socket's connect, accept, reads and writes) take a context: when it ends
// they return EINTR, as a signal would interrupt them; Close makes them
// return EBADF. SO_RCVTIMEO and SO_SNDTIMEO bound them as on Linux.
// Nothing here raises signals: a write to a closed connection returns
// EPIPE and the kernel decides about SIGPIPE (MSG_NOSIGNAL is its to read).
package socket

import (
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unikgo/unikgo/netstack"
	"golang.org/x/sys/unix"
)

// Sockets makes sockets on one stack.
type Sockets struct {
	st *netstack.Stack

	nlMu    sync.Mutex
	nlPorts map[uint32]*netlinkSock // +checklocks:nlMu; bound netlink port ids
	nlNext  int32                   // +checklocks:nlMu; next autobind port id
	pid     uint32
}

// New returns the socket layer of st.
func New(st *netstack.Stack) *Sockets {
	// Linux gives a process's first netlink socket its pid as port id,
	// later ones negative numbers from -4096 down.
	return &Sockets{st: st, nlPorts: make(map[uint32]*netlinkSock), nlNext: -4096, pid: uint32(os.Getpid())}
}

// Stack is the stack the sockets run on.
func (ss *Sockets) Stack() *netstack.Stack { return ss.st }

// Socket is one open socket: what a file descriptor of the program refers
// to.
type Socket struct {
	ss       *Sockets
	family   int
	stype    int
	protocol int
	cloexec  bool
	nonblock atomic.Bool

	// rcvTimeo and sndTimeo are SO_RCVTIMEO and SO_SNDTIMEO: 0 waits
	// forever, a negative value (a negative timeval was set) not at all.
	rcvTimeo atomic.Int64
	sndTimeo atomic.Int64

	// wakeMu guards the readiness broadcast: wake is closed (and
	// cleared) whenever readiness may have changed, waking operations
	// that wait; notify is the kernel's callback.
	wakeMu        sync.Mutex
	wake          chan struct{} // +checklocks:wakeMu; nil while nobody waits
	notify        func()        // +checklocks:wakeMu
	notifyPending bool          // +checklocks:wakeMu; runNotify is running
	notifyDirty   bool          // +checklocks:wakeMu; a change not yet notified

	closeOnce sync.Once
	closed    chan struct{}

	inet *inetSock
	nl   *netlinkSock
}

// Socket creates a socket as socket(2) does: typ may carry SOCK_NONBLOCK
// and SOCK_CLOEXEC. It supports AF_INET and AF_INET6 with SOCK_STREAM
// (protocol 0 or IPPROTO_TCP), SOCK_DGRAM (0 or IPPROTO_UDP) and ping
// sockets (SOCK_DGRAM with IPPROTO_ICMP for AF_INET, IPPROTO_ICMPV6 for
// AF_INET6), and AF_NETLINK with SOCK_RAW or SOCK_DGRAM and NETLINK_ROUTE.
func (ss *Sockets) Socket(domain, typ, proto int) (*Socket, unix.Errno) {
	flags := typ &^ 0xf
	typ &= 0xf
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return nil, unix.EINVAL
	}
	if typ < 1 || typ > unix.SOCK_PACKET {
		return nil, unix.EINVAL
	}
	s := newSocket(ss, domain, typ, flags)
	switch domain {
	case unix.AF_INET, unix.AF_INET6:
		is, proto, e := newInet(ss, s, domain, typ, proto)
		if e != 0 {
			return nil, e
		}
		s.protocol = proto
		s.inet = is
	case unix.AF_NETLINK:
		if typ != unix.SOCK_RAW && typ != unix.SOCK_DGRAM {
			return nil, unix.ESOCKTNOSUPPORT
		}
		if proto != unix.NETLINK_ROUTE {
			return nil, unix.EPROTONOSUPPORT
		}
		s.protocol = proto
		s.nl = newNetlink(ss, s)
	default:
		return nil, unix.EAFNOSUPPORT
	}
	return s, 0
}

func newSocket(ss *Sockets, family, stype, flags int) *Socket {
	s := &Socket{ss: ss, family: family, stype: stype, cloexec: flags&unix.SOCK_CLOEXEC != 0, closed: make(chan struct{})}
	s.nonblock.Store(flags&unix.SOCK_NONBLOCK != 0)
	return s
}

// Family, Type and Protocol are the socket's domain, type (without flags)
// and protocol, as SO_DOMAIN, SO_TYPE and SO_PROTOCOL report them.
func (s *Socket) Family() int   { return s.family }
func (s *Socket) Type() int     { return s.stype }
func (s *Socket) Protocol() int { return s.protocol }

// CloseOnExec reports whether the socket was made with SOCK_CLOEXEC (by
// socket or accept4); the descriptor flag itself is the kernel's to keep.
func (s *Socket) CloseOnExec() bool { return s.cloexec }

// Nonblock reports whether the socket is in non-blocking mode (O_NONBLOCK).
func (s *Socket) Nonblock() bool { return s.nonblock.Load() }

// SetNonblock sets or clears O_NONBLOCK (fcntl F_SETFL, ioctl FIONBIO).
func (s *Socket) SetNonblock(on bool) { s.nonblock.Store(on) }

// SetNotify installs fn, called whenever the socket's readiness (Events)
// may have changed: data arrived, space freed, a connection completed or
// failed, a peer closed. It is called on a goroutine of its own, never
// with a lock of this package held, and calls for one socket do not
// overlap; several changes may be reported by one call, and a call may
// report no change. fn may run once more after Close. nil removes it.
func (s *Socket) SetNotify(fn func()) {
	s.wakeMu.Lock()
	s.notify = fn
	s.wakeMu.Unlock()
}

// changed wakes the operations waiting on the socket and schedules a
// notify call. It only takes wakeMu, so it may be called from gVisor's
// callbacks whatever locks they hold.
func (s *Socket) changed() {
	s.wakeMu.Lock()
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
	run := false
	if s.notify != nil {
		s.notifyDirty = true
		run = !s.notifyPending
		s.notifyPending = true
	}
	s.wakeMu.Unlock()
	if run {
		go s.runNotify()
	}
}

// runNotify calls the notify callback until no change arrived during the
// last call, so that calls never overlap and none is missed.
func (s *Socket) runNotify() {
	for {
		s.wakeMu.Lock()
		fn := s.notify
		if !s.notifyDirty || fn == nil {
			s.notifyPending = false
			s.wakeMu.Unlock()
			return
		}
		s.notifyDirty = false
		s.wakeMu.Unlock()
		fn()
	}
}

// waitChan returns a channel closed at the next readiness change. Take it
// before trying an operation, then wait on it if the operation would block.
func (s *Socket) waitChan() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// timeout converts a stored SO_RCVTIMEO/SO_SNDTIMEO.
func timeout(v *atomic.Int64) time.Duration { return time.Duration(v.Load()) }

// block runs op until it returns something other than EAGAIN, waiting for
// readiness changes between tries, unless nonblock. It gives up with
// EAGAIN after tmo (0: never), EINTR when ctx ends and EBADF when the
// socket closes. progress, if not nil, reports whether op has done part
// of its work, after which the time limit and ctx end the operation
// without an error (a partial read or write).
func (s *Socket) block(ctx context.Context, nonblock bool, tmo time.Duration, op func() unix.Errno, progress func() bool) unix.Errno {
	if nonblock {
		// Nothing waits, so no wake channel is needed: Go's sockets
		// are all non-blocking, and each operation would otherwise
		// make one and each readiness change close it.
		return op()
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var timer *time.Timer
	var expired <-chan time.Time
	for {
		ch := s.waitChan()
		e := op()
		if e != unix.EAGAIN {
			return e
		}
		if tmo < 0 {
			return unix.EAGAIN
		}
		if tmo > 0 && timer == nil {
			timer = time.NewTimer(tmo)
			defer timer.Stop()
			expired = timer.C
		}
		select {
		case <-ch:
			continue
		case <-expired:
			e = unix.EAGAIN
		case <-ctx.Done():
			e = unix.EINTR
		case <-s.closed:
			e = unix.EBADF
		}
		if progress != nil && progress() {
			return 0
		}
		return e
	}
}

func (s *Socket) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Events reports the socket's readiness in epoll bits (EPOLLIN, EPOLLOUT,
// EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLRDNORM, EPOLLWRNORM), as Linux's
// poll of the same socket would; a closed socket says POLLNVAL.
func (s *Socket) Events() uint32 {
	if s.isClosed() {
		return 0x20 // POLLNVAL
	}
	if s.nl != nil {
		return s.nl.events()
	}
	return s.inet.events()
}

// EventsExact reports whether Events, taken now, tells exactly when a
// non-blocking data transfer would block: a read, or a recv without
// flags, returns EAGAIN whenever EPOLLIN, EPOLLRDHUP, EPOLLHUP and
// EPOLLERR are all clear, and a write, or a send without flags, whenever
// EPOLLOUT, EPOLLHUP and EPOLLERR are. So it is for UDP and ping sockets,
// and for TCP sockets connecting or connected (SYN-SENT, SYN-RCVD,
// ESTABLISHED); not for a listening or
// closed TCP socket, where reads and writes fail (ENOTCONN, EPIPE) rather
// than block, nor for netlink. The kernel then answers such a call itself
// (EAGAIN) instead of forwarding it; Events is reported again after every
// change, so no wakeup is lost.
func (s *Socket) EventsExact() bool {
	return !s.isClosed() && s.inet != nil && s.inet.eventsExact()
}

// Close releases the socket. Operations waiting on it return EBADF. A
// TCP socket with SO_LINGER on and a non-zero time waits, up to that time,
// for its queued data to be acknowledged, as Linux's close does (even in
// non-blocking mode); ctx cuts that wait short.
func (s *Socket) Close(ctx context.Context) unix.Errno {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.closed)
	})
	if !first {
		return unix.EBADF
	}
	if s.nl != nil {
		s.nl.close()
	} else {
		s.inet.close(ctx)
	}
	s.changed()
	return 0
}

// CloseReset closes the socket as Close does, but a connected TCP
// socket sends a reset rather than a FIN, as Linux's close does when
// received bytes were never read. Its caller knows of unread bytes the
// socket does not: ones it took out of the socket for the program.
func (s *Socket) CloseReset(ctx context.Context) unix.Errno {
	if s.inet != nil && !s.isClosed() {
		s.inet.resetOnClose()
	}
	return s.Close(ctx)
}

// IOVLen is the total length of an I/O vector.
func IOVLen(iov [][]byte) int {
	n := 0
	for _, b := range iov {
		n += len(b)
	}
	return n
}

// iovWriter fills an I/O vector in order; a write beyond its end is cut
// short with io.ErrShortWrite.
type iovWriter struct {
	iov [][]byte
	n   int
}

func (w *iovWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && len(w.iov) > 0 {
		c := copy(w.iov[0], p)
		w.iov[0] = w.iov[0][c:]
		if len(w.iov[0]) == 0 {
			w.iov = w.iov[1:]
		}
		p = p[c:]
		n += c
	}
	w.n += n
	if len(p) > 0 {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// iovReader reads an I/O vector in order; it is a tcpip.Payloader.
type iovReader struct {
	iov [][]byte
	n   int // bytes left
}

func newIOVReader(iov [][]byte) *iovReader { return &iovReader{iov: iov, n: IOVLen(iov)} }

func (r *iovReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := 0
	for len(p) > 0 && len(r.iov) > 0 {
		c := copy(p, r.iov[0])
		r.iov[0] = r.iov[0][c:]
		if len(r.iov[0]) == 0 {
			r.iov = r.iov[1:]
		}
		p = p[c:]
		n += c
	}
	r.n -= n
	return n, nil
}

// Len implements tcpip.Payloader.
func (r *iovReader) Len() int { return r.n }
