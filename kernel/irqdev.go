package kernel

// /dev/unikgo/irq: device interrupts for Go drivers. Opening the file
// allocates a LAPIC vector; an ioctl returns the MSI message (address and
// data, Intel SDM vol. 3 §11.11) that makes a device raise it. Reading
// returns, as a little-endian u64, how many times it fired since the last
// read, waiting (or EAGAIN when non-blocking) while none did; epoll
// reports EPOLLIN meanwhile. So a driver parks in the netpoller and no
// driver code runs in interrupt context. kernel/irq is the Go side.

const (
	irqVectorBase = 0x40
	irqVectors    = 64

	ioctlIRQInfo = 0x80104900 // _IOR('I', 0, struct{addr u64; data, vector u32})

	lapicID = 0x20
)

type irqLine struct {
	fd    int32 // -1: vector free
	count uint64
}

var irqLines [irqVectors]irqLine

const fdIRQ = fdDMA + 1

func irqInit() {
	for i := range irqLines {
		irqLines[i].fd = -1
	}
}

func irqOpen(flags uint64) uint64 {
	for i := range irqLines {
		if irqLines[i].fd >= 0 {
			continue
		}
		fd := allocFD(fdesc{kind: fdIRQ, obj: int32(i), nonblk: flags&oNONBLOCK != 0, cloexec: flags&0x80000 != 0})
		if fd < 0 {
			return errno(_EMFILE)
		}
		irqLines[i] = irqLine{fd: int32(fd)}
		return uint64(fd)
	}
	return errno(_EBUSY)
}

func irqIoctl(d *fdesc, req uint64, arg uintptr) uint64 {
	if req != ioctlIRQInfo {
		return errno(_ENOTTY)
	}
	if !userOK(arg, 16, true) {
		return errno(_EFAULT)
	}
	v := uint32(irqVectorBase + d.obj)
	// Fixed delivery, edge, physical destination: this CPU's APIC ID.
	*(*uint64)(ptr(arg)) = 0xfee00000 | uint64(lapicIDValue()&0xff)<<12
	*(*uint32)(ptr(arg + 8)) = v
	*(*uint32)(ptr(arg + 12)) = v
	return 0
}

// irqFired runs in the interrupt for a device vector.
func irqFired(vec uint64) {
	l := &irqLines[vec-irqVectorBase]
	if l.fd < 0 {
		return
	}
	l.count++
	restartWaiters(l.fd)
	notifyFD(l.fd)
}

func irqRead(c *percpu, f *TrapFrame, d *fdesc, buf, n uintptr) {
	l := &irqLines[d.obj]
	if n < 8 {
		f.RAX = errno(_EINVAL)
		return
	}
	if l.count == 0 {
		if d.nonblk {
			f.RAX = errno(_EAGAIN)
			return
		}
		restartOn(c, f, int32(f.RDI))
		return
	}
	if !userOK(buf, 8, true) {
		f.RAX = errno(_EFAULT)
		return
	}
	*(*uint64)(ptr(buf)) = l.count
	l.count = 0
	f.RAX = 8
}

func irqClose(d *fdesc) {
	irqLines[d.obj] = irqLine{fd: -1}
}
