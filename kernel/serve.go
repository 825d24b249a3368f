package kernel

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Served files: file descriptors whose system calls are answered by Go code
// in the same program. The kernel cannot run a disk driver or a network
// stack in trap context, so it forwards the calls: a thread that reads a
// served file blocks, the request is queued to the server (a goroutine that
// reads /dev/unikgo/serve through the netpoller), and the server's reply
// wakes the thread with the system call's result. Requests carry the raw
// system-call arguments; pointers in them are valid in the server too,
// since there is one address space, and the calling thread stays blocked
// until the reply, so its buffers stay put. kernel/serve is the Go side and
// describes the record formats.
//
// A server registers paths (open, stat) and may take socket(2). Calls that
// create a descriptor (open, socket, accept) carry a preallocated object
// slot for the server to bind; a non-negative reply makes the kernel install
// a descriptor for it. Closing a served descriptor frees it at once and
// queues a close without a waiting thread; the slot is reused only after
// the server acknowledges that close.

const (
	maxServers = 4
	maxServed  = 512 // served objects: open files, sockets, registrations
	maxNames   = 16  // registered paths per kernel
	maxName    = 128
	serveQueue = maxThreads + maxServed

	serveReqSize   = 80
	serveReplySize = 24

	ioctlServePath    = 0x40104c00 // _IOW('L', 0, struct{path *byte; len u64}) → object
	ioctlServeSockets = 0x00004c01 // _IO('L', 1) → object socket(2) requests name

	ioctlFIONBIO = 0x5421 // answered by the kernel: O_NONBLOCK is the descriptor's

	serveNonblock  = 1 // request flag: the descriptor is O_NONBLOCK
	serveRxSpace   = 2 // request flag: an orphan read, the program took from a ring whose server wants space
	serveReplyDone = 0 // reply kinds
	serveReplyPoll = 1 // readiness of an object: id = object, val = events
	serveReplyName = 2 // addresses of a socket: id = object, val = *sockNames
	serveReplyRx   = 3 // receive ring of a stream socket: id = object, val = *serve.RxRing or 0
	// With serveReplyPoll, above the events: they are exact for data
	// transfer (netstack/socket's Socket.EventsExact), so a non-blocking
	// read or write they say would block is answered EAGAIN here.
	serveReadyExact = 1 << 32
	serveOrphan     = 1 << 63

	// A socket's addresses as getsockname and getpeername return them;
	// sockaddr_in6 (28 bytes) is the longest served.
	maxSockName  = 32
	sockNamesLen = 8 + 2*maxSockName // struct{sockLen, peerLen u32; sock, peer [32]byte}

	entryCreate  = -2 // serveEntry.thread of a socket creation no thread waits for
	entryRxSpace = -3 // serveEntry.thread of an RxSpace report

	// A serve.RxRing: the server's bytes for read(2) of a stream socket.
	rxProd    = 0  // u32, written by the server
	rxCons    = 4  // u32, advanced by compare-and-swap by every consumer
	rxWant    = 8  // u32, 1 while the server waits for space
	rxData    = 16 // [rxSize]byte
	rxSize    = 32 << 10
	rxRingLen = rxData + rxSize
)

const (
	fdServer = fdIRQ + 1 + iota // /dev/unikgo/serve
	fdServed                    // a file or socket answered by a server
)

// Object kinds.
const (
	soFree = iota
	soName
	soSockets
	soFile   // opened through a registered name; not pollable (EPERM in epoll, as a disk on Linux)
	soSocket // created by socket or accept; pollable
	soDying  // closed, waiting for the server's acknowledgement
)

type servedObj struct {
	kind   int8
	server int8
	events uint32 // readiness the server last reported
	exact  bool   // events is exact for data transfer (serveReadyExact)

	// A socket's socket(2) arguments and its addresses as the server
	// last reported them: the kernel answers getsockname and
	// getpeername itself, since Go makes them (and socket) with
	// RawSyscall, which keeps the caller's P: a server goroutine might
	// find no P to run on.
	domain, typ, proto int32
	sockLen, peerLen   uint8
	sock, peer         [maxSockName]byte

	rx       uintptr // the socket's serve.RxRing, or 0
	rxQueued bool    // an RxSpace report is queued
}

type serveEntry struct {
	thread int32 // waiting thread, or -1 for an orphan close, entryCreate for a socket creation
	obj    int32
	tid    int32
}

type server struct {
	used bool
	fd   int32
	q    [serveQueue]serveEntry
	head int
	n    int
}

type servedName struct {
	obj  int32
	n    int
	name [maxName]byte
}

var (
	servers     [maxServers]server
	servedObjs  [maxServed]servedObj
	servedNames [maxNames]servedName
	nNames      int
	socketsObj  int32 = -1
)

func serveOpen(flags uint64) uint64 {
	for i := range servers {
		s := &servers[i]
		if s.used {
			continue
		}
		fd := allocFD(fdesc{kind: fdServer, obj: int32(i), nonblk: flags&oNONBLOCK != 0, cloexec: flags&0x80000 != 0})
		if fd < 0 {
			return errno(_EMFILE)
		}
		// Field by field: a composite literal of the whole server would
		// be built in a temporary on the small kernel stack.
		s.used, s.fd, s.head, s.n = true, int32(fd), 0, 0
		return uint64(fd)
	}
	return errno(_EBUSY)
}

func allocObj(kind int8, srv int32) int32 {
	for i := range servedObjs {
		if servedObjs[i].kind == soFree {
			servedObjs[i] = servedObj{kind: kind, server: int8(srv)}
			return int32(i)
		}
	}
	return -1
}

func serveIoctl(d *fdesc, req uint64, arg uintptr) uint64 {
	switch req {
	case ioctlServePath:
		if !userOK(arg, 16, false) {
			return errno(_EFAULT)
		}
		p, n := *(*uintptr)(ptr(arg)), *(*uintptr)(ptr(arg + 8))
		if n == 0 || n > maxName || *(*byte)(ptr(p)) != '/' {
			return errno(_EINVAL)
		}
		if !userOK(p, n, false) {
			return errno(_EFAULT)
		}
		if lookupName(userBytes(p, n)) >= 0 {
			return errno(_EEXIST)
		}
		if nNames == maxNames {
			return errno(_ENOSPC)
		}
		o := allocObj(soName, d.obj)
		if o < 0 {
			return errno(_ENFILE)
		}
		e := &servedNames[nNames]
		nNames++
		e.obj, e.n = o, copy(e.name[:], userBytes(p, n))
		return uint64(o)
	case ioctlServeSockets:
		if socketsObj >= 0 {
			return errno(_EEXIST)
		}
		o := allocObj(soSockets, d.obj)
		if o < 0 {
			return errno(_ENFILE)
		}
		socketsObj = o
		return uint64(o)
	}
	return errno(_ENOTTY)
}

// lookupName returns the object registered for path, or -1.
func lookupName(path []byte) int32 {
	for i := 0; i < nNames; i++ {
		e := &servedNames[i]
		if string(e.name[:e.n]) == string(path) {
			return e.obj
		}
	}
	return -1
}

// enqueue queues a request of thread i (or an orphan close, i < 0) on obj's
// server and wakes the server's readers.
func enqueue(obj int32, i int32) bool {
	s := &servers[servedObjs[obj].server]
	if s.n == len(s.q) {
		return false
	}
	e := serveEntry{thread: i, obj: obj}
	if i >= 0 {
		e.tid = threads[i].tid
	}
	s.q[(s.head+s.n)%len(s.q)] = e
	s.n++
	restartWaiters(s.fd)
	notifyFD(s.fd)
	return true
}

// forward sends the current system call to obj's server and blocks the
// thread until the reply. newKind, if not soFree, preallocates the object a
// descriptor-creating call binds.
func forward(c *percpu, f *TrapFrame, obj int32, newKind int8, nonblk bool) {
	t := &threads[c.cur]
	t.waitFD = obj
	t.serveNew = -1
	t.serveNonblk = nonblk
	if newKind != soFree {
		t.serveNew = allocObj(newKind, int32(servedObjs[obj].server))
		if t.serveNew < 0 {
			f.RAX = errno(_ENFILE)
			return
		}
	}
	if !enqueue(obj, c.cur) {
		if t.serveNew >= 0 {
			servedObjs[t.serveNew] = servedObj{}
		}
		f.RAX = errno(_EAGAIN)
		return
	}
	f.RAX = errno(_EIO) // if the server goes away
	block(c, f, waitServe, 0)
}

// serveRead hands queued requests to the server.
func serveRead(c *percpu, f *TrapFrame, d *fdesc, buf, n uintptr) {
	s := &servers[d.obj]
	if n < serveReqSize {
		f.RAX = errno(_EINVAL)
		return
	}
	if s.n == 0 {
		if d.nonblk {
			f.RAX = errno(_EAGAIN)
			return
		}
		restartOn(c, f, int32(f.RDI))
		return
	}
	if !userOK(buf, n, true) {
		f.RAX = errno(_EFAULT)
		return
	}
	out := uintptr(0)
	for s.n > 0 && out+serveReqSize <= n {
		e := s.q[s.head]
		s.head = (s.head + 1) % len(s.q)
		s.n--
		p := buf + out
		clear(userBytes(p, serveReqSize))
		if e.thread == entryCreate {
			// Acknowledged with this id, which names no object.
			o := &servedObjs[e.obj]
			*(*uint64)(ptr(p)) = serveOrphan | 1<<62 | uint64(e.obj)
			*(*uint64)(ptr(p + 8)) = unix.SYS_SOCKET
			*(*int32)(ptr(p + 16)) = socketsObj
			*(*int32)(ptr(p + 20)) = e.obj
			for k, v := range [3]int32{o.domain, o.typ, o.proto} {
				*(*uint64)(ptr(p + 32 + uintptr(k)*8)) = uint64(v)
			}
			out += serveReqSize
			continue
		}
		if e.thread == entryRxSpace {
			servedObjs[e.obj].rxQueued = false
			// Acknowledged with this id, which names no object.
			*(*uint64)(ptr(p)) = serveOrphan | 1<<61 | uint64(e.obj)
			*(*uint64)(ptr(p + 8)) = unix.SYS_READ
			*(*int32)(ptr(p + 16)) = e.obj
			*(*int32)(ptr(p + 20)) = -1
			*(*uint32)(ptr(p + 24)) = serveRxSpace
			out += serveReqSize
			continue
		}
		if e.thread < 0 {
			*(*uint64)(ptr(p)) = serveOrphan | uint64(e.obj)
			*(*uint64)(ptr(p + 8)) = unix.SYS_CLOSE
			*(*int32)(ptr(p + 16)) = e.obj
			*(*int32)(ptr(p + 20)) = -1
			out += serveReqSize
			continue
		}
		t := &threads[e.thread]
		if t.state != tsBlocked || t.wait != waitServe || t.tid != e.tid {
			continue // the thread is gone (exit_group races nothing else)
		}
		*(*uint64)(ptr(p)) = uint64(e.thread) | uint64(e.tid)<<32
		*(*uint64)(ptr(p + 8)) = t.sysno
		*(*int32)(ptr(p + 16)) = e.obj
		*(*int32)(ptr(p + 20)) = t.serveNew
		if t.serveNonblk {
			*(*uint32)(ptr(p + 24)) = serveNonblock
		}
		rg := &t.regs
		for k, v := range [6]uint64{rg.RDI, rg.RSI, rg.RDX, rg.R10, rg.R8, rg.R9} {
			*(*uint64)(ptr(p + 32 + uintptr(k)*8)) = v
		}
		out += serveReqSize
	}
	f.RAX = uint64(out)
}

// serveWrite takes the server's replies and readiness reports.
func serveWrite(f *TrapFrame, d *fdesc, buf, n uintptr) {
	if n%serveReplySize != 0 {
		f.RAX = errno(_EINVAL)
		return
	}
	if !userOK(buf, n, false) {
		f.RAX = errno(_EFAULT)
		return
	}
	for off := uintptr(0); off < n; off += serveReplySize {
		p := buf + off
		id, val, kind := *(*uint64)(ptr(p)), *(*int64)(ptr(p + 8)), *(*uint32)(ptr(p + 16))
		switch kind {
		case serveReplyPoll:
			if id < maxServed && servedObjs[id].kind == soSocket && int32(servedObjs[id].server) == d.obj {
				servedObjs[id].events = uint32(val)
				servedObjs[id].exact = val&serveReadyExact != 0
				notifyServed(int32(id))
			}
		case serveReplyName:
			if id < maxServed && servedObjs[id].kind == soSocket && int32(servedObjs[id].server) == d.obj {
				if !userOK(uintptr(val), sockNamesLen, false) {
					f.RAX = errno(_EFAULT)
					return
				}
				o, q := &servedObjs[id], uintptr(val)
				o.sockLen = uint8(min(*(*uint32)(ptr(q)), maxSockName))
				o.peerLen = uint8(min(*(*uint32)(ptr(q + 4)), maxSockName))
				// Typed loads: copy from an unsafe.Slice here crashes the
				// Go 1.26 compiler (disjointTypes).
				o.sock = *(*[maxSockName]byte)(ptr(q + 8))
				o.peer = *(*[maxSockName]byte)(ptr(q + 8 + maxSockName))
			}
		case serveReplyRx:
			if id < maxServed && servedObjs[id].kind == soSocket && int32(servedObjs[id].server) == d.obj {
				if val != 0 && (val%8 != 0 || !userOK(uintptr(val), rxRingLen, true)) {
					f.RAX = errno(_EFAULT)
					return
				}
				servedObjs[id].rx = uintptr(val)
				notifyServed(int32(id))
			}
		case serveReplyDone:
			if id&serveOrphan != 0 {
				if o := id &^ serveOrphan; o < maxServed && servedObjs[o].kind == soDying && int32(servedObjs[o].server) == d.obj {
					servedObjs[o] = servedObj{}
				}
				continue
			}
			complete(d.obj, int32(id&0xffffffff), int32(id>>32), val)
		default:
			f.RAX = errno(_EINVAL)
			return
		}
	}
	f.RAX = uint64(n)
}

// complete ends thread i's forwarded call with result val.
func complete(srv, i, tid int32, val int64) {
	if i < 0 || i >= maxThreads {
		return
	}
	t := &threads[i]
	if t.state != tsBlocked || t.wait != waitServe || t.tid != tid || int32(servedObjs[t.waitFD].server) != srv {
		return
	}
	res := uint64(val)
	if o := t.serveNew; o >= 0 {
		t.serveNew = -1
		if val < 0 {
			servedObjs[o] = servedObj{}
		} else {
			// The new descriptor's flags: O_NONBLOCK and O_CLOEXEC for
			// open, SOCK_NONBLOCK and SOCK_CLOEXEC (the same bits) for
			// socket and accept4.
			var fl uint64
			switch t.sysno {
			case unix.SYS_OPENAT:
				fl = t.regs.RDX
			case unix.SYS_OPEN:
				fl = t.regs.RSI
			case unix.SYS_SOCKET:
				fl = t.regs.RSI
			case unix.SYS_ACCEPT4:
				fl = t.regs.R10
			}
			acc := fl & 3
			fd := allocFD(fdesc{kind: fdServed, obj: o, nonblk: fl&oNONBLOCK != 0, cloexec: fl&0x80000 != 0, rdonly: acc == oRDONLY && servedObjs[o].kind == soFile})
			if fd < 0 {
				servedObjs[o].kind = soDying
				enqueue(o, -1)
				res = errno(_EMFILE)
			} else {
				res = uint64(fd)
			}
		}
	}
	wake(int(i), res)
}

// notifyServed reports a readiness change of obj to epoll.
func notifyServed(obj int32) {
	for fd := range fds {
		if fds[fd].kind == fdServed && fds[fd].obj == obj {
			notifyFD(int32(fd))
		}
	}
}

// servedClose queues the close of a served descriptor's object.
func servedClose(d *fdesc) {
	o := &servedObjs[d.obj]
	o.kind = soDying
	if o.server < 0 || !enqueue(d.obj, -1) {
		*o = servedObj{}
	}
}

// serverClose fails every call waiting on the server and forgets its
// objects and names: their descriptors answer EIO from then on.
func serverClose(d *fdesc) {
	s := &servers[d.obj]
	for i := range live() {
		t := &threads[i]
		if t.state == tsBlocked && t.wait == waitServe && int32(servedObjs[t.waitFD].server) == d.obj {
			if t.serveNew >= 0 {
				servedObjs[t.serveNew] = servedObj{}
			}
			wake(i, errno(_EIO))
		}
	}
	for i := 0; i < nNames; i++ {
		if int32(servedObjs[servedNames[i].obj].server) == d.obj {
			nNames--
			servedNames[i] = servedNames[nNames]
			i--
		}
	}
	for i := range servedObjs {
		o := &servedObjs[i]
		if o.kind == soFree || int32(o.server) != d.obj {
			continue
		}
		if int32(i) == socketsObj {
			socketsObj = -1
		}
		if o.kind == soDying || o.kind == soName || o.kind == soSockets {
			*o = servedObj{}
		} else {
			o.server = -1 // still referenced by a descriptor: EIO
			o.rx = 0      // the server's memory
		}
	}
	s.used, s.fd, s.head, s.n = false, -1, 0, 0
}

// servedCall forwards a system call on a served descriptor, reporting
// whether it did; calls the kernel answers itself (close, fcntl, dup)
// are not forwarded.
func servedCall(c *percpu, f *TrapFrame) bool {
	switch f.RAX {
	case unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
		unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV,
		unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_LSEEK, unix.SYS_FSYNC,
		unix.SYS_FDATASYNC, unix.SYS_FSTAT, unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE,
		unix.SYS_FADVISE64, unix.SYS_IOCTL, unix.SYS_CONNECT, unix.SYS_BIND,
		unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_SENDTO,
		unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG,
		unix.SYS_RECVMMSG, unix.SYS_SHUTDOWN, unix.SYS_GETSOCKNAME,
		unix.SYS_GETPEERNAME, unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT:
	default:
		return false
	}
	d := getFD(int64(f.RDI))
	if d == nil || d.kind != fdServed {
		return false
	}
	if f.RAX == unix.SYS_IOCTL && f.RSI == ioctlFIONBIO {
		// O_NONBLOCK is the descriptor's, kept here (fcntl F_SETFL).
		if !userOK(uintptr(f.RDX), 4, false) {
			f.RAX = errno(_EFAULT)
			return true
		}
		d.nonblk = *(*int32)(ptr(uintptr(f.RDX))) != 0
		f.RAX = 0
		return true
	}
	o := &servedObjs[d.obj]
	if o.server < 0 {
		f.RAX = errno(_EIO)
		return true
	}
	if f.RAX == unix.SYS_GETSOCKNAME || f.RAX == unix.SYS_GETPEERNAME {
		f.RAX = sockName(o, f.RAX == unix.SYS_GETPEERNAME, uintptr(f.RSI), uintptr(f.RDX))
		return true
	}
	if f.RAX == unix.SYS_READ && o.kind == soSocket && o.rx != 0 && f.RDX > 0 {
		if k, ok := rxTake(d.obj, uintptr(f.RSI), uintptr(f.RDX)); !ok {
			f.RAX = errno(_EFAULT)
			return true
		} else if k > 0 {
			f.RAX = uint64(k)
			return true
		}
	}
	// Go's netpoller reads until EAGAIN: the last read of every burst
	// would be a round trip to the server for nothing.
	if d.nonblk && o.kind == soSocket && o.exact && wouldBlock(f.RAX, f.R10, f.RDX, servedEvents(o)) {
		f.RAX = errno(_EAGAIN)
		return true
	}
	newKind := int8(soFree)
	if f.RAX == unix.SYS_ACCEPT || f.RAX == unix.SYS_ACCEPT4 {
		newKind = soSocket
	}
	forward(c, f, d.obj, newKind, d.nonblk)
	return true
}

// rxTake copies up to n bytes from socket object obj's receive ring to the
// program's buf and returns how many it copied; false if buf could not
// take them (EFAULT). If the server waited for space, it is told. Another
// consumer can only be the server (recv with flags, readv...), on another
// thread: the copy is redone if it moved the ring on meanwhile.
func rxTake(obj int32, buf, n uintptr) (uintptr, bool) {
	rx := servedObjs[obj].rx
	prod, cons := (*uint32)(ptr(rx+rxProd)), (*uint32)(ptr(rx+rxCons))
	for {
		c := atomic.LoadUint32(cons)
		avail := atomic.LoadUint32(prod) - c
		if avail == 0 || avail > rxSize {
			return 0, true
		}
		k := min(n, uintptr(avail))
		if !userOK(buf, k, true) {
			return 0, false
		}
		at := uintptr(c % rxSize)
		first := min(k, rxSize-at)
		copy(userBytes(buf, first), userBytes(rx+rxData+at, first))
		copy(userBytes(buf+first, k-first), userBytes(rx+rxData, k-first))
		if atomic.CompareAndSwapUint32(cons, c, c+uint32(k)) {
			if atomic.SwapUint32((*uint32)(ptr(rx+rxWant)), 0) == 1 && !servedObjs[obj].rxQueued {
				servedObjs[obj].rxQueued = enqueue(obj, entryRxSpace)
			}
			return k, true
		}
	}
}

// rxReady reports whether socket object o's receive ring holds bytes.
func rxReady(o *servedObj) bool {
	if o.rx == 0 {
		return false
	}
	return atomic.LoadUint32((*uint32)(ptr(o.rx+rxProd))) != atomic.LoadUint32((*uint32)(ptr(o.rx+rxCons)))
}

// servedEvents is a served object's epoll readiness: what its server last
// reported, and EPOLLIN while its receive ring holds bytes.
func servedEvents(o *servedObj) uint32 {
	if rxReady(o) {
		return o.events | epollIn
	}
	return o.events
}

// wouldBlock reports whether non-blocking system call sysno (with r10 and
// rdx, where recvfrom, sendto, recvmsg and sendmsg keep their flags) on a
// socket whose exact readiness is events would return EAGAIN: a read or a
// recv without flags when nothing is readable, hung up or in error, a
// write or a send without flags when nothing is writable, hung up or in
// error. Anything else is the server's to answer.
func wouldBlock(sysno, r10, rdx uint64, events uint32) bool {
	const (
		readable = epollIn | epollRdhup | epollHup | epollErr
		writable = epollOut | epollHup | epollErr
	)
	var flags uint64
	var ready uint32
	switch sysno {
	case unix.SYS_READ, unix.SYS_READV:
		ready = readable
	case unix.SYS_RECVFROM:
		flags, ready = r10, readable
	case unix.SYS_RECVMSG:
		flags, ready = rdx, readable
	case unix.SYS_WRITE, unix.SYS_WRITEV:
		ready = writable
	case unix.SYS_SENDTO:
		flags, ready = r10, writable
	case unix.SYS_SENDMSG:
		flags, ready = rdx, writable
	default:
		return false
	}
	return flags&^unix.MSG_DONTWAIT == 0 && events&ready == 0
}

// servedSocket answers socket(2) for the server that took sockets. It
// cannot wait for the server (see servedObj), so it checks the arguments
// as Linux does for the families served, installs the descriptor at once
// and queues the creation; the server makes the socket before it answers
// any later call on it.
func servedSocket(c *percpu, f *TrapFrame) {
	if socketsObj < 0 {
		f.RAX = errno(_EAFNOSUPPORT)
		return
	}
	domain, typ, proto := int32(f.RDI), int32(f.RSI), int32(f.RDX)
	if e := checkSocket(domain, typ, proto); e != 0 {
		f.RAX = errno(e)
		return
	}
	srv := int32(servedObjs[socketsObj].server)
	o := allocObj(soSocket, srv)
	if o < 0 {
		f.RAX = errno(_ENFILE)
		return
	}
	so := &servedObjs[o]
	so.domain, so.typ, so.proto = domain, typ, proto
	// Until the server says otherwise: bound to nothing, no peer.
	switch domain {
	case afINET:
		so.sockLen = 16
	case afINET6:
		so.sockLen = 28
	case afNETLINK:
		so.sockLen = 12
	}
	so.sock[0] = byte(domain)
	fd := allocFD(fdesc{kind: fdServed, obj: o, nonblk: typ&oNONBLOCK != 0, cloexec: typ&0x80000 != 0})
	if fd < 0 {
		*so = servedObj{}
		f.RAX = errno(_EMFILE)
		return
	}
	if !enqueue(o, entryCreate) {
		fds[fd] = fdesc{}
		*so = servedObj{}
		f.RAX = errno(_ENOBUFS)
		return
	}
	f.RAX = uint64(fd)
}

// Socket families, types and protocols the socket server makes.
const (
	afINET, afINET6, afNETLINK = 2, 10, 16

	sockStream, sockDgram, sockRaw, sockPacket = 1, 2, 3, 10

	ipprotoICMP, ipprotoTCP, ipprotoUDP, ipprotoICMPv6 = 1, 6, 17, 58
)

// checkSocket validates socket(2)'s arguments as the socket server
// (netstack/socket) does, in the same order, so that its making the
// socket later cannot fail: TestCheckSocketMatchesServer holds the two
// together.
func checkSocket(domain, typ, proto int32) unix.Errno {
	if typ&^(0xf|oNONBLOCK|0x80000) != 0 {
		return _EINVAL
	}
	t := typ & 0xf
	if t < sockStream || t > sockPacket {
		return _EINVAL
	}
	switch domain {
	case afINET, afINET6:
		icmp := int32(ipprotoICMP)
		if domain == afINET6 {
			icmp = ipprotoICMPv6
		}
		switch t {
		case sockStream:
			if proto != 0 && proto != ipprotoTCP {
				return _EPROTONOSUPPORT
			}
		case sockDgram:
			if proto != 0 && proto != ipprotoUDP && proto != icmp {
				return _EPROTONOSUPPORT
			}
		case sockRaw:
			return _EPERM // an unprivileged process's answer
		default:
			return _ESOCKTNOSUPPORT
		}
		return 0
	case afNETLINK:
		if t != sockRaw && t != sockDgram {
			return _ESOCKTNOSUPPORT
		}
		if proto != 0 { // NETLINK_ROUTE
			return _EPROTONOSUPPORT
		}
		return 0
	}
	return _EAFNOSUPPORT
}

// sockName is getsockname (peer false) or getpeername of a served socket,
// from the addresses the server reported: truncated to the program's
// buffer, the full length stored, as Linux's move_addr_to_user.
func sockName(o *servedObj, peer bool, p, lp uintptr) uint64 {
	name, n := o.sock[:], int(o.sockLen)
	if peer {
		name, n = o.peer[:], int(o.peerLen)
		if n == 0 {
			return errno(_ENOTCONN)
		}
	}
	if !userOK(lp, 4, true) {
		return errno(_EFAULT)
	}
	l := *(*int32)(ptr(lp))
	if l < 0 {
		return errno(_EINVAL)
	}
	m := min(int(l), n)
	if !userOK(p, uintptr(m), true) {
		return errno(_EFAULT)
	}
	copy(userBytes(p, uintptr(m)), name[:m])
	*(*int32)(ptr(lp)) = int32(n)
	return 0
}

// servedPath forwards a call on a registered path (open, stat), reporting
// whether path is one.
func servedPath(c *percpu, f *TrapFrame, path []byte, create bool) bool {
	o := lookupName(path)
	if o < 0 {
		return false
	}
	kind := int8(soFree)
	if create {
		kind = soFile
	}
	forward(c, f, o, kind, false)
	return true
}
