// Package irq gives Go drivers device interrupts from the unikgo kernel
// (/dev/unikgo/irq): each Line is one LAPIC vector with the MSI message a
// device must send to raise it. Interrupts are counted by the kernel and
// delivered to a goroutine, so driver code never runs in interrupt context.
package irq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is the kernel's interrupt device.
const DevicePath = "/dev/unikgo/irq"

const ioctlInfo = 0x80104900

// MSI is the message a device writes to raise the line (program it into
// an MSI-X table entry: address low/high and data).
type MSI struct {
	Addr uint64
	Data uint32
}

// Line is one interrupt vector.
type Line struct {
	f      *os.File
	Vector uint8
	MSI    MSI

	c    chan struct{}
	done chan struct{}
	once sync.Once
	err  error
}

// Alloc allocates a vector.
func Alloc() (*Line, error) {
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("irq: %w (interrupts exist only inside a unikgo image)", err)
	}
	var info struct {
		addr         uint64
		data, vector uint32
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, ioctlInfo, uintptr(unsafe.Pointer(&info)))
	}); err != nil || errno != 0 {
		f.Close()
		return nil, fmt.Errorf("irq: read the MSI message: %w", errors.Join(err, errnoErr(errno)))
	}
	l := &Line{f: f, Vector: uint8(info.vector), MSI: MSI{info.addr, info.data}, c: make(chan struct{}, 1), done: make(chan struct{})}
	go l.loop()
	return l, nil
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// loop turns the kernel's counts into wake-ups that coalesce like an
// edge: a driver re-checks its device after every wake-up.
func (l *Line) loop() {
	var b [8]byte
	for {
		if _, err := l.f.Read(b[:]); err != nil {
			l.err = err
			close(l.done)
			return
		}
		if binary.LittleEndian.Uint64(b[:]) == 0 {
			continue
		}
		select {
		case l.c <- struct{}{}:
		default:
		}
	}
}

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("irq: line closed")

// Wait returns once the line fired since the previous Wait, or when ctx
// ends.
func (l *Line) Wait(ctx context.Context) error {
	select {
	case <-l.c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return fmt.Errorf("%w: %v", ErrClosed, l.err)
	}
}

// C is the wake-up channel Wait reads, for use in a select.
func (l *Line) C() <-chan struct{} { return l.c }

// Close frees the vector. A device must be told to stop first.
func (l *Line) Close() error {
	var err error
	l.once.Do(func() { err = l.f.Close() })
	return err
}
