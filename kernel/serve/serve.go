// Package serve answers the program's own system calls on served files
// (/dev/unikgo/serve): disks as /dev/vda, sockets on a network stack. The
// kernel forwards each call on a registered path or a descriptor created
// from one, with its raw arguments, and blocks the calling thread until
// Reply. Pointers in the arguments are addresses in this program (there is
// one address space) and stay valid until the reply.
//
// Wire formats (little-endian), read from and written to the device:
//
//	request, 80 bytes:  id u64 | sysno u64 | obj i32 | new i32 | flags u32 | pad u32 | args [6]u64
//	reply, 24 bytes:    id u64 | val i64 | kind u32 | pad u32
//
// A reply of kind 0 ends request id with val (the result, or -errno); for
// a call that creates a descriptor (open, accept) a non-negative val makes
// the kernel install a descriptor for object new. Kind 1 reports the epoll
// readiness of socket object id: the events in val's low 32 bits, and bit
// 32 (exact) if they tell exactly when a non-blocking read, write, or
// recv or send without flags would block, which the kernel then answers
// itself (EAGAIN) without forwarding. Kind 2 reports socket object id's
// addresses: val points to {sockLen, peerLen u32; sock, peer [32]byte},
// read during the write; the kernel answers getsockname and getpeername
// from them. Kind 3 attaches a receive ring to stream socket object id:
// val points to an RxRing (rxring.go describes it), or is 0 to detach.
// Request flags: bit 0 is O_NONBLOCK; bit 1 marks an orphan SYS_READ
// that says the program took bytes from a ring whose server waited for
// space.
//
// socket(2), getsockname(2) and getpeername(2) never wait for the server:
// Go's syscall package makes them with RawSyscall, which keeps the
// caller's P, so a server goroutine could find none to run on. The kernel
// checks socket's arguments, installs the descriptor at once and queues an
// orphan socket request (no thread waits for it) that Serve runs before
// any later request.
package serve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is the kernel's server device.
const DevicePath = "/dev/unikgo/serve"

const (
	reqSize   = 80
	replySize = 24

	ioctlPath    = 0x40104c00
	ioctlSockets = 0x00004c01

	flagNonblock = 1
	flagRxSpace  = 2
	orphan       = 1 << 63

	replyDone = 0
	replyPoll = 1
	replyName = 2
	replyRx   = 3

	readyExact = 1 << 32

	maxSockName = 32
)

// Obj names a served object: a registered path, the socket provider, or an
// open file or socket. The kernel picks the numbers; a server keeps its
// state per Obj.
type Obj int32

// Request is one forwarded system call.
type Request struct {
	ID    uint64
	Sysno uintptr // Linux x86-64 system call number
	// Obj is the object the call is on: the registered path for open and
	// stat, the socket provider for socket, else the descriptor's object.
	Obj Obj
	// New is the object that a descriptor-creating call (open, socket,
	// accept) binds when it succeeds, else -1.
	New Obj
	// Nonblock reports whether the descriptor is O_NONBLOCK.
	Nonblock bool
	Args     [6]uintptr
	// RxSpace says that the program took bytes from object Obj's RxRing
	// while its server waited for space; Sysno is SYS_READ, and the
	// request is an orphan.
	RxSpace bool
}

// Orphan reports whether no thread waits for r: a close queued when the
// program closed a descriptor, the creation of a socket whose descriptor
// the program already has (Sysno SYS_SOCKET, binding New), or RxSpace. It
// must still be answered, with any value: the kernel reuses a closed
// object only then.
func (r *Request) Orphan() bool { return r.ID&orphan != 0 }

// AfterPath is the argument that follows the path in a call on a
// registered path: open's flags, stat's buffer, access's mode. The *at
// forms (openat, newfstatat, faccessat, faccessat2) take a directory
// descriptor first.
func (r *Request) AfterPath() uintptr {
	switch r.Sysno {
	case unix.SYS_OPENAT, unix.SYS_NEWFSTATAT, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2:
		return r.Args[2]
	}
	return r.Args[1]
}

// Server is one connection to the kernel's server device.
type Server struct {
	f  *os.File
	rc interface {
		Control(func(fd uintptr)) error
	}
	wmu   sync.Mutex
	names *[8 + 2*maxSockName]byte // +checklocks:wmu; Names' record
}

// Open connects a new server.
func Open() (*Server, error) {
	f, err := os.OpenFile(DevicePath, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("serve: %w (served files exist only inside a unikgo image)", err)
	}
	return newServer(f)
}

func newServer(f *os.File) (*Server, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Server{f: f, rc: rc, names: new([8 + 2*maxSockName]byte)}, nil
}

func (s *Server) ioctl(req, arg uintptr) (uintptr, error) {
	var r uintptr
	var e unix.Errno
	if err := s.rc.Control(func(fd uintptr) { r, _, e = unix.Syscall(unix.SYS_IOCTL, fd, req, arg) }); err != nil {
		return 0, err
	}
	if e != 0 {
		return 0, e
	}
	return r, nil
}

// Register takes open and stat of path (exact match; at most 128 bytes,
// absolute).
func (s *Server) Register(path string) (Obj, error) {
	b := []byte(path)
	if len(b) == 0 {
		return 0, fmt.Errorf("serve: register %q: empty path", path)
	}
	arg := [2]uint64{uint64(uintptr(unsafe.Pointer(&b[0]))), uint64(len(b))}
	o, err := s.ioctl(ioctlPath, uintptr(unsafe.Pointer(&arg)))
	if err != nil {
		return 0, fmt.Errorf("serve: register %s: %w", path, err)
	}
	return Obj(o), nil
}

// TakeSockets makes this server answer socket(2).
func (s *Server) TakeSockets() (Obj, error) {
	o, err := s.ioctl(ioctlSockets, 0)
	if err != nil {
		return 0, fmt.Errorf("serve: take sockets: %w", err)
	}
	return Obj(o), nil
}

// Next waits for forwarded calls and appends them to reqs.
func (s *Server) Next(reqs []Request) ([]Request, error) {
	var buf [32 * reqSize]byte
	n, err := s.f.Read(buf[:])
	if err != nil {
		return reqs, fmt.Errorf("serve: read requests: %w", err)
	}
	if n%reqSize != 0 {
		return reqs, fmt.Errorf("serve: the kernel returned %d bytes, not whole %d-byte requests", n, reqSize)
	}
	le := binary.LittleEndian
	for p := buf[:n]; len(p) > 0; p = p[reqSize:] {
		r := Request{
			ID:       le.Uint64(p),
			Sysno:    uintptr(le.Uint64(p[8:])),
			Obj:      Obj(int32(le.Uint32(p[16:]))),
			New:      Obj(int32(le.Uint32(p[20:]))),
			Nonblock: le.Uint32(p[24:])&flagNonblock != 0,
			RxSpace:  le.Uint32(p[24:])&flagRxSpace != 0,
		}
		for i := range r.Args {
			r.Args[i] = uintptr(le.Uint64(p[32+8*i:]))
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func (s *Server) write(id uint64, val int64, kind uint32) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(id, val, kind)
}

func (s *Server) writeLocked(id uint64, val int64, kind uint32) error {
	var b [replySize]byte
	binary.LittleEndian.PutUint64(b[:], id)
	binary.LittleEndian.PutUint64(b[8:], uint64(val))
	binary.LittleEndian.PutUint32(b[16:], kind)
	_, err := s.f.Write(b[:])
	return err
}

// Reply ends request id with val: a result, or -errno.
func (s *Server) Reply(id uint64, val int64) error { return s.write(id, val, replyDone) }

// Ready reports the epoll readiness (EPOLLIN, EPOLLOUT... bits) of a socket
// object, waking the program's netpoller on changes. With exact, events
// tell exactly when a non-blocking read, write, or recv or send without
// flags would return EAGAIN (netstack/socket's Socket.EventsExact), and the
// kernel answers those calls itself while they would.
func (s *Server) Ready(o Obj, events uint32, exact bool) error {
	v := int64(events)
	if exact {
		v |= readyExact
	}
	return s.write(uint64(o), v, replyPoll)
}

// Names reports a socket object's own address and its peer's (empty when
// not connected), as sockaddrs of at most 32 bytes, for getsockname and
// getpeername.
func (s *Server) Names(o Obj, sock, peer []byte) error {
	if len(sock) > maxSockName || len(peer) > maxSockName {
		return fmt.Errorf("serve: socket address of %d bytes, at most %d", max(len(sock), len(peer)), maxSockName)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// The kernel reads the record during the write: it lives in the
	// heap (which does not move), not on this goroutine's stack.
	b := s.names[:]
	clear(b)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(sock)))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(peer)))
	copy(b[8:], sock)
	copy(b[8+maxSockName:], peer)
	return s.writeLocked(uint64(o), int64(uintptr(unsafe.Pointer(&b[0]))), replyName)
}

// Close disconnects: calls waiting on this server fail with EIO, and so do
// later calls on its descriptors.
func (s *Server) Close() error { return s.f.Close() }

// Handler answers one request with a result or -errno.
type Handler func(r *Request) int64

// Serve answers requests with h, each in its own goroutine (a blocking
// call must not hold up the others), until ctx ends or the device fails.
// Orphan requests (closes, socket creations) are answered in order before
// the requests after them are started: they do not block, and a call on a
// new socket must find it made.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	return s.ServeWith(ctx, h, nil)
}

// ServeWith is Serve, except that the requests inline selects are answered
// on the serving goroutine, in order, like orphans. It is for calls that
// cannot block, such as those on a nonblocking socket, where a goroutine
// per call (its creation, its stack's growth, its scheduling) costs more
// than the call itself. inline nil selects none.
func (s *Server) ServeWith(ctx context.Context, h Handler, inline func(*Request) bool) error {
	stop := context.AfterFunc(ctx, func() { s.f.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	var reqs []Request
	for {
		var err error
		reqs, err = s.Next(reqs[:0])
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for i := range reqs {
			r := reqs[i]
			if r.Orphan() || inline != nil && inline(&r) {
				if err := s.Reply(r.ID, h(&r)); err != nil {
					return err
				}
				continue
			}
			go func() {
				if err := s.Reply(r.ID, h(&r)); err != nil && !errors.Is(err, os.ErrClosed) {
					panic(fmt.Sprintf("serve: reply to %d: %v", r.Sysno, err))
				}
			}()
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// Errno converts err to the -errno a handler returns: a unix.Errno as is,
// anything else wrapped around one found with errors.As, else EIO.
func Errno(err error) int64 {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return -int64(e)
	}
	return -int64(unix.EIO)
}

// Pointer is the program's address p, named by a request's arguments.
// (An address from the kernel points into memory the checker cannot tie
// to an allocation: -race's checkptr is off here.)
//
//go:nocheckptr
func Pointer(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

// Bytes is the program's memory [p, p+n) named by a request's arguments.
//
//go:nocheckptr
func Bytes(p, n uintptr) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(nil, p)), n)
}

// MaxIOV is Linux's UIO_MAXIOV, the most vectors readv and writev take.
const MaxIOV = 1024

// Iovecs is the program's struct iovec array of cnt entries at p, as
// slices of its memory: EINVAL for more than MaxIOV entries or a total
// length past the largest ssize_t, EFAULT for a missing array or a
// missing base of a non-empty vector.
//
//go:nocheckptr
func Iovecs(p, cnt uintptr) ([][]byte, unix.Errno) {
	if cnt > MaxIOV {
		return nil, unix.EINVAL
	}
	if cnt == 0 {
		return nil, 0
	}
	if p == 0 {
		return nil, unix.EFAULT
	}
	raw := unsafe.Slice((*[2]uintptr)(unsafe.Add(nil, p)), cnt)
	iov := make([][]byte, cnt)
	total := uintptr(0)
	for i, v := range raw {
		if int64(v[1]) < 0 || int64(total+v[1]) < 0 {
			return nil, unix.EINVAL
		}
		total += v[1]
		if v[1] != 0 && v[0] == 0 {
			return nil, unix.EFAULT
		}
		iov[i] = Bytes(v[0], v[1])
	}
	return iov, 0
}
