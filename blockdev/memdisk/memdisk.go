// Package memdisk is a blockdev.Device in memory: a RAM disk for programs,
// and the disk that tests of the layers above the drivers run against.
package memdisk

import (
	"fmt"
	"sync"

	"github.com/unikgo/unikgo/blockdev"
)

// Disk is a RAM disk.
type Disk struct {
	mu       sync.RWMutex
	data     []byte
	sector   int
	readOnly bool
	closed   bool
	flushes  int
}

var _ blockdev.Device = (*Disk)(nil)

// New returns a zeroed disk of size bytes, a multiple of sector (512 or
// 4096).
func New(size int64, sector int, readOnly bool) (*Disk, error) {
	if sector != 512 && sector != 4096 {
		return nil, fmt.Errorf("memdisk: sector size %d, want 512 or 4096", sector)
	}
	if size <= 0 || size%int64(sector) != 0 {
		return nil, fmt.Errorf("memdisk: size %d is not a positive multiple of %d", size, sector)
	}
	return &Disk{data: make([]byte, size), sector: sector, readOnly: readOnly}, nil
}

// Bytes is the disk's content, for tests to inspect or preload.
func (d *Disk) Bytes() []byte { return d.data }

// Flushes counts Flush calls.
func (d *Disk) Flushes() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.flushes
}

func (d *Disk) check(n int, off int64) error {
	if d.closed {
		return blockdev.ErrClosed
	}
	if off < 0 || off > int64(len(d.data)) || int64(n) > int64(len(d.data))-off {
		return blockdev.ErrOutOfRange
	}
	return nil
}

// ReadAt implements blockdev.Device.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.check(len(p), off); err != nil {
		return 0, err
	}
	return copy(p, d.data[off:]), nil
}

// WriteAt implements blockdev.Device.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readOnly {
		return 0, blockdev.ErrReadOnly
	}
	if err := d.check(len(p), off); err != nil {
		return 0, err
	}
	return copy(d.data[off:], p), nil
}

// Flush implements blockdev.Device.
func (d *Disk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return blockdev.ErrClosed
	}
	d.flushes++
	return nil
}

// Size implements blockdev.Device.
func (d *Disk) Size() int64 { return int64(len(d.data)) }

// SectorSize implements blockdev.Device.
func (d *Disk) SectorSize() int { return d.sector }

// ReadOnly implements blockdev.Device.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// Close implements blockdev.Device.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}
