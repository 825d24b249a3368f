package kernel

// Pipes: a ring buffer of pipePages frames, allocated when the pipe is
// created. Go makes pipe ends non-blocking and waits in epoll (edges are
// pushed with notifyFD); a blocking end parks the thread and re-executes
// the system call when the pipe changes (restartOn).

const (
	maxPipes  = 32
	pipePages = 4
	pipeCap   = pipePages * pageSize
)

type pipe struct {
	used             bool
	readers, writers int32
	rfd, wfd         int32
	head, n          uint64 // read position and bytes buffered
	pages            [pipePages]uintptr
}

var pipes [maxPipes]pipe

const (
	fdPipeR = fdEpoll + 1 + iota
	fdPipeW
)

func sysPipe2(fdsp uintptr, flags uint64) uint64 {
	if flags&^(oNONBLOCK|0x80000) != 0 {
		return errno(_EINVAL)
	}
	if !userOK(fdsp, 8, true) {
		return errno(_EFAULT)
	}
	pi := -1
	for i := range pipes {
		if !pipes[i].used {
			pi = i
			break
		}
	}
	if pi < 0 {
		return errno(_ENFILE)
	}
	p := &pipes[pi]
	*p = pipe{}
	for i := range p.pages {
		pa, ok := allocFrame()
		if !ok {
			for j := 0; j < i; j++ {
				freeFrame(p.pages[j])
			}
			return errno(_ENOMEM)
		}
		p.pages[i] = pa
	}
	nb, ce := flags&oNONBLOCK != 0, flags&0x80000 != 0
	r := allocFD(fdesc{kind: fdPipeR, obj: int32(pi), nonblk: nb, cloexec: ce})
	if r < 0 {
		freePipePages(p)
		return errno(_EMFILE)
	}
	w := allocFD(fdesc{kind: fdPipeW, obj: int32(pi), nonblk: nb, cloexec: ce})
	if w < 0 {
		fds[r] = fdesc{}
		freePipePages(p)
		return errno(_EMFILE)
	}
	p.used = true
	p.readers, p.writers = 1, 1
	p.rfd, p.wfd = int32(r), int32(w)
	*(*int32)(ptr(fdsp)) = int32(r)
	*(*int32)(ptr(fdsp + 4)) = int32(w)
	return 0
}

func freePipePages(p *pipe) {
	for i, pa := range p.pages {
		if pa != 0 {
			freeFrame(pa)
			p.pages[i] = 0
		}
	}
}

func pipeReadiness(d *fdesc) uint32 {
	p := &pipes[d.obj]
	if d.kind == fdPipeR {
		r := uint32(0)
		if p.n > 0 {
			r |= epollIn
		}
		if p.writers == 0 {
			r |= epollIn | epollHup | epollRdhup
		}
		return r
	}
	if p.readers == 0 {
		return epollOut | epollErr
	}
	if p.n < pipeCap {
		return epollOut
	}
	return 0
}

// pipeChanged wakes threads blocked on the pipe and pushes epoll edges.
func pipeChanged(p *pipe) {
	restartWaiters(p.rfd)
	restartWaiters(p.wfd)
	notifyFD(p.rfd)
	notifyFD(p.wfd)
}

func pipeRead(c *percpu, f *TrapFrame, d *fdesc, buf, n uintptr) {
	p := &pipes[d.obj]
	if p.n == 0 {
		if p.writers == 0 {
			f.RAX = 0
			return
		}
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
	if uint64(n) > p.n {
		n = uintptr(p.n)
	}
	for i := uintptr(0); i < n; {
		off := (p.head + uint64(i)) % pipeCap
		chunk := uintptr(pageSize - off%pageSize)
		if chunk > n-i {
			chunk = n - i
		}
		copy(userBytes(buf+i, chunk), userBytes(p.pages[off/pageSize]+uintptr(off%pageSize), chunk))
		i += chunk
	}
	p.head = (p.head + uint64(n)) % pipeCap
	p.n -= uint64(n)
	f.RAX = uint64(n)
	pipeChanged(p)
}

func pipeWrite(c *percpu, f *TrapFrame, d *fdesc, buf, n uintptr) {
	p := &pipes[d.obj]
	if p.readers == 0 {
		raise(int(c.cur), sigPIPE)
		f.RAX = errno(_EPIPE)
		return
	}
	space := uintptr(pipeCap - p.n)
	if space == 0 {
		if d.nonblk {
			f.RAX = errno(_EAGAIN)
			return
		}
		restartOn(c, f, int32(f.RDI))
		return
	}
	if !userOK(buf, n, false) {
		f.RAX = errno(_EFAULT)
		return
	}
	if n > space {
		n = space
	}
	for i := uintptr(0); i < n; {
		off := (p.head + p.n + uint64(i)) % pipeCap
		chunk := uintptr(pageSize - off%pageSize)
		if chunk > n-i {
			chunk = n - i
		}
		copy(userBytes(p.pages[off/pageSize]+uintptr(off%pageSize), chunk), userBytes(buf+i, chunk))
		i += chunk
	}
	p.n += uint64(n)
	f.RAX = uint64(n)
	pipeChanged(p)
}

func pipeClose(d *fdesc) {
	p := &pipes[d.obj]
	if d.kind == fdPipeR {
		p.readers--
	} else {
		p.writers--
	}
	if p.readers == 0 && p.writers == 0 {
		freePipePages(p)
		p.used = false
		return
	}
	pipeChanged(p)
}

// restartOn parks the current thread until fd changes, then re-executes
// its system call (SYSCALL is two bytes long; the number goes back in RAX).
func restartOn(c *percpu, f *TrapFrame, fd int32) {
	t := &threads[c.cur]
	t.waitFD = fd
	f.RIP -= 2
	f.RAX = t.sysno
	block(c, f, waitIO, 0)
}

func restartWaiters(fd int32) {
	for i := range live() {
		t := &threads[i]
		if t.state == tsBlocked && t.wait == waitIO && t.waitFD == fd {
			wake(i, t.sysno)
		}
	}
}
