package kernel

// File descriptors: the console (0, 1, 2), eventfds and epoll instances,
// which is what the Go runtime's netpoller needs. Readiness changes are
// pushed to epoll instances watching an object (for edge-triggered
// entries) and wake threads blocked in epoll_pwait.

const maxFDs = 256

const (
	fdFree = iota
	fdConsole
	fdEventfd
	fdEpoll
)

type fdesc struct {
	kind    int32
	obj     int32 // index into eventfds / epolls
	nonblk  bool
	cloexec bool
	rdonly  bool
}

var fds [maxFDs]fdesc

func fdInit() {
	irqInit()
	fds[0] = fdesc{kind: fdConsole, rdonly: true}
	fds[1] = fdesc{kind: fdConsole}
	fds[2] = fdesc{kind: fdConsole}
}

func allocFD(d fdesc) int {
	for i := range fds {
		if fds[i].kind == fdFree {
			fds[i] = d
			return i
		}
	}
	return -1
}

func getFD(fd int64) *fdesc {
	if fd < 0 || fd >= maxFDs || fds[fd].kind == fdFree {
		return nil
	}
	return &fds[fd]
}

// Eventfds.
const (
	maxEventfds  = 64
	efdSemaphore = 1
	efdNonblock  = 0x800
	efdCloexec   = 0x80000
)

type eventfd struct {
	used  bool
	sem   bool
	count uint64
}

var eventfds [maxEventfds]eventfd

func sysEventfd2(initval uint64, flags uint64) uint64 {
	if flags&^(efdSemaphore|efdNonblock|efdCloexec) != 0 {
		return errno(_EINVAL)
	}
	for i := range eventfds {
		if !eventfds[i].used {
			fd := allocFD(fdesc{kind: fdEventfd, obj: int32(i), nonblk: flags&efdNonblock != 0, cloexec: flags&efdCloexec != 0})
			if fd < 0 {
				return errno(_EMFILE)
			}
			eventfds[i] = eventfd{used: true, sem: flags&efdSemaphore != 0, count: initval & 0xffffffff}
			return uint64(fd)
		}
	}
	return errno(_ENFILE)
}

// Epoll.
const (
	maxEpolls    = 16
	maxInterest  = 128
	epollIn      = 0x001
	epollOut     = 0x004
	epollErr     = 0x008
	epollHup     = 0x010
	epollRdhup   = 0x2000
	epollET      = 1 << 31
	epollOneshot = 1 << 30
	epollCtlAdd  = 1
	epollCtlDel  = 2
	epollCtlMod  = 3
	epollEvSize  = 12 // struct epoll_event is packed on x86-64
)

type interest struct {
	fd     int32
	events uint32
	data   uint64
	armed  bool // edge-triggered: an edge not yet reported
}

type epoll struct {
	used bool
	n    int
	ents [maxInterest]interest
}

var epolls [maxEpolls]epoll

func sysEpollCreate1(flags uint64) uint64 {
	for i := range epolls {
		if !epolls[i].used {
			fd := allocFD(fdesc{kind: fdEpoll, obj: int32(i), cloexec: flags&0x80000 != 0})
			if fd < 0 {
				return errno(_EMFILE)
			}
			epolls[i] = epoll{used: true}
			return uint64(fd)
		}
	}
	return errno(_ENFILE)
}

// readiness returns the current epoll events of fd.
func readiness(fd int32) uint32 {
	d := &fds[fd]
	switch d.kind {
	case fdConsole:
		if d.rdonly {
			return 0
		}
		return epollOut
	case fdPipeR, fdPipeW:
		return pipeReadiness(d)
	case fdServer:
		if servers[d.obj].n > 0 {
			return epollIn | epollOut
		}
		return epollOut
	case fdServed:
		return servedEvents(&servedObjs[d.obj])
	case fdIRQ:
		if irqLines[d.obj].count > 0 {
			return epollIn
		}
		return 0
	case fdEvtchn:
		if evtchnDevs[d.obj].n > 0 {
			return epollIn | epollOut
		}
		return epollOut
	case fdEventfd:
		e := &eventfds[d.obj]
		r := uint32(0)
		if e.count > 0 {
			r |= epollIn
		}
		if e.count < 0xfffffffffffffffe {
			r |= epollOut
		}
		return r
	}
	return 0
}

func sysEpollCtl(epfd int64, op int, fd int64, ev uintptr) uint64 {
	d := getFD(epfd)
	t := getFD(fd)
	if d == nil || t == nil {
		return errno(_EBADF)
	}
	if d.kind != fdEpoll || fd == epfd {
		return errno(_EINVAL)
	}
	if t.kind == fdServed && servedObjs[t.obj].kind != soSocket {
		return errno(_EPERM) // a disk, as on Linux: always ready, not pollable
	}
	ep := &epolls[d.obj]
	idx := -1
	for i := 0; i < ep.n; i++ {
		if ep.ents[i].fd == int32(fd) {
			idx = i
		}
	}
	var events uint32
	var data uint64
	if op != epollCtlDel {
		if !userOK(ev, epollEvSize, false) {
			return errno(_EFAULT)
		}
		events = *(*uint32)(ptr(ev))
		data = *(*uint64)(ptr(ev + 4))
	}
	switch op {
	case epollCtlAdd:
		if idx >= 0 {
			return errno(_EEXIST)
		}
		if ep.n == maxInterest {
			return errno(_ENOSPC)
		}
		ep.ents[ep.n] = interest{fd: int32(fd), events: events, data: data, armed: true}
		ep.n++
	case epollCtlMod:
		if idx < 0 {
			return errno(_ENOENT)
		}
		ep.ents[idx] = interest{fd: int32(fd), events: events, data: data, armed: true}
	case epollCtlDel:
		if idx < 0 {
			return errno(_ENOENT)
		}
		ep.n--
		ep.ents[idx] = ep.ents[ep.n]
	default:
		return errno(_EINVAL)
	}
	if op != epollCtlDel {
		notifyEpollWaiters(int(d.obj))
	}
	return 0
}

// collect writes up to max ready events of epoll instance e to buf.
func collect(e int, buf uintptr, max int) int {
	ep := &epolls[e]
	n := 0
	for i := 0; i < ep.n && n < max; i++ {
		in := &ep.ents[i]
		if in.events&epollET != 0 && !in.armed {
			continue
		}
		r := readiness(in.fd) & (in.events | epollErr | epollHup)
		if r == 0 {
			continue
		}
		p := buf + uintptr(n)*epollEvSize
		*(*uint32)(ptr(p)) = r
		*(*uint64)(ptr(p + 4)) = in.data
		n++
		if in.events&epollET != 0 {
			in.armed = false
		}
		if in.events&epollOneshot != 0 {
			in.events = 0
		}
	}
	return n
}

func sysEpollPwait(c *percpu, f *TrapFrame) {
	epfd, buf, max, timeout := int64(f.RDI), uintptr(f.RSI), int(int32(f.RDX)), int(int32(f.R10))
	d := getFD(epfd)
	if d == nil {
		f.RAX = errno(_EBADF)
		return
	}
	if d.kind != fdEpoll || max <= 0 {
		f.RAX = errno(_EINVAL)
		return
	}
	if max > maxInterest {
		max = maxInterest
	}
	if !userOK(buf, uintptr(max)*epollEvSize, true) {
		f.RAX = errno(_EFAULT)
		return
	}
	if n := collect(int(d.obj), buf, max); n > 0 || timeout == 0 {
		f.RAX = uint64(n)
		return
	}
	var deadline uint64
	if timeout > 0 {
		deadline = nanotime() + uint64(timeout)*1e6
	}
	t := &threads[c.cur]
	t.epfd = d.obj
	t.epEvents = buf
	t.epMax = int32(max)
	f.RAX = 0
	block(c, f, waitEpoll, deadline)
}

// notifyFD records a readiness edge on fd and wakes epoll waiters.
func notifyFD(fd int32) {
	for e := range epolls {
		ep := &epolls[e]
		if !ep.used {
			continue
		}
		hit := false
		for i := 0; i < ep.n; i++ {
			if ep.ents[i].fd == fd {
				ep.ents[i].armed = true
				hit = true
			}
		}
		if hit {
			notifyEpollWaiters(e)
		}
	}
}

func notifyEpollWaiters(e int) {
	for i := range live() {
		t := &threads[i]
		if t.state == tsBlocked && t.wait == waitEpoll && int(t.epfd) == e {
			if n := collect(e, t.epEvents, int(t.epMax)); n > 0 {
				wake(i, uint64(n))
			}
		}
	}
}

func sysRead(c *percpu, f *TrapFrame) {
	fd, buf, n := int64(f.RDI), uintptr(f.RSI), uintptr(f.RDX)
	d := getFD(fd)
	if d == nil {
		f.RAX = errno(_EBADF)
		return
	}
	switch d.kind {
	case fdPipeR:
		pipeRead(c, f, d, buf, n)
	case fdEvtchn:
		evtchnRead(c, f, d, buf, n)
	case fdIRQ:
		irqRead(c, f, d, buf, n)
	case fdServer:
		serveRead(c, f, d, buf, n)
	case fdConsole:
		f.RAX = 0 // no console input: end of file
	case fdEventfd:
		if n < 8 {
			f.RAX = errno(_EINVAL)
			return
		}
		if !userOK(buf, 8, true) {
			f.RAX = errno(_EFAULT)
			return
		}
		e := &eventfds[d.obj]
		if e.count == 0 {
			f.RAX = errno(_EAGAIN)
			return
		}
		v := e.count
		if e.sem {
			v = 1
		}
		e.count -= v
		*(*uint64)(ptr(buf)) = v
		f.RAX = 8
		notifyFD(int32(fd))
	default:
		f.RAX = errno(_EINVAL)
	}
}

func sysWrite(c *percpu, f *TrapFrame) {
	fd, buf, n := int64(f.RDI), uintptr(f.RSI), uintptr(f.RDX)
	d := getFD(fd)
	if d == nil {
		f.RAX = errno(_EBADF)
		return
	}
	if n > 1<<30 {
		n = 1 << 30
	}
	switch d.kind {
	case fdPipeW:
		pipeWrite(c, f, d, buf, n)
	case fdEvtchn:
		evtchnWrite(f, d, buf, n)
	case fdServer:
		serveWrite(f, d, buf, n)
	case fdConsole:
		if d.rdonly {
			f.RAX = errno(_EBADF)
			return
		}
		if !userOK(buf, n, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		consoleWrite(userBytes(buf, n))
		f.RAX = uint64(n)
	case fdEventfd:
		if n < 8 {
			f.RAX = errno(_EINVAL)
			return
		}
		if !userOK(buf, 8, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		v := *(*uint64)(ptr(buf))
		e := &eventfds[d.obj]
		if v == ^uint64(0) {
			f.RAX = errno(_EINVAL)
			return
		}
		if e.count+v < e.count || e.count+v > 0xfffffffffffffffe {
			f.RAX = errno(_EAGAIN)
			return
		}
		e.count += v
		f.RAX = 8
		notifyFD(int32(fd))
	default:
		f.RAX = errno(_EINVAL)
	}
}

func sysWritev(c *percpu, f *TrapFrame) {
	fd, iov, cnt := int64(f.RDI), uintptr(f.RSI), int(f.RDX)
	d := getFD(fd)
	if d == nil {
		f.RAX = errno(_EBADF)
		return
	}
	if d.kind != fdConsole || d.rdonly {
		f.RAX = errno(_EINVAL)
		return
	}
	if cnt < 0 || cnt > 1024 || !userOK(iov, uintptr(cnt)*16, false) {
		f.RAX = errno(_EINVAL)
		return
	}
	total := uint64(0)
	for i := 0; i < cnt; i++ {
		p := *(*uintptr)(ptr(iov + uintptr(i)*16))
		n := *(*uintptr)(ptr(iov + uintptr(i)*16 + 8))
		if !userOK(p, n, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		consoleWrite(userBytes(p, n))
		total += uint64(n)
	}
	f.RAX = total
}

func sysClose(fd int64) uint64 {
	d := getFD(fd)
	if d == nil {
		return errno(_EBADF)
	}
	switch d.kind {
	case fdEventfd:
		eventfds[d.obj].used = false
	case fdEpoll:
		epolls[d.obj].used = false
	case fdPipeR, fdPipeW:
		pipeClose(d)
	case fdEvtchn:
		evtchnClose(d)
	case fdDMA:
		dmaClose(int(fd))
	case fdIRQ:
		irqClose(d)
	case fdServer:
		serverClose(d)
	case fdServed:
		servedClose(d)
	}
	// Drop it from every interest list.
	for e := range epolls {
		ep := &epolls[e]
		for i := 0; i < ep.n; i++ {
			if ep.ents[i].fd == int32(fd) {
				ep.n--
				ep.ents[i] = ep.ents[ep.n]
				i--
			}
		}
	}
	*d = fdesc{}
	return 0
}

const (
	fGetFD        = 1
	fSetFD        = 2
	fGetFL        = 3
	fSetFL        = 4
	fDupFDCloexec = 1030
	oRDONLY       = 0
	oWRONLY       = 1
	oRDWR         = 2
	oNONBLOCK     = 0x800
	fdCloexecFlag = 1
)

func sysFcntl(fd int64, cmd int, arg uint64) uint64 {
	d := getFD(fd)
	if d == nil {
		return errno(_EBADF)
	}
	switch cmd {
	case fGetFD:
		if d.cloexec {
			return fdCloexecFlag
		}
		return 0
	case fSetFD:
		d.cloexec = arg&fdCloexecFlag != 0
		return 0
	case fGetFL:
		fl := uint64(oRDWR)
		if d.kind == fdConsole {
			fl = oWRONLY
			if d.rdonly {
				fl = oRDONLY
			}
		}
		if d.nonblk {
			fl |= oNONBLOCK
		}
		return fl
	case fSetFL:
		d.nonblk = arg&oNONBLOCK != 0
		return 0
	}
	return errno(_EINVAL)
}
