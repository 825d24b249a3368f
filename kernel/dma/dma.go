// Package dma gives drivers memory that devices and other domains can
// name by physical address: pinned, physically contiguous and zeroed,
// from the unikgo kernel's /dev/unikgo/dma. The kernel maps all RAM at its
// physical address, so a Region's bytes are read and written in place.
//
// Drivers take an Allocator, so that host tests can hand them
// dmatest.Memory, which simulates physical memory in ordinary Go slices.
package dma

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PageSize is the granule of allocation.
const PageSize = 4096

// Region is one allocation: Len bytes at physical address Phys.
type Region struct {
	Phys  uint64
	Bytes []byte // len is the requested size rounded up to whole pages
}

// Frame returns the page frame number of the region's first page: the
// GFN that Xen grants name (under PVH guest-physical = guest frame).
func (r *Region) Frame() uint64 { return r.Phys / PageSize }

// Allocator hands out and takes back regions.
type Allocator interface {
	// Alloc returns a zeroed, physically contiguous region of at least
	// size bytes, page aligned.
	Alloc(size int) (*Region, error)
	// Free returns r. Nothing may use r afterwards, including a device or
	// a peer domain, so callers free only what they have revoked.
	Free(r *Region) error
}

// DevicePath is the kernel's DMA device.
const DevicePath = "/dev/unikgo/dma"

const (
	ioctlAlloc = 0xc0104400
	ioctlFree  = 0x40104401
)

// ErrUnavailable means the program is not running on the unikgo kernel.
var ErrUnavailable = errors.New("dma: " + DevicePath + " is missing: DMA memory exists only inside a unikgo image")

type system struct {
	f *os.File
}

var (
	sysOnce sync.Once
	sysMem  *system
	sysErr  error
)

// System returns the kernel's allocator.
func System() (Allocator, error) {
	sysOnce.Do(func() {
		f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
		if err != nil {
			sysErr = ErrUnavailable
			return
		}
		sysMem = &system{f: f}
	})
	if sysErr != nil {
		return nil, sysErr
	}
	return sysMem, nil
}

type ioctlArg struct {
	size uint64
	phys uint64
}

func (s *system) ioctl(req uintptr, a *ioctlArg) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(a)))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

func (s *system) Alloc(size int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("dma: allocate %d bytes: size must be positive", size)
	}
	a := ioctlArg{size: uint64(size)}
	if err := s.ioctl(ioctlAlloc, &a); err != nil {
		return nil, fmt.Errorf("dma: allocate %d bytes: %w", size, err)
	}
	n := (size + PageSize - 1) &^ (PageSize - 1)
	return &Region{Phys: a.phys, Bytes: unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(a.phys))), n)}, nil
}

func (s *system) Free(r *Region) error {
	a := ioctlArg{size: uint64(len(r.Bytes)), phys: r.Phys}
	if err := s.ioctl(ioctlFree, &a); err != nil {
		return fmt.Errorf("dma: free %d bytes at %#x: %w", len(r.Bytes), r.Phys, err)
	}
	r.Bytes = nil
	return nil
}
