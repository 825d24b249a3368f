package kernel

import "github.com/unikgo/unikgo/xenpv"

// /dev/xen/evtchn, with Linux's interface (include/uapi/xen/evtchn.h) so
// that Go code written against libxenevtchn's model works unchanged: ioctls
// bind ports to the open file, read returns the u32 numbers of ports that
// fired (each is masked when it fires), write unmasks the ports it lists.
// One extra ioctl, adopt, claims a port the toolstack already bound for us
// (the xenstore and console ports), which Linux handles in the kernel.

const (
	ioctlEvtchnBindVIRQ        = 0x00044500
	ioctlEvtchnBindInterdomain = 0x00084501
	ioctlEvtchnBindUnboundPort = 0x00044502
	ioctlEvtchnUnbind          = 0x00044503
	ioctlEvtchnNotify          = 0x00044504
	ioctlEvtchnReset           = 0x00004505
	ioctlEvtchnAdopt           = 0x00044580 // unikgo: claim an already bound local port

	maxEvtchnDevs = 8
	evtchnRing    = 1024
)

type evtchnDev struct {
	used       bool
	fd         int32
	head, n    int
	ring       [evtchnRing]uint32
	overflowed bool
}

var (
	evtchnDevs [maxEvtchnDevs]evtchnDev
	portOwner  [xenpv.NumPorts]int8 // device index + 1; 0 = none
)

const fdEvtchn = fdPipeW + 1

func evtchnOpen(flags uint64) uint64 {
	if !onXen {
		return errno(_ENODEV)
	}
	for i := range evtchnDevs {
		if !evtchnDevs[i].used {
			fd := allocFD(fdesc{kind: fdEvtchn, obj: int32(i), nonblk: flags&oNONBLOCK != 0, cloexec: flags&0x80000 != 0})
			if fd < 0 {
				return errno(_EMFILE)
			}
			evtchnDevs[i] = evtchnDev{used: true, fd: int32(fd)}
			return uint64(fd)
		}
	}
	return errno(_ENFILE)
}

// evtchnFired runs in the upcall for every port that fired (now masked).
func evtchnFired(port uint32) {
	if verbose {
		kprint("unikgo: evtchn: port ")
		kprintDec(uint64(port))
		kprint(" fired\n")
	}
	if port == debugPort && port != 0 {
		dumpState()
		xenpv.Unmask(port)
		return
	}
	o := portOwner[port]
	if o == 0 {
		return // nobody listens: it stays masked
	}
	d := &evtchnDevs[o-1]
	if d.n == evtchnRing {
		d.overflowed = true
		return
	}
	d.ring[(d.head+d.n)%evtchnRing] = port
	d.n++
	restartWaiters(d.fd)
	notifyFD(d.fd)
}

func bindPort(dev int, port uint32) uint64 {
	if port >= xenpv.NumPorts {
		return errno(_EINVAL)
	}
	portOwner[port] = int8(dev + 1)
	xenpv.Unmask(port)
	return uint64(port)
}

func evtchnIoctl(d *fdesc, req uint64, arg uintptr) uint64 {
	dev := int(d.obj)
	need := uintptr(4)
	if req == ioctlEvtchnBindInterdomain {
		need = 8
	}
	if req != ioctlEvtchnReset && !userOK(arg, need, false) {
		return errno(_EFAULT)
	}
	u32 := func(off uintptr) uint32 { return *(*uint32)(ptr(arg + off)) }
	switch req {
	case ioctlEvtchnBindInterdomain:
		p, err := xenpv.EvtchnBindInterdomain(uint16(u32(0)), u32(4))
		if err != nil {
			return errno(_EINVAL)
		}
		return bindPort(dev, p)
	case ioctlEvtchnBindUnboundPort:
		p, err := xenpv.EvtchnAllocUnbound(uint16(u32(0)))
		if err != nil {
			return errno(_EINVAL)
		}
		return bindPort(dev, p)
	case ioctlEvtchnAdopt:
		p := u32(0)
		if p >= xenpv.NumPorts || portOwner[p] != 0 || p == xenConsPort {
			return errno(_EINVAL)
		}
		return bindPort(dev, p)
	case ioctlEvtchnUnbind:
		p := u32(0)
		if p >= xenpv.NumPorts || int(portOwner[p]) != dev+1 {
			return errno(_ENOENT)
		}
		portOwner[p] = 0
		xenpv.Mask(p)
		xenpv.EvtchnClose(p)
		return 0
	case ioctlEvtchnNotify:
		p := u32(0)
		if p >= xenpv.NumPorts || int(portOwner[p]) != dev+1 {
			return errno(_ENOENT)
		}
		xenpv.EvtchnSend(p)
		return 0
	case ioctlEvtchnReset:
		e := &evtchnDevs[dev]
		e.head, e.n, e.overflowed = 0, 0, false
		return 0
	}
	return errno(_ENOTTY)
}

func evtchnRead(c *percpu, f *TrapFrame, d *fdesc, buf, n uintptr) {
	e := &evtchnDevs[d.obj]
	if e.overflowed {
		f.RAX = errno(_EFBIG)
		return
	}
	if e.n == 0 {
		if d.nonblk {
			f.RAX = errno(_EAGAIN)
			return
		}
		restartOn(c, f, int32(f.RDI))
		return
	}
	cnt := int(n / 4)
	if cnt == 0 {
		f.RAX = errno(_EINVAL)
		return
	}
	if cnt > e.n {
		cnt = e.n
	}
	if !userOK(buf, uintptr(cnt)*4, true) {
		f.RAX = errno(_EFAULT)
		return
	}
	for i := 0; i < cnt; i++ {
		*(*uint32)(ptr(buf + uintptr(i)*4)) = e.ring[e.head]
		e.head = (e.head + 1) % evtchnRing
		e.n--
	}
	f.RAX = uint64(cnt) * 4
	if verbose {
		kprint("unikgo: evtchn: read ")
		kprintDec(uint64(cnt))
		kprint(" ports\n")
	}
}

func evtchnWrite(f *TrapFrame, d *fdesc, buf, n uintptr) {
	if n%4 != 0 || !userOK(buf, n, false) {
		f.RAX = errno(_EINVAL)
		return
	}
	for i := uintptr(0); i < n; i += 4 {
		p := *(*uint32)(ptr(buf + i))
		if p < xenpv.NumPorts && int(portOwner[p]) == int(d.obj)+1 {
			xenpv.Unmask(p)
			if verbose {
				kprint("unikgo: evtchn: unmask ")
				kprintDec(uint64(p))
				kprint("\n")
			}
		}
	}
	f.RAX = uint64(n)
}

func evtchnClose(d *fdesc) {
	for p := range portOwner {
		if int(portOwner[p]) == int(d.obj)+1 {
			portOwner[p] = 0
			xenpv.Mask(uint32(p))
		}
	}
	evtchnDevs[d.obj].used = false
}
