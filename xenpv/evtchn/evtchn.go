// Package evtchn gives Go code Xen event channels through the evtchn
// device, /dev/xen/evtchn, with Linux's interface (include/uapi/xen/evtchn.h):
// the same code runs in a unikgo guest, whose kernel provides the device,
// and in a Linux dom0. The device is opened as an ordinary file, so a
// goroutine waiting for an event parks in the runtime's netpoller instead
// of holding a thread.
//
// A Mux reads fired ports in one goroutine and wakes each port's waiter; a
// port is masked when it fires and unmasked right after it is read, so
// consumers must re-check their ring after every wake-up (the usual Xen
// "final check"), which also makes a wake-up that raced ahead harmless.
package evtchn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is where the device lives, in a guest and in Linux.
const DevicePath = "/dev/xen/evtchn"

// ioctl requests: _IOC(_IOC_NONE, 'E', nr, size).
const (
	ioctlBindVIRQ        = 0x00044500
	ioctlBindInterdomain = 0x00084501
	ioctlBindUnboundPort = 0x00044502
	ioctlUnbind          = 0x00044503
	ioctlNotify          = 0x00044504
	ioctlReset           = 0x00004505
	// ioctlAdopt claims a port the toolstack already bound for this domain
	// (xenstore, console); unikgo's kernel only.
	ioctlAdopt = 0x00044580
)

// Port is a local event-channel port.
type Port uint32

// Device is an open event-channel device.
type Device struct {
	f *os.File
}

// Open opens the event-channel device.
func Open() (*Device, error) {
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("evtchn: %w (not running on Xen?)", err)
	}
	return &Device{f: f}, nil
}

// Close closes the device; its ports are unbound.
func (d *Device) Close() error { return d.f.Close() }

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) (int, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var r uintptr
	var errno unix.Errno
	if cerr := rc.Control(func(fd uintptr) {
		r, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); cerr != nil {
		return 0, cerr
	}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// BindInterdomain binds a new local port to remotePort of domain remote.
func (d *Device) BindInterdomain(remote uint16, remotePort Port) (Port, error) {
	a := [2]uint32{uint32(remote), uint32(remotePort)}
	p, err := d.ioctl(ioctlBindInterdomain, unsafe.Pointer(&a))
	if err != nil {
		return 0, fmt.Errorf("evtchn: bind to domain %d port %d: %w", remote, remotePort, err)
	}
	return Port(p), nil
}

// AllocUnbound allocates a local port that domain remote may bind to.
func (d *Device) AllocUnbound(remote uint16) (Port, error) {
	a := uint32(remote)
	p, err := d.ioctl(ioctlBindUnboundPort, unsafe.Pointer(&a))
	if err != nil {
		return 0, fmt.Errorf("evtchn: allocate a port for domain %d: %w", remote, err)
	}
	return Port(p), nil
}

// Adopt claims a port the toolstack bound for this domain, such as the
// xenstore port (HVM_PARAM_STORE_EVTCHN).
func (d *Device) Adopt(p Port) error {
	a := uint32(p)
	if _, err := d.ioctl(ioctlAdopt, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("evtchn: adopt port %d: %w", p, err)
	}
	return nil
}

// Notify signals the remote end of p.
func (d *Device) Notify(p Port) error {
	a := uint32(p)
	if _, err := d.ioctl(ioctlNotify, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("evtchn: notify port %d: %w", p, err)
	}
	return nil
}

// Unbind closes p.
func (d *Device) Unbind(p Port) error {
	a := uint32(p)
	if _, err := d.ioctl(ioctlUnbind, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("evtchn: unbind port %d: %w", p, err)
	}
	return nil
}

// ReadPorts blocks until ports fire and stores them in buf.
func (d *Device) ReadPorts(buf []Port) (int, error) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*4)
	n, err := d.f.Read(b)
	return n / 4, err
}

// Unmask re-enables delivery of p after it fired.
func (d *Device) Unmask(p Port) error {
	a := uint32(p)
	_, err := d.f.Write(unsafe.Slice((*byte)(unsafe.Pointer(&a)), 4))
	return err
}

// ErrClosed is returned by waits on a closed Mux.
var ErrClosed = errors.New("evtchn: device closed")

// Mux dispatches fired ports to per-port waiters.
type Mux struct {
	dev   *Device
	mu    sync.Mutex
	chans map[Port]chan struct{}
	done  chan struct{}
	err   error
}

// NewMux starts reading d in a goroutine.
func NewMux(d *Device) *Mux {
	m := &Mux{dev: d, chans: make(map[Port]chan struct{}), done: make(chan struct{})}
	go m.loop()
	return m
}

func (m *Mux) loop() {
	var buf [64]Port
	for {
		n, err := m.dev.ReadPorts(buf[:])
		if err != nil {
			m.mu.Lock()
			m.err = err
			m.mu.Unlock()
			close(m.done)
			return
		}
		for _, p := range buf[:n] {
			m.mu.Lock()
			ch := m.chans[p]
			m.mu.Unlock()
			if ch != nil {
				select {
				case ch <- struct{}{}:
				default: // a wake-up is already pending
				}
			}
			m.dev.Unmask(p)
		}
	}
}

// Channel is one port's wake-ups.
type Channel struct {
	m    *Mux
	Port Port
	ch   chan struct{}
}

// Channel registers p and returns its waiter.
func (m *Mux) Channel(p Port) *Channel {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.chans[p]
	if ch == nil {
		ch = make(chan struct{}, 1)
		m.chans[p] = ch
	}
	return &Channel{m: m, Port: p, ch: ch}
}

// Wait blocks until the port fires (or fired since the last Wait).
func (c *Channel) Wait(ctx context.Context) error {
	select {
	case <-c.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.m.done:
		return fmt.Errorf("%w: %v", ErrClosed, c.m.err)
	}
}

// Notify signals the remote end.
func (c *Channel) Notify() error { return c.m.dev.Notify(c.Port) }

// C returns the port's wake-up channel: buffered with capacity one, so
// wake-ups coalesce like the pending bit and none is lost between waits.
func (c *Channel) C() <-chan struct{} { return c.ch }

// Device returns the device the Mux reads, to bind more ports on it.
func (m *Mux) Device() *Device { return m.dev }

// Forget drops p's waiter; call it after unbinding p.
func (m *Mux) Forget(p Port) {
	m.mu.Lock()
	delete(m.chans, p)
	m.mu.Unlock()
}
