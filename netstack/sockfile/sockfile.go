// Package sockfile answers the program's socket system calls with a
// netstack: it is the server behind socket(2) in a unikgo image. The kernel
// forwards socket, and every call on a descriptor that socket or accept
// made, through kernel/serve with the raw Linux arguments; Handle decodes
// them (sockaddrs, iovecs, msghdrs, option buffers in the program's memory)
// into calls on a netstack/socket.Socket and returns what Linux would.
// Readiness changes go back to the kernel's epoll through Ready, so the Go
// runtime's netpoller sees the sockets as it would on Linux.
package sockfile

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/serve"
	"github.com/unikgo/unikgo/netstack/socket"
	"golang.org/x/sys/unix"
)

// Linux limits and sizes (x86-64).
const (
	maxSockLen = 128  // sizeof(struct sockaddr_storage)
	maxOptLen  = 4096 // longest option value taken; Linux's are far shorter

	ioctlFIONREAD = 0x541b // SIOCINQ
	ioctlTIOCOUTQ = 0x5411 // SIOCOUTQ

	sIFSOCK = 0o140000
)

// Readier takes a socket object's epoll readiness, its addresses (which
// the kernel answers getsockname and getpeername with) and its receive
// ring (which the kernel answers read with): *serve.Server.
type Readier interface {
	Ready(o serve.Obj, events uint32, exact bool) error
	Names(o serve.Obj, sock, peer []byte) error
	Attach(o serve.Obj, r *serve.RxRing) error
}

// Server maps the kernel's socket objects to sockets.
type Server struct {
	ss  *socket.Sockets
	rd  Readier
	ctx context.Context // bounds blocking calls: they end when it does

	mu     sync.Mutex
	socks  map[serve.Obj]*sock      // +checklocks:mu
	failed map[serve.Obj]unix.Errno // +checklocks:mu; sockets that could not be made
}

// sock is one socket object and the readiness last reported for it.
type sock struct {
	s      *socket.Socket
	obj    serve.Obj
	rd     Readier
	stream bool // TCP: gets a receive ring once it has bytes (rx.go)

	rxMu   sync.Mutex                   // orders the ring's filling with the receive calls
	rx     atomic.Pointer[serve.RxRing] // set once, under rxMu
	noRing bool                         // +checklocks:rxMu; the kernel refused the ring
	// rxBlocked: a blocking receive call holds rxMu (it may wait long).
	rxBlocked atomic.Bool

	mu         sync.Mutex
	reported   uint32 // +checklocks:mu
	exact      bool   // +checklocks:mu; reported with Socket.EventsExact
	sock, peer []byte // +checklocks:mu; addresses last reported
	dead       bool   // +checklocks:mu; closed: report nothing more
}

// New returns a server for the sockets of ss, reporting readiness to rd.
// Blocking calls (a blocking socket's accept, connect, read...) end with
// EINTR when ctx does.
func New(ctx context.Context, ss *socket.Sockets, rd Readier) *Server {
	return &Server{ss: ss, rd: rd, ctx: ctx, socks: make(map[serve.Obj]*sock), failed: make(map[serve.Obj]unix.Errno)}
}

// Serve connects to the kernel's server device, takes socket(2) and
// answers until ctx ends. It returns once socket(2) is taken, serving in
// the background; errors after that are reported through fail (nil:
// ignored).
func Serve(ctx context.Context, ss *socket.Sockets, fail func(error)) error {
	srv, err := serve.Open()
	if err != nil {
		return err
	}
	if _, err := srv.TakeSockets(); err != nil {
		srv.Close()
		return err
	}
	s := New(ctx, ss, srv)
	go func() {
		defer srv.Close()
		err := srv.ServeWith(ctx, s.Handle, Inline)
		if fail != nil && ctx.Err() == nil {
			fail(fmt.Errorf("sockfile: %w", err))
		}
	}()
	return nil
}

// Inline reports whether Handle answers r without waiting, so that the
// serving loop can answer it itself: a call on a nonblocking socket (Go's
// net package makes every socket nonblocking) returns EAGAIN or
// EINPROGRESS where a blocking one would wait.
func Inline(r *serve.Request) bool { return r.Nonblock }

// Handle answers one forwarded call: socket on the provider object, or a
// call on a socket object. Bad pointers in the arguments give EFAULT, as
// the Linux kernel's copy_from_user would, not a crash of the program.
func (srv *Server) Handle(r *serve.Request) (val int64) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if recover() != nil {
			val = -int64(unix.EFAULT)
		}
	}()
	if r.Sysno == unix.SYS_SOCKET {
		return srv.socket(r)
	}
	srv.mu.Lock()
	k := srv.socks[r.Obj]
	fe := srv.failed[r.Obj]
	if r.Sysno == unix.SYS_CLOSE {
		delete(srv.failed, r.Obj)
	}
	srv.mu.Unlock()
	if k == nil {
		switch {
		case r.Orphan():
			return 0
		case fe != 0:
			return -int64(fe)
		}
		return -int64(unix.EBADF)
	}
	if r.RxSpace {
		k.refill()
		return 0
	}
	if r.Sysno == unix.SYS_CLOSE {
		srv.mu.Lock()
		delete(srv.socks, r.Obj)
		srv.mu.Unlock()
		k.mu.Lock()
		k.dead = true
		k.mu.Unlock()
		k.s.SetNotify(nil)
		if rx := k.rx.Load(); rx != nil && rx.Len() > 0 {
			// Bytes the program never read: Linux resets the
			// connection, and the socket alone would not know to.
			k.s.CloseReset(srv.ctx)
		} else {
			k.s.Close(srv.ctx)
		}
		return 0
	}
	k.s.SetNonblock(r.Nonblock)
	v := srv.call(k, r)
	k.report(srv.rd, namesMayChange(r.Sysno), false)
	return v
}

// socket makes the socket of a socket(2) call, which the program already
// has a descriptor for (object r.New): the kernel checked the arguments
// as netstack/socket does, so this fails only if they disagree, and then
// every call on the descriptor answers the error.
func (srv *Server) socket(r *serve.Request) int64 {
	s, e := srv.ss.Socket(int(r.Args[0]), int(r.Args[1]), int(r.Args[2]))
	if e != 0 {
		srv.mu.Lock()
		srv.failed[r.New] = e
		srv.mu.Unlock()
		return -int64(e)
	}
	srv.add(r.New, s)
	return 0
}

// add binds object o to s and reports its readiness and addresses.
func (srv *Server) add(o serve.Obj, s *socket.Socket) {
	k := &sock{s: s, obj: o, rd: srv.rd, stream: ringable(s), reported: ^uint32(0)}
	srv.mu.Lock()
	srv.socks[o] = k
	srv.mu.Unlock()
	s.SetNotify(func() {
		k.refill()
		k.report(srv.rd, false, false)
	})
	k.report(srv.rd, true, false)
}

// report tells the kernel the socket's readiness, and with names its
// addresses, if they changed; with force the readiness even if it did not
// (an edge for the program's epoll: the receive ring got bytes). Changes
// that only an operation made (a read draining the queue, a bind) are
// reported after that operation, before its reply; the rest from the
// socket's notify callback.
func (k *sock) report(rd Readier, names, force bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		return
	}
	if names {
		sock, _ := k.s.Getsockname()
		peer, _ := k.s.Getpeername()
		if !bytes.Equal(sock, k.sock) || !bytes.Equal(peer, k.peer) || k.reported == ^uint32(0) {
			k.sock, k.peer = sock, peer
			rd.Names(k.obj, sock, peer)
		}
	}
	if ev, exact := k.s.Events(), k.s.EventsExact(); force || ev != k.reported || exact != k.exact {
		k.reported, k.exact = ev, exact
		rd.Ready(k.obj, ev, exact)
	}
}

// namesMayChange reports whether a call can change a socket's addresses:
// binding (or the implicit bind of connect, listen and an unconnected
// send), connecting, and the SO_ERROR read by which Go learns that a
// non-blocking connect finished. Reads and writes, the hot path, cannot.
func namesMayChange(sysno uintptr) bool {
	switch sysno {
	case unix.SYS_BIND, unix.SYS_CONNECT, unix.SYS_LISTEN, unix.SYS_SENDTO, unix.SYS_SENDMSG,
		unix.SYS_SENDMMSG, unix.SYS_GETSOCKOPT, unix.SYS_SHUTDOWN:
		return true
	}
	return false
}

func errRet(n int, e unix.Errno) int64 {
	if e != 0 {
		return -int64(e)
	}
	return int64(n)
}

// call answers every forwarded call but socket and close.
func (srv *Server) call(k *sock, r *serve.Request) int64 {
	s, a, ctx := k.s, r.Args, srv.ctx
	switch r.Sysno {
	case unix.SYS_READ:
		n, _, _, e := k.recv(ctx, [][]byte{serve.Bytes(a[1], a[2])}, 0)
		return errRet(n, e)
	case unix.SYS_WRITE:
		return errRet(s.Write(ctx, serve.Bytes(a[1], a[2])))
	case unix.SYS_READV:
		iov, e := serve.Iovecs(a[1], a[2])
		if e != 0 {
			return -int64(e)
		}
		n, _, _, e := k.recv(ctx, iov, 0)
		return errRet(n, e)
	case unix.SYS_WRITEV:
		iov, e := serve.Iovecs(a[1], a[2])
		if e != 0 {
			return -int64(e)
		}
		return errRet(s.SendMsg(ctx, iov, nil, 0))
	case unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV,
		unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_LSEEK:
		return -int64(unix.ESPIPE)
	case unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE:
		return -int64(unix.EINVAL)
	case unix.SYS_FADVISE64:
		return -int64(unix.ESPIPE)
	case unix.SYS_FSTAT:
		return fstat(a[1])
	case unix.SYS_IOCTL:
		return ioctl(k, a[1], a[2])
	case unix.SYS_BIND:
		sa, e := sockaddrIn(a[1], a[2])
		if e != 0 {
			return -int64(e)
		}
		return errRet(0, s.Bind(sa))
	case unix.SYS_CONNECT:
		sa, e := sockaddrIn(a[1], a[2])
		if e != 0 {
			return -int64(e)
		}
		return errRet(0, s.Connect(ctx, sa))
	case unix.SYS_LISTEN:
		return errRet(0, s.Listen(int(int32(a[1]))))
	case unix.SYS_ACCEPT, unix.SYS_ACCEPT4:
		flags := 0
		if r.Sysno == unix.SYS_ACCEPT4 {
			flags = int(int32(a[3]))
		}
		if a[2] != 0 {
			// Check the length pointer before taking a connection, which
			// could not be given back.
			if _, e := addrLen(a[2]); e != 0 {
				return -int64(e)
			}
		}
		ns, sa, e := s.Accept(ctx, flags)
		if e != 0 {
			return -int64(e)
		}
		if e := sockaddrOut(a[1], a[2], sa); e != 0 {
			ns.Close(ctx)
			return -int64(e)
		}
		srv.add(r.New, ns)
		return 0
	case unix.SYS_SENDTO:
		var to []byte
		if a[4] != 0 {
			var e unix.Errno
			if to, e = sockaddrIn(a[4], a[5]); e != 0 {
				return -int64(e)
			}
		}
		return errRet(s.SendMsg(ctx, [][]byte{serve.Bytes(a[1], a[2])}, to, int(int32(a[3]))))
	case unix.SYS_RECVFROM:
		if a[4] != 0 && a[5] != 0 {
			if _, e := addrLen(a[5]); e != 0 {
				return -int64(e)
			}
		}
		n, from, _, e := k.recv(ctx, [][]byte{serve.Bytes(a[1], a[2])}, int(int32(a[3])))
		if e != 0 {
			return -int64(e)
		}
		if a[4] != 0 {
			if e := sockaddrOut(a[4], a[5], from); e != 0 {
				return -int64(e)
			}
		}
		return int64(n)
	case unix.SYS_SENDMSG:
		return errRet(sendmsg(ctx, k, a[1], int(int32(a[2]))))
	case unix.SYS_RECVMSG:
		return errRet(recvmsg(ctx, k, a[1], int(int32(a[2]))))
	case unix.SYS_SENDMMSG:
		return mmsg(ctx, k, a[1], a[2], int(int32(a[3])), sendmsg)
	case unix.SYS_RECVMMSG:
		return recvmmsg(ctx, k, a[1], a[2], int(int32(a[3])), a[4])
	case unix.SYS_SHUTDOWN:
		return errRet(0, s.Shutdown(int(int32(a[1]))))
	case unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME:
		// The kernel answers these itself from Names; kept for servers
		// that forward them.
		if _, e := addrLen(a[2]); e != 0 {
			return -int64(e)
		}
		get := s.Getsockname
		if r.Sysno == unix.SYS_GETPEERNAME {
			get = s.Getpeername
		}
		sa, e := get()
		if e != 0 {
			return -int64(e)
		}
		return errRet(0, sockaddrOut(a[1], a[2], sa))
	case unix.SYS_SETSOCKOPT:
		n := int64(int32(a[4]))
		if n < 0 {
			return -int64(unix.EINVAL)
		}
		if n > maxOptLen {
			n = maxOptLen
		}
		return errRet(0, s.Setsockopt(int(int32(a[1])), int(int32(a[2])), clone(serve.Bytes(a[3], uintptr(n)))))
	case unix.SYS_GETSOCKOPT:
		if a[4] == 0 {
			return -int64(unix.EFAULT)
		}
		lp := (*int32)(serve.Pointer(a[4]))
		n := *lp
		if n < 0 {
			return -int64(unix.EINVAL)
		}
		buf := make([]byte, min(n, maxOptLen))
		got, e := s.Getsockopt(int(int32(a[1])), int(int32(a[2])), buf)
		if e != 0 {
			return -int64(e)
		}
		copy(serve.Bytes(a[3], uintptr(got)), buf[:got])
		*lp = int32(got)
		return 0
	}
	return -int64(unix.ENOSYS)
}

// clone copies the program's bytes: the socket may keep what it is given.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// sockaddrIn reads a sockaddr the program passes in.
func sockaddrIn(p, n uintptr) ([]byte, unix.Errno) {
	if int64(n) < 0 || n > maxSockLen {
		return nil, unix.EINVAL
	}
	if n == 0 {
		return nil, 0
	}
	if p == 0 {
		return nil, unix.EFAULT
	}
	return clone(serve.Bytes(p, n)), 0
}

// addrLen reads a socklen_t the program passes by pointer.
func addrLen(lp uintptr) (int, unix.Errno) {
	if lp == 0 {
		return 0, unix.EFAULT
	}
	n := *(*int32)(serve.Pointer(lp))
	if n < 0 {
		return 0, unix.EINVAL
	}
	return int(n), 0
}

// sockaddrOut stores sa as Linux's move_addr_to_user does: truncated to
// the program's buffer, with the full length in *lp. A nil p or lp means
// the program does not want the address.
func sockaddrOut(p, lp uintptr, sa []byte) unix.Errno {
	if p == 0 || lp == 0 {
		return 0
	}
	n, e := addrLen(lp)
	if e != 0 {
		return e
	}
	copy(serve.Bytes(p, uintptr(min(n, len(sa)))), sa)
	*(*int32)(serve.Pointer(lp)) = int32(len(sa))
	return 0
}

// msg reads the program's struct msghdr at p and its I/O vector.
func msg(p uintptr) (*unix.Msghdr, [][]byte, unix.Errno) {
	if p == 0 {
		return nil, nil, unix.EFAULT
	}
	m := (*unix.Msghdr)(serve.Pointer(p))
	iov, e := serve.Iovecs(addrOf(m.Iov), uintptr(m.Iovlen))
	if e != 0 {
		return nil, nil, e
	}
	return m, iov, 0
}

// addrOf is the program address a pointer field of its structures holds.
func addrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func sendmsg(ctx context.Context, k *sock, p uintptr, flags int) (int, unix.Errno) {
	m, iov, e := msg(p)
	if e != 0 {
		return 0, e
	}
	var to []byte
	if m.Name != nil {
		if to, e = sockaddrIn(addrOf(m.Name), uintptr(m.Namelen)); e != 0 {
			return 0, e
		}
	}
	// Control messages (SCM_RIGHTS, IP_PKTINFO...) have no meaning here;
	// Linux ignores what a protocol does not use too.
	return k.s.SendMsg(ctx, iov, to, flags)
}

func recvmsg(ctx context.Context, k *sock, p uintptr, flags int) (int, unix.Errno) {
	m, iov, e := msg(p)
	if e != 0 {
		return 0, e
	}
	if int32(m.Namelen) < 0 {
		return 0, unix.EINVAL
	}
	n, from, mflags, e := k.recv(ctx, iov, flags)
	if e != 0 {
		return 0, e
	}
	if m.Name != nil {
		copy(serve.Bytes(addrOf(m.Name), uintptr(min(int(m.Namelen), len(from)))), from)
		m.Namelen = uint32(len(from))
	} else {
		m.Namelen = 0
	}
	m.Controllen = 0
	m.Flags = int32(mflags)
	return n, 0
}

// mmsg is sendmmsg: op on each struct mmsghdr in turn, storing msg_len,
// until one fails or would block. As on Linux, an error after at least
// one message is not reported.
func mmsg(ctx context.Context, k *sock, p, cnt uintptr, flags int, op func(context.Context, *sock, uintptr, int) (int, unix.Errno)) int64 {
	return mmsgUntil(ctx, k, p, cnt, func(int64) int { return flags }, op, nil)
}

// recvmmsg is recvmmsg(2) as Linux does it: MSG_WAITFORONE makes every
// receive after the first non-blocking, and the timeout (tp, a struct
// timespec, or 0) is checked after each message, not while one is awaited
// (a documented Linux bug kept for compatibility); the time left is
// written back to it.
func recvmmsg(ctx context.Context, k *sock, p, cnt uintptr, flags int, tp uintptr) int64 {
	var deadline time.Time
	var ts *unix.Timespec
	if tp != 0 {
		ts = (*unix.Timespec)(serve.Pointer(tp))
		if ts.Sec < 0 || ts.Nsec < 0 || ts.Nsec >= 1e9 {
			return -int64(unix.EINVAL)
		}
		deadline = time.Now().Add(time.Duration(ts.Sec)*time.Second + time.Duration(ts.Nsec))
	}
	fl := func(done int64) int {
		f := flags &^ unix.MSG_WAITFORONE
		if flags&unix.MSG_WAITFORONE != 0 && done > 0 {
			f |= unix.MSG_DONTWAIT
		}
		return f
	}
	var expired func() bool
	if ts != nil {
		expired = func() bool { return !time.Now().Before(deadline) }
	}
	v := mmsgUntil(ctx, k, p, cnt, fl, recvmsg, expired)
	if ts != nil {
		*ts = unix.NsecToTimespec(max(time.Until(deadline), 0).Nanoseconds())
	}
	return v
}

// mmsgUntil runs op on up to cnt struct mmsghdr at p with the flags fl
// gives for the number done so far, stopping early once stop (if not nil)
// reports true after a message.
func mmsgUntil(ctx context.Context, k *sock, p, cnt uintptr, fl func(int64) int, op func(context.Context, *sock, uintptr, int) (int, unix.Errno), stop func() bool) int64 {
	if cnt > serve.MaxIOV {
		cnt = serve.MaxIOV
	}
	done := int64(0)
	for i := uintptr(0); i < cnt; i++ {
		h := p + i*unsafe.Sizeof(unix.Mmsghdr{})
		n, e := op(ctx, k, h, fl(done))
		if e != 0 {
			if done > 0 {
				return done
			}
			return -int64(e)
		}
		(*unix.Mmsghdr)(serve.Pointer(h)).Len = uint32(n)
		done++
		if stop != nil && stop() {
			break
		}
	}
	return done
}

// ioctl answers the socket ioctls the Go runtime and common programs use.
// FIONBIO never comes here: the kernel keeps O_NONBLOCK.
func ioctl(k *sock, req, arg uintptr) int64 {
	switch req {
	case ioctlFIONREAD, ioctlTIOCOUTQ:
		if arg == 0 {
			return -int64(unix.EFAULT)
		}
		get := k.inQueue
		if req == ioctlTIOCOUTQ {
			get = k.s.OutQueue
		}
		n, e := get()
		if e != 0 {
			return -int64(e)
		}
		*(*int32)(serve.Pointer(arg)) = int32(n)
		return 0
	}
	return -int64(unix.ENOTTY)
}

// fstat fills a struct stat for a socket: S_IFSOCK, mode 0777, as Linux.
func fstat(p uintptr) int64 {
	if p == 0 {
		return -int64(unix.EFAULT)
	}
	st := (*unix.Stat_t)(serve.Pointer(p))
	*st = unix.Stat_t{Mode: sIFSOCK | 0o777, Nlink: 1, Blksize: 4096}
	return 0
}
